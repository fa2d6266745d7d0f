#!/usr/bin/env bash
# Make .venv with argus (argusctl, argusd) when it is missing; with "dev", also the test tools.
# A dangling or half-made .venv (an interrupted run, a bad clone) is made again.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/venv.sh
ensure_venv .venv 3.10
extras=""
[ "${1:-}" = "dev" ] && extras="[dev]"
if [ -n "$extras" ] || [ ! -x .venv/bin/argusctl ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".$extras" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
fi
echo "venv.sh: .venv has argusctl and argusd"

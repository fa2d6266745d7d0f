#!/usr/bin/env bash
# Make .venv with argus (argusctl, argusd) when it is missing; with "dev", also the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
extras=""
[ "${1:-}" = "dev" ] && extras="[dev]"
if [ -n "$extras" ] || [ ! -x .venv/bin/argusctl ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".$extras" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
fi

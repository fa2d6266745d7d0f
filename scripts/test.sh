#!/usr/bin/env bash
# The test command (README, CI): makes .venv if needed, installs argus with its test
# dependencies, and runs the unit and integration tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
if [ "$#" -eq 0 ]; then
  set -- tests/unit tests/integration
fi
exec .venv/bin/python -m pytest "$@"

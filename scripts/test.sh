#!/usr/bin/env bash
# The test command. Makes .venv if needed, installs argus with its test dependencies and
# runs the unit and integration tests. With --e2e (what CI runs) it also runs the
# end-to-end tests on a real Ray Serve + vLLM (CPU) stack: the first time that installs
# .venv-serve (~4 GB, ~4 min). Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh dev
if [ "${1:-}" = "--e2e" ]; then
  shift
  export ARGUS_E2E=1
  [ "$#" -gt 0 ] || set -- tests/unit tests/integration tests/e2e
elif [ "$#" -eq 0 ]; then
  set -- tests/unit tests/integration
fi
exec .venv/bin/python -m pytest "$@"

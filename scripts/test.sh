#!/usr/bin/env bash
# The test command. Makes .venv if needed, installs argus with its test dependencies and
# runs the unit and integration tests. With --e2e (what CI runs) it first sets up a real
# Ray Serve + vLLM (CPU) stack, one line per step (the first time that installs
# .venv-serve, ~4 GB, ~2-3 min; library output goes to a log whose path is printed) and
# Debian's chromium for the UI's browser test, then also runs the end-to-end tests on it in a
# fresh ARGUS_E2E_HOME. Other arguments go to pytest.
#
# Without arguments, the tests run in two parts: the unit tests and the integration files that
# use no serving venv (no Ray, no vLLM: git, SQLite, argusd, the forge servers) two files at a
# time (pytest-xdist; they mostly wait on processes and disk, so two at once save wall time on
# 2 cores), then one at a time the files that use .venv-serve (each starts a Ray of its own on
# fixed ports, or runs Ray or vLLM code) and the end-to-end tests. A file is in the second part
# when it names .venv-serve, scripts/ray_up.sh or chromedriver (the browser: CPU-heavy and timed)
# (docs/operating.md, "CI").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_forge_servers.sh  # lighttpd + sshd for the remote-repo tests (a no-op when installed)
if [ "${1:-}" = "--e2e" ]; then
  shift
  . scripts/lib/steps.sh
  export ARGUS_E2E=1
  export ARGUS_E2E_HOME=${ARGUS_E2E_HOME:-$(mktemp -d "${TMPDIR:-/tmp}/argus-e2e.XXXXXX")}
  steps_begin 5 "$ARGUS_E2E_HOME/logs/e2e-setup.log"
  step "Ray Serve 2.60 + vLLM (CPU) in .venv-serve (the first time ~2-3 min, ~4 GB)" scripts/setup_serving.sh
  # The small model (~1 min of CPU: transformers parses its GGUF file four times) is made in the
  # background while .venv, the browser and the Ray head are set up; its step waits for it. Not
  # beside the step above: it runs from .venv-serve, and two installs of argus at once would
  # write the same egg-info in this tree.
  model_log="$ARGUS_E2E_HOME/logs/prepare-model.log"
  rm -f "$model_log.exit"  # an earlier run's, when ARGUS_E2E_HOME is given
  # `set +e`: the subshell inherits errexit, and a failing command would end it before its exit
  # status is written (the step would wait forever); the status file appears whole (mv).
  (set +e; env ARGUS_HOME="$ARGUS_E2E_HOME" ARGUS_CONFIG="$(pwd)/configs/local.yaml" \
     .venv-serve/bin/python scripts/prepare_model.py >"$model_log" 2>&1
   echo $? >"$model_log.exit.part" && mv "$model_log.exit.part" "$model_log.exit") &
  model_job=$!
  # A step failed: stop the job. Each command `|| true`: under `set -e` a command that fails
  # inside an EXIT trap (pkill finding nothing) becomes the script's exit status.
  trap 'pkill -P "$model_job" 2>/dev/null || true; kill "$model_job" 2>/dev/null || true' EXIT
  finished() {  # the output and exit status of the background job that writes LOG and LOG.exit
    while [ ! -f "$1.exit" ]; do sleep 1; done
    cat "$1"
    return "$(cat "$1.exit")"
  }
  step "argus and the test tools in .venv" scripts/venv.sh dev
  step "Chromium and chromedriver for the web UI's browser test (Debian packages)" scripts/setup_browser.sh
  # Serve tries a replica that fails to start 3 times (Ray's default, what users get) before it
  # gives up; the e2e tests' refused generations each spend ~1 min of vLLM start per try on 2
  # cores. Once proves the same path (DEPLOY_FAILED -> FAILED or rolled back) for this test Ray
  # only (the quickstart's restarted head inherits it too), ~4 min less in CI.
  export RAY_SERVE_MAX_PER_REPLICA_RETRY_COUNT=1
  step "Ray head up (dashboard http://127.0.0.1:8265)" scripts/ray_up.sh
  step "Small model SmolLM2-135M-Instruct under $ARGUS_E2E_HOME/private/hf (made alongside the steps before)" \
    finished "$model_log"
  trap - EXIT  # the job has ended: nothing left to stop
  e2e=tests/e2e
else
  scripts/venv.sh dev >/dev/null
  e2e=
fi
[ "$#" -eq 0 ] || exec .venv/bin/python -m pytest "$@"
serving=$(grep -lE '\.venv-serve|ray_up\.sh|chromedriver' tests/integration/test_*.py)
plain=$(grep -LE '\.venv-serve|ray_up\.sh|chromedriver' tests/integration/test_*.py)
# The 30 slowest tests of each part at the end: where CI's time goes (docs/operating.md, "CI").
status=0
# shellcheck disable=SC2086  # the file lists are words
.venv/bin/python -m pytest -n 2 --dist loadfile --durations=30 tests/unit $plain || status=$?
# shellcheck disable=SC2086
.venv/bin/python -m pytest --durations=30 $serving $e2e || status=$?
exit "$status"

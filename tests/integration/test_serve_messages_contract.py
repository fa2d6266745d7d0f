"""The deployment message Ray 2.60's own code writes while it retries a replica that failed to
start (DeploymentState.record_replica_startup_failure, run in the serving venv on a bare state
object, no cluster), against argus's reading of it (observe.startup_failure): the same engine
error on every retry is one reason, with the engine's final exception and no retry count.
What this proves: the message format argus recognises is Ray 2.60's, on first deploy and
after a replica has run. What it does not: when Serve writes it (the plan tests and the real
stack cover what argus does with it)."""
import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from daemon.serving.observe import startup_failure

REPO = Path(__file__).resolve().parents[2]
SERVING_PYTHON = REPO / ".venv-serve" / "bin" / "python"
pytestmark = pytest.mark.skipif(not SERVING_PYTHON.exists(),
                                reason="needs .venv-serve (scripts/setup_serving.sh; CI has it)")

ENGINE_ERROR = ("Traceback (most recent call last):\n  File \"vllm/engine.py\", line 1, in start\n"
                "ValueError: max_model_len (999999) is greater than the derived max_model_len (8192).")

RAY_SIDE = """
import json, sys, types
from ray.serve._private.deployment_state import DeploymentState

error, has_started = sys.argv[1], sys.argv[2] == "1"
messages = []
state = types.SimpleNamespace(
    _target_state=types.SimpleNamespace(target_num_replicas=1, rolling_update=False),
    _replica_has_started=has_started, _failed_to_start_threshold=3, _replica_failure_count=0)

def record(message):
    state._replica_failure_count += 1

state._record_replica_failure = record

class Status:
    def update_message(self, message):
        messages.append(message)
        return self

state._curr_status_info = Status()
for _ in range(3):
    DeploymentState.record_replica_startup_failure(state, error)
print(json.dumps(messages))
"""


def ray_messages(has_started: bool) -> list[str]:
    result = subprocess.run([str(SERVING_PYTHON), "-c", textwrap.dedent(RAY_SIDE), ENGINE_ERROR,
                             "1" if has_started else "0"], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={"PATH": "/usr/bin:/bin", "RAY_USAGE_STATS_ENABLED": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("has_started", [False, True], ids=["first deploy", "after a replica ran"])
def test_rays_retry_message_is_one_reason_with_the_engine_error(has_started):
    messages = ray_messages(has_started)
    assert len(messages) == 3
    if not has_started:  # the count changes on every retry...
        assert len(set(messages)) == 3 and "Retrying 2 more time(s)" in messages[0]
    # ... and argus reads one reason from all of them: Ray's first sentence and the engine's error.
    assert {startup_failure(m) for m in messages} == {
        "A replica failed to start with exception. ValueError: max_model_len (999999) is greater than the "
        "derived max_model_len (8192)."}

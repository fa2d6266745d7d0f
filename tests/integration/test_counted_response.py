"""What the front end counts per generation while a canary splits a model (ingress.CountedResponse,
the numbers canary_verdict compares), with Ray 2.60's own ErrorResponse and RequestCancelledError
in the serving venv (no Ray cluster: the handle's responses are stand-ins that yield or raise what
a model server's would, and the metric is read where CountedResponse records it)."""
import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVING_PYTHON = REPO / ".venv-serve" / "bin" / "python"
pytestmark = pytest.mark.skipif(not SERVING_PYTHON.exists(),
                                reason="needs .venv-serve (scripts/setup_serving.sh; CI has it)")

CHECK = r"""
import asyncio, json
from ray.serve.exceptions import RequestCancelledError
from ray.llm._internal.serve.core.configs.openai_api_models import ErrorInfo, ErrorResponse
from daemon.replicas import ingress
from daemon.replicas.route_table import Target

counted = []
ingress._count = lambda target, ok: counted.append("ok" if ok else "failed")

def error(code):
    return ErrorResponse(error=ErrorInfo(message="m", type="t", code=code))

class Response:
    # A handle call's response generator: yields `chunks`, or raises `fails` at once.
    def __init__(self, chunks=(), fails=None):
        self.chunks, self.fails = list(chunks), fails
    def __aiter__(self):
        return self
    async def __anext__(self):
        if self.fails is not None:
            raise self.fails
        if not self.chunks:
            raise StopAsyncIteration
        return self.chunks.pop(0)

CASES = {
    "ok": Response(["chunk", "more"]),
    "server error": Response([error(500)]),
    "overloaded": Response([error(503)]),
    "client error": Response([error(400)]),
    "prompt too long": Response([error(413)]),
    "batched server error": Response([[error(500), "chunk"]]),
    "batched ok": Response([["chunk", "chunk"]]),
    "empty": Response([]),
    "raises": Response(fails=RuntimeError("replica died")),
    "cancelled": Response(fails=RequestCancelledError("r1")),
    "client went away": Response(fails=asyncio.CancelledError()),
}

async def drain(response):
    # What a client sees: every chunk, or the error CountedResponse passes on unchanged.
    seen = []
    try:
        async for chunk in ingress.CountedResponse(response, Target("llm-a-b", "LLMServer:a", None)):
            seen.append(type(chunk).__name__)
    except (Exception, asyncio.CancelledError) as exc:
        seen.append(type(exc).__name__)
    return seen

out = {}
for name, response in CASES.items():
    counted.clear()
    seen = asyncio.run(drain(response))
    out[name] = [list(counted), seen]
print(json.dumps(out))
"""


def test_the_front_end_counts_a_generation_failed_only_for_its_own_errors():
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0",
           "HOME": os.environ.get("HOME", "/tmp")}
    result = subprocess.run([str(SERVING_PYTHON), "-c", CHECK], capture_output=True, text=True, timeout=300,
                            env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    counted = json.loads(result.stdout.strip().splitlines()[-1])
    assert counted == {
        "ok": [["ok"], ["str", "str"]],                # counted once, on its first chunk
        "server error": [["failed"], ["ErrorResponse"]],
        "overloaded": [["failed"], ["ErrorResponse"]],
        "client error": [["ok"], ["ErrorResponse"]],    # the client's bad request says nothing of the generation
        "prompt too long": [["ok"], ["ErrorResponse"]],
        "batched server error": [["failed"], ["list"]],  # with batching the first answer is a list of chunks
        "batched ok": [["ok"], ["list"]],
        "empty": [["ok"], []],
        "raises": [["failed"], ["RuntimeError"]],
        "cancelled": [[], ["RequestCancelledError"]],   # the client went away: no outcome
        "client went away": [[], ["CancelledError"]],
    }

"""argus's real front end (ArgusIngress, built by build_frontend from the Serve config argusd
writes) on a real Ray Serve, checked through HTTP as a client sees it through Serve's proxy. Its
route table holds a normal model, an adapter on it, a rollout probe of each (names.probe_id) on
another app, and a model that is starting (an `unavailable` entry). The model deployments are
tests/llm_server_stub.py (Ray's LLMServer handle protocol, no vLLM: each answer says which
deployment answered, the model it was handed and the multiplexed id), so this proves the
routing and the front end's own answers, not vLLM's: that the real model server answers its own
probe id as its own model is served_model's unit test (tests/unit/test_frontend_routes.py) and
the rollout e2e. A one-node Ray of its own on its own ports (6424/8279, Serve on 8019); run it
under `flock /tmp/argus-vllm.lock` like the other tests that start Ray."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import pytest

from daemon.replicas.names import probe_id
from daemon.serving.client import ServeClient
from daemon.serving.serve_config import FrontendApp, HttpOptions, OtherApp, Route, ServeConfig, Unavailable

REPO = Path(__file__).resolve().parents[2]
SERVING = REPO / ".venv-serve" / "bin"
pytestmark = pytest.mark.skipif(not (SERVING / "ray").exists(),
                                reason="needs .venv-serve (scripts/setup_serving.sh; CI has it)")
GCS_PORT, DASHBOARD_PORT, HTTP_PORT = 6424, 8279, 8019
DASHBOARD = f"http://127.0.0.1:{DASHBOARD_PORT}"
ENDPOINT = f"http://127.0.0.1:{HTTP_PORT}"
NOT_FOUND = "The model `{}` does not exist or you do not have access to it."


def stub_app(key: str, chunks: int = 3, chunk_seconds: float = 0.0) -> OtherApp:
    return OtherApp(f"llm-{key}", {"name": f"llm-{key}", "route_prefix": None, "import_path": "llm_server_stub:build",
                                   "args": {"deployment": f"LLMServer:{key}", "name": key, "chunks": chunks,
                                            "chunk_seconds": chunk_seconds}})


# The old generation streams slowly (an in-flight stream outlives the switch); the new one fast.
OLD, NEW = stub_app("old", chunks=30, chunk_seconds=0.5), stub_app("new")
STARTING = Route("carol-1-new", "", "", unavailable=Unavailable(503, "model carol-1-new is starting", 7))
BEFORE = [Route("alice-1-m", OLD.name, "LLMServer:old", 2048),
          Route(probe_id("alice-1-m"), NEW.name, "LLMServer:new", 2048, probe=True),
          Route("bob-1-t", OLD.name, "LLMServer:old", 2048, base_model="alice-1-m"),
          Route(probe_id("bob-1-t"), NEW.name, "LLMServer:new", 2048, base_model="alice-1-m", probe=True),
          STARTING]
# The switch: alice's and bob's entries move to the new generation, the probes go.
AFTER = [Route("alice-1-m", NEW.name, "LLMServer:new", 2048),
         Route("bob-1-t", NEW.name, "LLMServer:new", 2048, base_model="alice-1-m"), STARTING]


def config(routes: list[Route]) -> dict:
    return ServeConfig(HttpOptions("127.0.0.1", HTTP_PORT, "HeadOnly"),
                       (FrontendApp.of(routes, 1), OLD, NEW)).to_json()


def call(method: str, path: str, body: dict | None = None) -> tuple[int, Message, str]:
    """The status, the headers (looked up without regard to case) and the body."""
    request = urllib.request.Request(ENDPOINT + path, method=method, data=None if body is None else
                                     json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def chat(model: str | None, stream: bool = False) -> tuple[int, Message, str]:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": stream}
    if model is not None:
        body["model"] = model
    return call("POST", "/v1/chat/completions", body)


def said(answer: tuple[int, Message, str]) -> str:
    status, _, body = answer
    assert status == 200, answer
    return json.loads(body)["choices"][0]["message"]["content"]


def _wait(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:
            pass
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def serve():
    tmp = Path(tempfile.mkdtemp(prefix="argus-fe-", dir="/tmp"))   # short: Ray's socket paths
    env = {"PATH": f"{SERVING}:/usr/bin:/bin", "HOME": str(tmp), "TMPDIR": str(tmp),
           "PYTHONPATH": f"{REPO}:{REPO / 'tests'}", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    log = open(tmp / "ray.log", "w")
    head = subprocess.Popen([str(SERVING / "ray"), "start", "--head", "--block", "--disable-usage-stats",
                             "--node-ip-address", "127.0.0.1", "--port", str(GCS_PORT), "--num-cpus", "4",
                             "--num-gpus", "0", "--dashboard-host", "127.0.0.1", "--dashboard-port",
                             str(DASHBOARD_PORT), "--ray-client-server-port", "20124",
                             "--dashboard-agent-listen-port", "52484"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = ServeClient(DASHBOARD, timeout=10)
        _wait(lambda: [n for n in client.nodes() if n["state"] == "ALIVE"], "the head node")
        client.put_config(config(BEFORE))
        _wait(lambda: said(chat("alice-1-m")).startswith("old "), "the front end to answer through the old app", 240)
        _wait(lambda: said(chat(probe_id("alice-1-m"))).startswith("new "), "the new app", 120)
        yield client
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(head.pid, sig)
                head.wait(timeout=20)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_models_lists_only_what_can_answer_and_probes_reach_the_next_generation(serve):
    status, _, body = call("GET", "/v1/models")
    assert status == 200 and [m["id"] for m in json.loads(body)["data"]] == ["alice-1-m", "bob-1-t"], body
    status, _, body = call("GET", "/v1/models/alice-1-m")
    assert status == 200 and json.loads(body)["id"] == "alice-1-m", body
    assert call("GET", f"/v1/models/{probe_id('alice-1-m')}")[0] == 404
    # The probe reaches the next generation's deployment, which is handed the probe id (the
    # model server answers it as its own model: served_model). An adapter's probe reaches it
    # with the adapter's own id as the multiplexed id, so the new generation loads the adapter.
    assert said(chat(probe_id("alice-1-m"))) == f"new model={probe_id('alice-1-m')} multiplexed="
    assert said(chat(probe_id("bob-1-t"))) == f"new model={probe_id('bob-1-t')} multiplexed=bob-1-t"
    assert said(chat("bob-1-t")) == "old model=bob-1-t multiplexed=bob-1-t"
    assert said(chat("alice-1-m")) == "old model=alice-1-m multiplexed="


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": True}),
    ("/v1/completions", {"prompt": "hi"}),
    ("/v1/completions", {"prompt": "hi", "stream": True}),
    ("/v1/embeddings", {"input": "hi"}),
])
def test_a_starting_model_is_answered_503_with_retry_after_and_an_unknown_one_a_clean_404(serve, path, body):
    status, headers, text = call("POST", path, {**body, "model": "carol-1-new"})
    assert (status, headers.get("Retry-After"), headers.get("content-type")) == (503, "7", "application/json"), text
    assert json.loads(text) == {"error": {"message": "model carol-1-new is starting", "type": "server_error",
                                          "param": None, "code": "model_unavailable"}}
    status, headers, text = call("POST", path, {**body, "model": "nobody-1-x"})
    assert (status, headers.get("Retry-After")) == (404, None), text
    assert json.loads(text) == {"error": {"message": NOT_FOUND.format("nobody-1-x"), "type": "invalid_request_error",
                                          "param": None, "code": "model_not_found"}}


def test_model_cards_say_why_there_is_none(serve):
    status, headers, text = call("GET", "/v1/models/carol-1-new")
    assert (status, headers.get("Retry-After"), json.loads(text)["error"]["code"]) == (503, "7", "model_unavailable")
    status, _, text = call("GET", "/v1/models/nobody-1-x")
    assert (status, json.loads(text)["error"]["message"]) == (404, NOT_FOUND.format("nobody-1-x"))
    status, _, text = chat(None)   # no model while two are listed
    assert (status, json.loads(text)["error"]["code"]) == (400, "model_required"), text


def test_the_switch_lets_a_running_stream_finish_on_the_old_generation(serve):
    """argusd switches alice's entry to the new app while a stream runs on the old one: the stream
    ends whole on the old generation, every request after the switch goes to the new one."""
    request = urllib.request.Request(ENDPOINT + "/v1/chat/completions", method="POST", data=json.dumps({
        "model": "alice-1-m", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode(),
        headers={"Content-Type": "application/json"})
    lines: list[tuple[float, str]] = []

    def read() -> None:
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert answer.status == 200
            for line in answer:
                if line.strip():
                    lines.append((time.monotonic(), line.decode().strip()))
    reader = threading.Thread(target=read)
    reader.start()
    _wait(lambda: lines, "the stream's first chunk", 30)
    serve.put_config(config(AFTER))
    switched = []
    _wait(lambda: said(chat("alice-1-m")).startswith("new ") and not switched.append(time.monotonic()),
          "new requests to go to the new generation", 60)
    assert said(chat("bob-1-t")) == "new model=bob-1-t multiplexed=bob-1-t"
    reader.join(60)
    assert not reader.is_alive()
    chunks = [text for _, text in lines]
    assert chunks[-1] == "data: [DONE]" and len(chunks) == 30 + 1, chunks
    assert all("old model=alice-1-m" in c for c in chunks[:-1]), chunks
    assert lines[-1][0] > switched[0], "the stream ended before the switch: it proves nothing"
    status, _, body = call("GET", "/v1/models")
    assert [m["id"] for m in json.loads(body)["data"]] == ["alice-1-m", "bob-1-t"]
    assert call("POST", "/v1/chat/completions", {"model": probe_id("alice-1-m"), "messages": []})[0] == 404

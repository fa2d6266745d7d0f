"""argus's real front end (ArgusIngress, built by build_frontend from the Serve config argusd
writes) on a real Ray Serve, checked through HTTP as a client sees it through Serve's proxy. Its
route table holds a normal model, an adapter on it, a rollout probe of each (names.probe_id) on
another app, a model that is starting (an `unavailable` entry), and a model autoscaled from zero
replicas whose replica takes seconds to start (routes with hold_s); and replicas Serve stops (a
rollout's old app removed, a model's replica count lowered in place) with streams in flight that
outlive Ray's default drain, under the drain bound argus renders. The model deployments are
tests/llm_server_stub.py (Ray's LLMServer handle protocol, no vLLM: each answer says which
deployment answered, the model it was handed and the multiplexed id), so this proves the
routing and the front end's own answers, not vLLM's: that the real model server answers its own
probe id as its own model is served_model's unit test (tests/unit/test_frontend_routes.py) and
the rollout e2e. A one-node Ray of its own on its own ports (6424/8279, Serve on 8019); run it
under `flock /tmp/argus-vllm.lock` like the other tests that start Ray."""
from __future__ import annotations

import concurrent.futures
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

from daemon.config import Config
from daemon.replicas.names import deployment_name, probe_id
from daemon.serving.client import ServeClient
from daemon.serving.llm_config import LlmSettings, ModelDeployment
from daemon.serving.serve_config import (FrontendApp, HttpOptions, ModelApp, OtherApp, Route, ServeConfig, Unavailable,
                                         render_app)

REPO = Path(__file__).resolve().parents[2]
SERVING = REPO / ".venv-serve" / "bin"
pytestmark = pytest.mark.skipif(not (SERVING / "ray").exists(),
                                reason="needs .venv-serve (scripts/setup_serving.sh; CI has it)")
GCS_PORT, DASHBOARD_PORT, HTTP_PORT = 6424, 8279, 8019
DASHBOARD = f"http://127.0.0.1:{DASHBOARD_PORT}"
ENDPOINT = f"http://127.0.0.1:{HTTP_PORT}"
NOT_FOUND = "The model `{}` does not exist or you do not have access to it."
LISTED = ["alice-1-m", "bob-1-t", "dave-1-z", "erin-1-z", "frank-1-h", "gina-1-two"]
# How long a replica Serve stops lets its requests finish: the config's default, rendered by argus
# (serving.serve.drain_timeout_s); Ray's own default, which a stream must outlive to prove it, 20 s.
DRAIN_S = LlmSettings.from_config(Config()).drain_timeout_s
RAY_DEFAULT_DRAIN_S = 20.0


def stub_app(key: str, chunks: int = 3, chunk_seconds: float = 0.0, replicas: int | None = None,
             **more: object) -> OtherApp:
    """A stub model app; with `replicas`, its deployment options are the ones argus renders for
    a model deployment (render_app of a ModelApp: the replica count and the drain bound)."""
    raw = {"name": f"llm-{key}", "route_prefix": None, "import_path": "llm_server_stub:build",
           "args": {"deployment": deployment_name(key), "name": key, "chunks": chunks,
                    "chunk_seconds": chunk_seconds, **more}}
    if replicas is not None:
        rendered = ModelApp.of(ModelDeployment(key, key, {}, replicas, drain_timeout_s=DRAIN_S), raw["name"])
        raw["deployments"] = render_app(rendered)["deployments"]
    return OtherApp(raw["name"], raw)


# The old generation streams slowly (an in-flight stream outlives the switch and then the removal
# of the old app by more than Ray's default drain); the new one fast. The old one takes the canary
# test's 12 streams at once (Serve's default of 5 made the 6th wait 36 s for a slot: a 72 s stream).
STREAM_CHUNKS, CHUNK_S = 72, 0.5   # 36 s
OLD = stub_app("old", chunks=STREAM_CHUNKS, chunk_seconds=CHUNK_S, replicas=1, max_ongoing_requests=16)
NEW = stub_app("new")
# gina's model: two replicas taking one request each (two streams run on both), lowered to one in place.
TWO = stub_app("two", chunks=STREAM_CHUNKS, chunk_seconds=CHUNK_S, replicas=2, max_ongoing_requests=1)
ONE = stub_app("two", chunks=STREAM_CHUNKS, chunk_seconds=CHUNK_S, replicas=1, max_ongoing_requests=1)
STARTING = Route("carol-1-new", "", "", unavailable=Unavailable(503, "model carol-1-new is starting", 7))
# Autoscaled from zero (it starts with none), one replica at most that takes START_S to start and
# stays up once woken; its answers take 2 s (longer than erin's hold) and count what it was handed.
START_S = 3.0
WAKE_S = 150.0   # a replica starts in seconds, but a loaded CI machine can take a minute to start a worker
ZERO = stub_app("zero", chunks=4, chunk_seconds=0.5, answer_seconds=2.0, start_seconds=START_S, count=True,
                autoscaling_config={"min_replicas": 0, "max_replicas": 1, "downscale_to_zero_delay_s": 600})
# Two routes to it: dave's holds a request WAKE_S, erin's 1 s (less than the replica's start); frank's
# holds a request to a model that runs (the new app).
HELD = [Route("dave-1-z", ZERO.name, "LLMServer:zero", 2048, hold_s=WAKE_S),
        Route("erin-1-z", ZERO.name, "LLMServer:zero", 2048, hold_s=1.0),
        Route("frank-1-h", NEW.name, "LLMServer:new", 2048, hold_s=60.0)]
GINA = Route("gina-1-two", TWO.name, "LLMServer:two", 2048)
BEFORE = [Route("alice-1-m", OLD.name, "LLMServer:old", 2048),
          Route(probe_id("alice-1-m"), NEW.name, "LLMServer:new", 2048, probe=True),
          Route("bob-1-t", OLD.name, "LLMServer:old", 2048, base_model="alice-1-m"),
          Route(probe_id("bob-1-t"), NEW.name, "LLMServer:new", 2048, base_model="alice-1-m", probe=True),
          STARTING, GINA, *HELD]
# The switch: alice's and bob's entries move to the new generation, the probes go.
AFTER = [Route("alice-1-m", NEW.name, "LLMServer:new", 2048),
         Route("bob-1-t", NEW.name, "LLMServer:new", 2048, base_model="alice-1-m"), STARTING, GINA, *HELD]


def config(routes: list[Route], apps: tuple[OtherApp, ...] = (OLD, NEW, ZERO, TWO)) -> dict:
    return ServeConfig(HttpOptions("127.0.0.1", HTTP_PORT, "HeadOnly"),
                       (FrontendApp.of(routes, 1, DRAIN_S), *apps)).to_json()


def call(method: str, path: str, body: dict | None = None, timeout: float = 30) -> tuple[int, Message, str]:
    """The status, the headers (looked up without regard to case) and the body."""
    request = urllib.request.Request(ENDPOINT + path, method=method, data=None if body is None else
                                     json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.headers, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def chat(model: str | None, stream: bool = False, timeout: float = 30) -> tuple[int, Message, str]:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": stream}
    if model is not None:
        body["model"] = model
    return call("POST", "/v1/chat/completions", body, timeout)


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
        client = ServeClient(DASHBOARD, timeout=30)   # a loaded CI machine answers slowly
        _wait(lambda: [n for n in client.nodes() if n["state"] == "ALIVE"], "the head node")
        client.put_config(config(BEFORE))
        _wait(lambda: said(chat("alice-1-m")).startswith("old "), "the front end to answer through the old app", 240)
        _wait(lambda: said(chat(probe_id("alice-1-m"))).startswith("new "), "the new app", 120)
        yield client
    finally:
        # SIGTERM, then the whole group killed after 5 s: with Serve's replicas still draining
        # (the stubs' 600 s drain bound) Ray's own stop took the 20 s this waited before.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(head.pid, sig)
                head.wait(timeout=5)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_models_lists_only_what_can_answer_and_probes_reach_the_next_generation(serve):
    status, _, body = call("GET", "/v1/models")
    assert status == 200 and [m["id"] for m in json.loads(body)["data"]] == LISTED, body
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
    status, _, text = chat(None)   # no model while several are listed
    assert (status, json.loads(text)["error"]["code"]) == (400, "model_required"), text


class Stream:
    """A streaming chat request read on a thread: each non-empty line with the time it came."""

    def __init__(self, model: str) -> None:
        self.request = urllib.request.Request(ENDPOINT + "/v1/chat/completions", method="POST", data=json.dumps({
            "model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode(),
            headers={"Content-Type": "application/json"})
        self.lines: list[tuple[float, str]] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._read)
        self.thread.start()

    def _read(self) -> None:
        try:
            with urllib.request.urlopen(self.request, timeout=60) as answer:
                assert answer.status == 200
                for line in answer:
                    if line.strip():
                        self.lines.append((time.monotonic(), line.decode().strip()))
        except BaseException as error:   # a stream cut short: said by the test, not by the thread
            self.error = error

    def chunks(self, timeout: float) -> list[str]:
        self.thread.join(timeout)
        assert not self.thread.is_alive()
        return [text for _, text in self.lines]

    @property
    def ended(self) -> float:
        return self.lines[-1][0]


def replica_states(client: ServeClient, app: str, deployment: str) -> list[str]:
    """The states of a deployment's replicas as Serve reports them (STOPPING while one drains)."""
    found = (client.get_applications().get("applications") or {}).get(app) or {}
    return sorted(r["state"] for r in ((found.get("deployments") or {}).get(deployment) or {}).get("replicas") or [])


def test_the_switch_and_a_scale_down_let_streams_longer_than_rays_default_drain_finish(serve):
    """Replicas Serve stops with streams in flight, each stream running on for longer than Ray's
    default drain (20 s) after its replica was told to stop:
    - a rollout: argusd switches alice's entry to the new app while a stream runs on the old one,
      then removes the old app (rollout.py's drain, once the front end routes to the new one);
    - a scale-down: gina's model runs two replicas with a stream on each, and its replica count
      is lowered 2 -> 1 in place, in the same config as the switch.
    Every stream ends whole; requests after the switch go to the new generation; gina's model
    keeps a STOPPING replica while its stream runs (past Ray's default) and runs one replica once
    that stream ended. The deployment options of both apps are the ones argus renders."""
    _wait(lambda: replica_states(serve, TWO.name, "LLMServer:two") == ["RUNNING", "RUNNING"], "gina's two replicas")
    alice, gina = Stream("alice-1-m"), [Stream("gina-1-two"), Stream("gina-1-two")]
    _wait(lambda: alice.lines and all(g.lines for g in gina), "every stream's first chunk", 30)
    serve.put_config(config(AFTER, (OLD, NEW, ZERO, ONE)))
    lowered = time.monotonic()
    switched = []
    _wait(lambda: said(chat("alice-1-m")).startswith("new ") and not switched.append(time.monotonic()),
          "new requests to go to the new generation", 60)
    assert said(chat("bob-1-t")) == "new model=bob-1-t multiplexed=bob-1-t"
    serve.put_config(config(AFTER, (NEW, ZERO, ONE)))   # the old generation goes: its replica drains
    removed = time.monotonic()
    states = []
    while any(s.thread.is_alive() for s in [alice, *gina]):
        states.append((time.monotonic(), replica_states(serve, TWO.name, "LLMServer:two")))
        time.sleep(1)
    for stream, name in [(alice, "old model=alice-1-m"), *((g, "two model=gina-1-two") for g in gina)]:
        chunks = stream.chunks(60)
        assert stream.error is None and chunks[-1] == "data: [DONE]", (stream.error, chunks[-3:])
        assert len(chunks) == STREAM_CHUNKS + 1 and all(name in c for c in chunks[:-1]), chunks
    # Each stream outlived Ray's default drain after its replica was told to stop (else it proves nothing).
    assert alice.ended - removed > RAY_DEFAULT_DRAIN_S + 2, (alice.ended - removed)
    assert min(g.ended for g in gina) - lowered > RAY_DEFAULT_DRAIN_S + 2, [g.ended - lowered for g in gina]
    # gina's model: one replica drained while its stream ran past Ray's default, then one runs.
    draining = [at - lowered for at, seen in states if "STOPPING" in seen]
    assert draining and max(draining) > RAY_DEFAULT_DRAIN_S, states
    _wait(lambda: replica_states(serve, TWO.name, "LLMServer:two") == ["RUNNING"], "one replica of gina's model", 30)
    status, _, body = call("GET", "/v1/models")
    assert [m["id"] for m in json.loads(body)["data"]] == LISTED
    assert call("POST", "/v1/chat/completions", {"model": probe_id("alice-1-m"), "messages": []})[0] == 404


def timed(ask) -> tuple[float, tuple[int, Message, str]]:
    start = time.monotonic()
    answer = ask()
    return time.monotonic() - start, answer


def streamed(answer: tuple[int, Message, str]) -> list[str]:
    """A stream's chunks' texts, checked whole (200, then every chunk, then [DONE])."""
    status, _, body = answer
    lines = [line for line in body.splitlines() if line.strip()]
    assert status == 200 and lines[-1] == "data: [DONE]", answer
    return [json.loads(line[len("data: "):])["choices"][0]["delta"]["content"] for line in lines[:-1]]


def test_a_model_at_zero_wakes_for_held_requests_and_a_hold_that_runs_out_is_503_and_withdrawn(serve):
    """At once, at zero replicas: 3 plain and 3 streaming requests held up to WAKE_S (dave's route)
    and one of each held up to 1 s (erin's, less than the replica's start), all to one deployment.
    Serve wakes it for the queued requests; the 6 held ones all answer, the 2 short ones get 503
    with Retry-After as their status (a stream too) and are withdrawn from Serve's queue: the
    replica is never handed them (it counts what it is handed)."""
    asks = [("dave-1-z", False)] * 3 + [("dave-1-z", True)] * 3 + [("erin-1-z", False), ("erin-1-z", True)]
    answers: list = [None] * len(asks)

    def ask(i: int) -> None:
        answers[i] = timed(lambda: chat(*asks[i], timeout=WAKE_S + 30))
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(asks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAKE_S + 60)
    for took, answer in answers[:3]:   # dave's: held through the start, then answered (2 s each)
        assert said(answer).startswith("zero model=dave-1-z multiplexed= served=") and took > START_S, answer
    for took, answer in answers[3:6]:
        chunks = streamed(answer)
        assert len(chunks) == 4 and all(c.startswith("zero model=dave-1-z") for c in chunks) and took > START_S
    woke = min(took for took, _ in answers[:6])
    print(f"woken in {woke:.1f} s (replica start {START_S} s); the 1 s holds answered 503 in "
          f"{', '.join(f'{took:.1f}' for took, _ in answers[6:])} s")
    for took, (status, headers, text) in answers[6:]:   # erin's: the hold ran out before the replica started
        assert (status, headers.get("Retry-After"), headers.get("content-type")) == (503, "1", "application/json")
        assert json.loads(text)["error"]["code"] == "model_waking" and 1 <= took < woke, (took, woke, text)
    # Woken: the hold never cuts a generation: erin's 1 s hold is shorter than the 2 s of a plain
    # answer or a stream.
    assert said(chat("erin-1-z")) == "zero model=erin-1-z multiplexed= served=7"
    assert len(streamed(chat("erin-1-z", stream=True))) == 4
    # served=7 above: the replica was handed dave's 6, then this one; the two 503s never reached it.
    assert said(chat("dave-1-z")).endswith(" served=9")


def test_a_held_route_to_a_running_model_is_not_held(serve):
    """frank's route holds up to 60 s but its deployment (the new app) runs: it answers like
    alice's unheld route, as fast (medians of 15 alternating requests, reported)."""
    assert said(chat("frank-1-h")) == "new model=frank-1-h multiplexed="
    held, plain = [], []
    for _ in range(15):
        held.append(timed(lambda: chat("frank-1-h"))[0])
        plain.append(timed(lambda: chat("alice-1-m"))[0])
    held_ms, plain_ms = sorted(held)[7] * 1000, sorted(plain)[7] * 1000
    print(f"median latency through Serve: held route {held_ms:.1f} ms, unheld {plain_ms:.1f} ms")
    assert held_ms < plain_ms * 1.25 + 20, (held_ms, plain_ms)


def test_a_canary_split_sends_its_share_to_the_new_generation_and_a_stream_stays_whole(serve):
    """A canary as argusd writes it (serve_config.Route.canary): alice's entry on the old app with
    20 % to the new one, bob's (an adapter: it follows its base's split) with 50 %. Of 300 plain
    requests to alice, the new generation answers about 20 % (each answer names its deployment;
    the bounds are 3.6 standard deviations of a binomial); 12 streams to bob at once each end
    whole on the one generation they began on, and both generations take some."""
    from daemon.serving.serve_config import Canary
    split = [Route("alice-1-m", OLD.name, "LLMServer:old", 2048, canary=Canary(NEW.name, "LLMServer:new", 20)),
             Route("bob-1-t", OLD.name, "LLMServer:old", 2048, base_model="alice-1-m",
                   canary=Canary(NEW.name, "LLMServer:new", 50)), STARTING, *HELD]
    # Both generations run before the split, as argusd splits only then (the switch test before
    # this one removed the old app: requests split to it while it started again failed).
    serve.put_config(config(BEFORE))
    _wait(lambda: said(chat("alice-1-m")).startswith("old ") and said(chat(probe_id("alice-1-m"))).startswith("new "),
          "both generations running", 120)
    serve.put_config(config(split))
    try:
        _wait(lambda: {said(chat("alice-1-m")).split(" ", 1)[0] for _ in range(30)} == {"old", "new"},
              "the split table in the front end", 60)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:   # 4 clients: a third of the time
            answers = list(pool.map(lambda _: said(chat("alice-1-m")), range(300)))
        new = sum(a == "new model=alice-1-m multiplexed=" for a in answers)
        old = sum(a == "old model=alice-1-m multiplexed=" for a in answers)
        print(f"canary 20 %: the new generation answered {new} of 300 requests ({new / 3:.1f} %)")
        assert new + old == 300 and 35 <= new <= 85, (new, old)
        streams: list = [None] * 12
        took = [0.0] * 12

        def stream(i: int) -> None:
            started = time.monotonic()
            try:
                streams[i] = streamed(chat("bob-1-t", stream=True, timeout=60))
                took[i] = time.monotonic() - started
            except BaseException as error:   # said with when, in the assertion below
                streams[i] = f"{error!r} after {time.monotonic() - started:.1f} s"
        threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(streams))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        assert all(isinstance(chunks, list) for chunks in streams), streams
        sides = []
        for chunks in streams:
            side = chunks[0].split(" ", 1)[0]
            # the whole stream, every chunk from the generation it began on, for the adapter
            assert chunks == [f"{side} model=bob-1-t multiplexed=bob-1-t #{i}"
                              for i in range(STREAM_CHUNKS if side == "old" else 3)], chunks
            sides.append(side)
        print(f"canary 50 %: streams by generation {sorted(sides)}, each took {sorted(round(t) for t in took)} s")
        assert set(sides) == {"old", "new"}, sides
        status, _, body = call("GET", "/v1/models")   # the canary's key is the front end's own
        # (gina's route, the drain test's, is not in this table)
        assert [m["id"] for m in json.loads(body)["data"]] == [i for i in LISTED if i != "gina-1-two"]
        assert chat("alice-1-m@canary")[0] == 404
        # The front end counted each request by the generation it went to, in Ray's metrics
        # export, where argusd's sampler reads it (names.FRONTEND_REQUESTS_METRIC; counts as
        # argusd parses them: app -> outcome -> requests, summed over alice's and bob's routes).
        from daemon.core.traffic import Series
        from daemon.traffic import TrafficSampler

        def counted() -> dict:
            out: dict = {}
            for series in TrafficSampler(DASHBOARD).scrape().nodes.values():
                for (kind, _, labels), value in series.items():
                    tags = dict(labels)
                    if kind == Series.FRONT_END:
                        out[(tags["application"], tags["outcome"])] = out.get((tags["application"], tags["outcome"]),
                                                                             0) + value
            return out
        sent = {"new": new + sides.count("new"), "old": old + sides.count("old")}
        _wait(lambda: (counted().get((NEW.name, "ok"), 0) >= sent["new"]
                       and counted().get((OLD.name, "ok"), 0) >= sent["old"]), "the front end's counts in Ray's metrics",
              90)
        seen = counted()
        print(f"front end's counts in Ray's metrics: {seen} (this test's own: {sent})")
        assert not any(outcome == "failed" for _, outcome in seen), seen
    finally:
        serve.put_config(config(AFTER))   # as the switch test left it

"""argusd's traffic sampler against a real Ray with Serve (its own ports, no vLLM): tiny Serve
deployments named as argus names a model's (`LLMServer:<key>` in apps `llm-<key>`, and a second
generation's app beside it) answer HTTP requests, some raising; the sampler finds every node's
metrics export through the dashboard's node summary, and two scrapes give each model exactly the
requests and failures sent, summed over both apps, with a latency. An app that is not argus's
(same deployment name) and a 404 at Serve's proxy count for no model.

Run under `flock /tmp/argus-vllm.lock` (it starts a Ray). With ARGUS_TRAFFIC_CAPTURE=DIR it also
writes both scrapes' raw Prometheus text there (how tests/fixtures/ray_metrics/ was made)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from daemon.core.traffic import model_traffic
from daemon.traffic import MetricsUnavailable, TrafficRecorder, TrafficSampler, _get

REPO = Path(__file__).resolve().parents[2]
SERVING = REPO / ".venv-serve" / "bin"
pytestmark = pytest.mark.skipif(not (SERVING / "ray").exists(),
                                reason="needs .venv-serve (scripts/setup_serving.sh; CI has it)")
GCS_PORT, DASHBOARD_PORT, HTTP_PORT, METRICS_PORT = 6431, 8286, 8031, 58431
DASHBOARD = f"http://127.0.0.1:{DASHBOARD_PORT}"

APPS = textwrap.dedent(f"""
    import ray
    from ray import serve
    from starlette.responses import PlainTextResponse

    ray.init(address="127.0.0.1:{GCS_PORT}", logging_level="ERROR", log_to_driver=False)
    serve.start(http_options={{"host": "127.0.0.1", "port": {HTTP_PORT}}})

    def tiny(name):
        @serve.deployment(name=name, ray_actor_options={{"num_cpus": 0}})
        class Tiny:
            async def __call__(self, request):
                if request.query_params.get("fail"):
                    raise RuntimeError("asked to fail")
                return PlainTextResponse("ok")
        return Tiny.bind()

    serve.run(tiny("LLMServer:k1"), name="llm-k1", route_prefix="/k1")
    serve.run(tiny("LLMServer:k1"), name="llm-k1-g2", route_prefix="/k1g2")   # k1's next generation
    serve.run(tiny("LLMServer:k2"), name="llm-k2", route_prefix="/k2")
    serve.run(tiny("LLMServer:k1"), name="other", route_prefix="/other")    # not argus's
    print("apps up", flush=True)
""")


def _send(path: str, times: int) -> None:
    for _ in range(times):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{HTTP_PORT}{path}", timeout=30).read()
        except urllib.error.HTTPError:
            pass  # a raising deployment answers 500, an unknown route 404: both are what is sent


def _wait(predicate, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def test_the_sampler_reads_each_models_requests_failures_and_latency_from_ray():
    tmp = Path(tempfile.mkdtemp(prefix="argus-traffic-", dir="/tmp"))
    env = {"PATH": f"{SERVING}:/usr/bin:/bin", "HOME": str(tmp), "TMPDIR": str(tmp), "PYTHONPATH": str(REPO),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
           "RAY_metrics_report_interval_ms": "2000"}  # the agent's export lags this much behind the replicas
    log = open(tmp / "ray.log", "w")
    head = subprocess.Popen([str(SERVING / "ray"), "start", "--head", "--block", "--disable-usage-stats",
                             "--node-ip-address", "127.0.0.1", "--port", str(GCS_PORT), "--num-cpus", "1",
                             "--dashboard-host", "127.0.0.1", "--dashboard-port", str(DASHBOARD_PORT),
                             "--metrics-export-port", str(METRICS_PORT), "--ray-client-server-port", "20131",
                             "--dashboard-agent-listen-port", "52491"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        sampler = TrafficSampler(DASHBOARD, timeout=10)
        # Before Ray is up: one line saying why, nothing raised past the recorder.
        down = TrafficRecorder(TrafficSampler("http://127.0.0.1:9", timeout=2), interval_seconds=5)
        down.tick()
        assert down.history("k1")["available"] is False
        assert down.history("k1")["problem"].startswith("cannot reach the Ray dashboard at http://127.0.0.1:9")

        _wait(lambda: sampler.scrape().nodes, "the node's metrics export")
        done = subprocess.run([str(SERVING / "python"), "-c", APPS], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        _send("/k1", 1)  # one request each, so that every series exists before the interval starts
        _send("/k2", 1)
        _wait(lambda: len({k[1] for k in next(iter(sampler.scrape().nodes.values()))}) == 2, "k1 and k2's series")
        time.sleep(5)  # the agent's export settles (report interval 2 s)
        before = sampler.scrape()
        capture = os.environ.get("ARGUS_TRAFFIC_CAPTURE")
        export = f"http://127.0.0.1:{METRICS_PORT}/metrics"
        if capture:
            Path(capture).mkdir(parents=True, exist_ok=True)
            (Path(capture) / "before.prom").write_text(_get(export, 10))
        _send("/k1", 3)
        _send("/k1?fail=1", 1)
        _send("/k1g2", 2)
        _send("/k1g2?fail=1", 2)
        _send("/k2", 1)
        _send("/other", 4)
        _send("/nope", 3)  # 404 at Serve's proxy: reaches no deployment

        def settled():
            after = sampler.scrape()
            got = model_traffic(before, after)
            seconds = after.at - before.at
            counts = {k: (round(t.requests_per_s * seconds), round(t.failures_per_s * seconds)) for k, t in got.items()}
            return (after, got) if counts == {"k1": (8, 3), "k2": (1, 0)} else None
        after, got = _wait(settled, "the sent requests in the export", timeout=60)
        assert got["k1"].mean_latency_ms is not None and got["k1"].mean_latency_ms > 0
        assert got["k2"].mean_latency_ms is not None
        # The node summary named the export port Ray was started with.
        assert list(after.nodes) and all(isinstance(v, float) for v in next(iter(after.nodes.values())).values())
        if capture:
            (Path(capture) / "after.prom").write_text(_get(export, 10))
            (Path(capture) / "nodes-summary.json").write_text(_get(f"{DASHBOARD}/nodes?view=summary", 10))
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


def test_a_dashboard_that_cannot_be_reached_is_one_line():
    with pytest.raises(MetricsUnavailable, match=r"^cannot reach the Ray dashboard at http://127.0.0.1:9 "):
        TrafficSampler("http://127.0.0.1:9", timeout=2).scrape()

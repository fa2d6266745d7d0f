"""A Ray head as far as argusd's traffic chart reads it, over real HTTP on 127.0.0.1, for the
browser test: the dashboard's node summary (captured from a real Ray 2.60, pointed at this
server) and a node's metrics export whose text is a real Ray Serve capture
(tests/fixtures/ray_metrics/) with one model's counters moved on at each scrape. Serve's REST
API answers "no applications" (argusd's reconcile is not what is tested with it). The sampler
itself is tested against a real Ray in tests/integration/test_traffic_from_ray.py."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ray_metrics"
SERIES = ("ray_serve_deployment_request_counter_total", "ray_serve_deployment_error_counter_total",
          "ray_serve_deployment_processing_latency_ms_count", "ray_serve_deployment_processing_latency_ms_sum")


def traffic_at(scrape: int) -> tuple[int, int, float]:
    """The requests, failures and latency (ms) the model gets before `scrape`: a made-up day's
    shape, busy then quieter, a burst of failures in the middle."""
    requests = 4 + (scrape % 6) + (6 if 8 <= scrape % 30 < 14 else 0)
    failures = 2 if scrape % 30 in (10, 11) else 0
    return requests, failures, 180.0 + 35 * (scrape % 4) + (120 if 8 <= scrape % 30 < 14 else 0)


def export_text(model_key: str, scrape: int) -> str:
    """The captured export with model k1 renamed to `model_key` and, on its first series of each
    kind, the counts of every scrape up to `scrape` added."""
    text = (FIXTURES / "after.prom").read_text()
    text = text.replace('"LLMServer:k1"', f'"LLMServer:{model_key}"').replace('"llm-k1"', f'"llm-{model_key}"')
    ok = bad = 0
    latency = 0.0
    for n in range(1, scrape + 1):
        requests, failures, ms = traffic_at(n)
        ok, bad, latency = ok + requests - failures, bad + failures, latency + requests * ms
    add = {SERIES[0]: ok, SERIES[1]: bad, SERIES[2]: ok + bad, SERIES[3]: latency}
    done: set[str] = set()
    lines = []
    for line in text.splitlines():
        name = line.split("{", 1)[0]
        if name in add and name not in done and f'deployment="LLMServer:{model_key}"' in line \
                and f'application="llm-{model_key}"' in line:
            labels, value = line.rsplit(" ", 1)
            line = f"{labels} {float(value) + add[name]}"
            done.add(name)
        lines.append(line)
    assert done == set(add), f"the capture lacks a series of k1: {set(add) - done}"
    return "\n".join(lines) + "\n"


class RayMetricsStub:
    def __init__(self, model_key: str = ""):
        self.model_key = model_key
        self.scrapes = 0
        self.down = False  # set: the dashboard does not answer (as when Ray is stopped)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: str, kind: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                if stub.down:
                    self._send(503, "{}", "application/json")
                elif self.path.startswith("/nodes?view=summary"):
                    self._send(200, json.dumps(stub.summary()), "application/json")
                elif self.path == "/metrics":
                    if stub.model_key:  # the model's traffic starts once it exists
                        stub.scrapes += 1
                    self._send(200, export_text(stub.model_key, stub.scrapes) if stub.model_key else "",
                               "text/plain; version=0.0.4")
                elif self.path.startswith("/api/serve/"):
                    self._send(200, json.dumps({"applications": {}}), "application/json")
                else:
                    self._send(200, json.dumps({"ray_version": "2.60.0"}), "application/json")

            def do_PUT(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._send(200, "{}", "application/json")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def summary(self) -> dict:
        captured = json.loads((FIXTURES / "nodes-summary.json").read_text())
        for node in captured["data"]["summary"]:
            node["raylet"].update(nodeManagerAddress="127.0.0.1", metricsExportPort=self.port)
        return captured

    def __enter__(self) -> "RayMetricsStub":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

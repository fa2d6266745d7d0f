"""A Ray dashboard that answers slowly or not at all, over real HTTP on 127.0.0.1: the fault
"the dashboard accepts connections but does not answer" (seen when the head is overloaded)
made on demand, for the tests and benchmark that argusd's sync never waits on Serve. It
answers Serve's REST shape only as far as argusd's reconcile needs it (no applications)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class DashboardStub:
    def __init__(self, delay: float | None = 0.0):
        """`delay`: seconds before each answer; None: never answer (until stopped)."""
        self.delay = delay
        self.calls = 0
        self._stopped = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: object) -> None:
                stub.calls += 1
                if stub.delay is None:
                    stub._stopped.wait()
                    return
                if stub._stopped.wait(stub.delay):
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._answer({"applications": {}} if self.path.startswith("/api/serve/") else {"ray_version": "2.60.0"})

            def do_PUT(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer({})

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "DashboardStub":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self.server.shutdown()
        self.server.server_close()

"""The dashboard client reading a replica's log over real HTTP on 127.0.0.1: the replies that
must cost only that read (ClusterError, or text), never a reconcile tick (reconciler.py,
_with_replica_starts): a reply cut off mid-body, and bytes that are not UTF-8."""
from __future__ import annotations

import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from daemon.core.replica_contract import read_replica_start
from daemon.errors import ClusterError
from daemon.serving.client import LOG_READ_TIMEOUT_S, ServeClient

LINE = b'argus replica start: {"imports_s": 23.2, "engine_s": 42.0}\n'


@pytest.fixture
def dashboard():
    """A dashboard whose log reply is `served["body"]`, announced as `served["length"]` bytes."""
    served: dict = {"body": b"", "length": None, "paths": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            served["paths"].append(self.path)
            body = served["body"]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(served["length"] or len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)   # a short body ends here

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield ServeClient(f"http://127.0.0.1:{server.server_address[1]}"), served
    server.shutdown()
    server.server_close()


def test_a_log_reply_cut_off_is_a_cluster_error(dashboard):
    client, served = dashboard
    served["body"], served["length"] = LINE[:20], 4096
    with pytest.raises(ClusterError, match="the reply broke off"):
        client.replica_log("n1", "/serve/replica_x.log")


def test_a_log_with_bytes_that_are_not_utf8_is_read_with_them_replaced(dashboard):
    client, served = dashboard
    served["body"] = b"\xff\xfe a replica's own output\n" + LINE
    text = client.replica_log("n1", "/serve/replica_x.log")
    assert "\ufffd" in text
    assert read_replica_start(text).to_payload() == {"replica_imports_s": 23.2, "replica_engine_s": 42.0}
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(served["paths"][0]).query))
    assert query == {"node_id": "n1", "filename": "serve/replica_x.log", "lines": "500",
                     "timeout": str(LOG_READ_TIMEOUT_S)}

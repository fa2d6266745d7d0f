"""Run the API and UI inside argusd: uvicorn on a socket bound up front (so a port in use is
one clear error at start), in a daemon thread, so the web part failing never stops sync or
reconcile."""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any, Callable, Optional

import uvicorn

from daemon.api.http import create_app
from daemon.api.service import ModelService, ServeStatusSource, TrafficSource
from daemon.api.tokens import TokenStore, tokens_path
from daemon.config import Config, openai_base_url

log = logging.getLogger("argusd")


def bind(listen: str) -> socket.socket:
    host, _, port = listen.rpartition(":")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]") or "0.0.0.0", int(port)))
    sock.listen(128)
    return sock


class ApiServer:
    def __init__(self, config: Config, listen: str, *, wake: Callable[[], None], serve_client: Any,
                 health: Callable[[], dict], traffic: Optional[TrafficSource] = None):
        self.listen = listen
        self.tokens = TokenStore(tokens_path(config.state.db))
        service = ModelService(config, os.path.join(os.path.dirname(config.state.db), "api-clones"), wake=wake,
                               serve=ServeStatusSource(serve_client) if serve_client is not None else None,
                               health=health, traffic=traffic)
        self.app = create_app(service, self.tokens, openai_base_url(config))
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False,
                                                    timeout_graceful_shutdown=2))
        self.sock = bind(listen)  # OSError (port in use) before any thread starts
        self.thread = threading.Thread(target=self._run, name="argusd-api", daemon=True)

    def start(self) -> "ApiServer":
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException:  # noqa: BLE001 - the web part must never take argusd down
            log.exception("the API server stopped (sync and reconcile go on)")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.tokens.close()

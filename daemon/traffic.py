"""Reads Ray Serve's per-deployment metrics from every Ray node and keeps the last half hour of
each model's traffic in memory for the model page (the rules are in daemon/core/traffic.py).

Where the numbers are: each Ray node's metrics agent serves Prometheus text at
http://<node address>:<metrics export port>/metrics; the dashboard's node summary
(`GET /nodes?view=summary`, Ray's GcsNodeInfo under `raylet`) names both for every node.
Nothing here is kept on disk: after a restart the chart starts empty. A scrape that fails is
a gap with its reason; it never stops argusd's other work (its own thread)."""
from __future__ import annotations

import collections
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from daemon.core.spec import MAX_CANARY_SECONDS
from daemon.core.states import EventType, ModelState
from daemon.core.traffic import ModelNaming, Scrape, TrafficPoint, app_counts, counts_since, model_history, \
    model_traffic, parse_export, ring_length
from daemon.replicas.names import MODEL_APP_PREFIX, MODEL_SERVER_PREFIX
from daemon.serving.client import auth_token

log = logging.getLogger("argusd")

ARGUS_NAMING = ModelNaming(deployment_prefix=MODEL_SERVER_PREFIX, app_prefix=MODEL_APP_PREFIX)
WINDOW_SECONDS = 30 * 60


class MetricsUnavailable(Exception):
    """Ray's metrics cannot be read now; the message says why, in one line."""


def _get(url: str, timeout: float, token: Optional[str] = None) -> str:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read().decode("utf-8", errors="replace")


def metrics_endpoints(summary: Any) -> dict[str, str]:
    """Each alive node's metrics URL, by node id, from the dashboard's node summary."""
    endpoints = {}
    for node in ((summary or {}).get("data") or {}).get("summary") or []:
        raylet = (node or {}).get("raylet") or {}
        address, port = raylet.get("nodeManagerAddress"), raylet.get("metricsExportPort")
        if raylet.get("state") == "ALIVE" and address and port:
            host = f"[{address}]" if ":" in address else address
            endpoints[raylet.get("nodeId") or f"{address}:{port}"] = f"http://{host}:{port}/metrics"
    return endpoints


class TrafficSampler:
    """One scrape of every alive node's Ray metrics."""

    def __init__(self, dashboard_url: str, timeout: float = 5.0, clock: Callable[[], float] = time.time):
        self.dashboard_url = dashboard_url.rstrip("/")
        self.timeout = timeout
        self.clock = clock

    def scrape(self) -> Scrape:
        try:
            summary = json.loads(_get(f"{self.dashboard_url}/nodes?view=summary", self.timeout, auth_token()))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise MetricsUnavailable(f"cannot reach the Ray dashboard at {self.dashboard_url} "
                                     f"({getattr(exc, 'reason', exc)})") from None
        endpoints = metrics_endpoints(summary)
        if not endpoints:
            raise MetricsUnavailable(f"the Ray dashboard at {self.dashboard_url} lists no node with a metrics export")
        at = self.clock()
        nodes, problems = {}, []
        for node, url in sorted(endpoints.items()):
            try:
                nodes[node] = parse_export(_get(url, self.timeout), ARGUS_NAMING)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                problems.append(f"{url} ({getattr(exc, 'reason', exc)})")
        if not nodes:
            raise MetricsUnavailable("cannot read Ray's metrics export: " + "; ".join(problems))
        if problems:
            log.info("traffic: some nodes' metrics were not read: %s", "; ".join(problems))
        return Scrape(at=at, nodes=nodes)


class TrafficRecorder:
    """Scrapes every `interval_seconds` and keeps the last WINDOW_SECONDS of points."""

    def __init__(self, sampler: TrafficSampler, interval_seconds: float, window_seconds: float = WINDOW_SECONDS):
        self.sampler = sampler
        self.interval_seconds = interval_seconds
        self.points: collections.deque[TrafficPoint] = collections.deque(
            maxlen=ring_length(window_seconds, interval_seconds))
        self._last: Optional[Scrape] = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="argusd-traffic", daemon=True)

    def tick(self) -> None:
        try:
            scrape = self.sampler.scrape()
        except MetricsUnavailable as exc:
            self._last = None  # the next good scrape starts a new interval
            with self._lock:
                self.points.append(TrafficPoint(at=self.sampler.clock(), seconds=0.0, models={}, problem=str(exc)))
            return
        if self._last is not None and scrape.at > self._last.at:
            point = TrafficPoint(at=scrape.at, seconds=scrape.at - self._last.at, models=model_traffic(self._last, scrape))
            with self._lock:
                self.points.append(point)
        self._last = scrape

    def history(self, model_key: str) -> dict[str, Any]:
        """What the model page draws: points oldest first; `problem` is set while the latest
        scrape failed."""
        with self._lock:
            points = list(self.points)
        problem = points[-1].problem if points else None
        return {"available": problem is None, "problem": problem, "interval_seconds": self.interval_seconds,
                "window_seconds": (self.points.maxlen - 1) * self.interval_seconds,
                "points": model_history(points, model_key)}

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the chart must never take argusd down
                log.exception("traffic: a scrape failed unexpectedly")
            self._stop.wait(self.interval_seconds)

    def start(self) -> "TrafficRecorder":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


class CanaryWatch:
    """The failure counts of each model in its canary phase, for the reconciler (the decision is
    rollout.canary_verdict). It scrapes Ray's metrics at most every `interval_seconds`, only
    while some canary runs, and keeps the points in memory: an argusd restarted mid-canary has
    only the intervals it read since it started (the phase's start is in the store), and says
    since when and for how long (canary_verdict waits until they cover the canary)."""

    def __init__(self, sampler: TrafficSampler, interval_seconds: float,
                 monotonic: Callable[[], float] = time.monotonic, clock: Callable[[], float] = time.time):
        self.sampler = sampler
        self.interval_seconds = interval_seconds
        self.monotonic = monotonic
        self.clock = clock
        self._watched: dict[tuple[str, datetime], datetime] = {}   # (model key, canary start) -> first looked at
        self.points: collections.deque[TrafficPoint] = collections.deque(
            maxlen=ring_length(MAX_CANARY_SECONDS, interval_seconds))
        self._last: Optional[Scrape] = None
        self._read_at: Optional[float] = None

    def evidence(self, store: Any, models: list[Any]) -> dict[str, Any]:
        """model key -> rollout.CanaryEvidence for each DEPLOYING model whose current generation's
        canary began (its CANARY_STARTED event); counts None while no interval was read since."""
        from daemon.serving.rollout import CanaryEvidence
        from daemon.store import parse_iso

        began = store.last_events_of((EventType.CANARY_STARTED,))
        running = {m.model_key: parse_iso(began[m.model_key].time) for m in models
                   if m.state == ModelState.DEPLOYING and m.model_key in began
                   and began[m.model_key].payload.get("generation") == m.generation}
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        self._watched = {(key, at): self._watched.get((key, at), now) for key, at in running.items()}
        if not running:
            self._last = None   # nothing to watch: no scrapes (the next canary starts a new interval)
            return {}
        self._read()
        out = {}
        for key, at in running.items():
            since, watched = at.timestamp(), self._watched[(key, at)]
            read = [p for p in self.points if p.problem is None and p.at - p.seconds >= since]
            if not read:
                out[key] = CanaryEvidence(at, None, interval_seconds=self.interval_seconds, watched_from=watched)
                continue
            began = datetime.fromtimestamp(min(p.at - p.seconds for p in read), timezone.utc)
            out[key] = CanaryEvidence(at, counts_since(self.points, key, since), began,
                                      sum(p.seconds for p in read), self.interval_seconds, watched)
        return out

    def _read(self) -> None:
        now = self.monotonic()
        if self._read_at is not None and now - self._read_at < self.interval_seconds:
            return
        self._read_at = now
        try:
            scrape = self.sampler.scrape()
        except MetricsUnavailable as exc:
            log.info("canary: %s", exc)
            self._last = None
            return
        if self._last is not None and scrape.at > self._last.at:
            self.points.append(TrafficPoint(at=scrape.at, seconds=scrape.at - self._last.at, models={},
                                            apps=app_counts(self._last, scrape)))
        self._last = scrape

"""argusd's Prometheus metrics (the standard prometheus_client), served on /metrics.

Counters and histograms count what argusd does as it does it; the models by state and the
rejected spec files by kind are read from the store at scrape time, so they are right after
a restart too. Serving metrics is a side door: a failure there never stops sync or
reconcile (the HTTP server runs in its own thread; a store it cannot read gives no sample).
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from daemon.core.states import ModelState
from daemon.core.records import RejectionKind
from daemon.store import Store

log = logging.getLogger("argus.metrics")


class StoreCollector(Collector):
    """Level metrics from the store, read when Prometheus scrapes."""

    def __init__(self, db_path: str):
        self.db_path = db_path

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            store = Store.open_readonly(self.db_path)
        except Exception as exc:  # no store yet, or unreadable: no sample rather than a broken scrape
            log.debug("metrics: cannot read the store: %s", exc)
            return
        try:
            states = {state.value: 0 for state in ModelState}
            generations = []   # (model id, wanted generation, serving generation or None)
            for model in store.list_models(include_deleted=False):
                states[model.state] = states.get(model.state, 0) + 1
                generations.append((model.model_id, model.generation, model.applied_generation))
            kinds = {RejectionKind.SPEC: 0, RejectionKind.OWNERSHIP: 0}
            for rejection in store.rejections():
                kinds[rejection.kind] = kinds.get(rejection.kind, 0) + 1
        finally:
            store.close()
        models = GaugeMetricFamily("argus_models", "Models in the store by state (DELETED not counted)",
                                   labels=["state"])
        for state, count in sorted(states.items()):
            if state != ModelState.DELETED:
                models.add_metric([state], count)
        yield models
        # A rollout in flight or rolled back: the serving generation is below the wanted one.
        serving = GaugeMetricFamily("argus_model_serving_generation",
                                    "The generation of each model that serves its requests (absent: none has yet)",
                                    labels=["model_id"])
        wanted = GaugeMetricFamily("argus_model_wanted_generation", "The newest committed generation of each model",
                                   labels=["model_id"])
        for model_id, generation, applied in sorted(generations):
            wanted.add_metric([model_id], generation)
            if applied is not None:
                serving.add_metric([model_id], applied)
        yield serving
        yield wanted
        rejected = GaugeMetricFamily("argus_rejected_specs", "Spec files whose latest version was rejected, by kind",
                                     labels=["kind"])
        for kind, count in sorted(kinds.items()):
            rejected.add_metric([kind], count)
        yield rejected


class Metrics:
    def __init__(self, db_path: str):
        self.registry = CollectorRegistry()
        r = self.registry
        self.commits = Counter("argus_commits_recorded", "Commits recorded in the store", registry=r)
        self.syncs = Counter("argus_sync_passes", "Sync passes by outcome (noop, synced, resynced, empty, error)",
                             ["outcome"], registry=r)
        self.sync_seconds = Histogram("argus_sync_duration_seconds", "One sync pass, git to store", registry=r,
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.sync_last = Gauge("argus_sync_last_success_timestamp_seconds", "When a sync pass last succeeded",
                               registry=r)
        self.reconciles = Counter("argus_reconcile_passes",
                                  "Reconcile passes by outcome (noop, applied, recorded, apply_failed, renewed, "
                                  "claimed, standby, waiting_for_sync, error)",
                                  ["outcome"], registry=r)
        self.reconcile_seconds = Histogram("argus_reconcile_duration_seconds", "One reconcile pass, Serve calls "
                                           "included", registry=r,
                                           buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.serve_up = Gauge("argus_serve_reachable", "1 when the last reconcile reached Ray Serve, else 0",
                              registry=r)
        self.lease_active = Gauge("argus_lease_active", "1 when this argusd holds the cluster's lease (it reconciles), "
                                  "0 when it stands by", registry=r)
        r.register(StoreCollector(db_path))

    def watch_fetch(self, seconds_since_good_fetch: Callable[[], float]) -> None:
        """A remote gitops.repo: how stale argusd's mirror may be, read at scrape time."""
        Gauge("argus_gitops_fetch_age_seconds", "Seconds since argusd last fetched the remote GitOps repo "
              "successfully (since argusd started, while no fetch has worked)",
              registry=self.registry).set_function(seconds_since_good_fetch)

    def synced(self, outcome: str, commits: int, seconds: float) -> None:
        self.syncs.labels(outcome).inc()
        self.sync_seconds.observe(seconds)
        if outcome != "error":
            self.commits.inc(commits)
            self.sync_last.set(time.time())

    def reconciled(self, outcome: str, seconds: float, reachable: bool, active: bool = True) -> None:
        self.reconciles.labels(outcome).inc()
        self.reconcile_seconds.observe(seconds)
        self.serve_up.set(1 if reachable else 0)
        self.lease_active.set(1 if active else 0)

    def serve(self, listen: str) -> None:
        """Serve /metrics on HOST:PORT in a background thread."""
        host, _, port = listen.rpartition(":")
        start_http_server(int(port), addr=host or "0.0.0.0", registry=self.registry)

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

from daemon.core.describe import replicas_view
from daemon.core.states import EventType, ModelState
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
            views = []         # (model id, describe.replicas_view, reserved GPUs)
            newest = store.last_events()
            scaled = store.last_events_of((EventType.IDLE, EventType.WOKE))
            woke = store.last_events_of((EventType.WOKE,))
            for model in store.list_models(include_deleted=False):
                states[model.state] = states.get(model.state, 0) + 1
                generations.append((model.model_id, model.generation, model.applied_generation))
                key = model.model_key
                view = replicas_view(model, newest.get(key), scaled.get(key), woke.get(key))
                if view is not None:
                    reserved = 0 if model.resolved.get("suspended") else (
                        int(model.resolved["num_replicas"]) * int(model.resolved["gpus_per_replica"]))
                    views.append((model.model_id, view, reserved))
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
        yield from _replica_families(views)
        rejected = GaugeMetricFamily("argus_rejected_specs", "Spec files whose latest version was rejected, by kind",
                                     labels=["kind"])
        for kind, count in sorted(kinds.items()):
            rejected.add_metric([kind], count)
        yield rejected


def _replica_families(views: list[tuple[str, dict, int]]) -> Iterator[GaugeMetricFamily]:
    """Each model's replica range, reserved GPUs, why it runs what it runs, and its last wake."""
    low = GaugeMetricFamily("argus_model_min_replicas", "Replicas a model keeps however idle (num_replicas, "
                            "or autoscaling.min_replicas)", labels=["model_id"])
    high = GaugeMetricFamily("argus_model_max_replicas", "Most replicas a model may run (num_replicas, or "
                             "autoscaling.max_replicas)", labels=["model_id"])
    gpus = GaugeMetricFamily("argus_model_reserved_gpus", "GPUs a model reserves (what quotas count; 0 suspended)",
                             labels=["model_id"])
    why = GaugeMetricFamily("argus_model_replicas_why", "1 for why a model runs the replicas it runs (idle, "
                            "scaled up by load, suspended, waiting for GPUs, over quota, ...)",
                            labels=["model_id", "why"])
    wake = GaugeMetricFamily("argus_model_last_wake_seconds", "How long a model at zero replicas took to wake, "
                             "the last time", labels=["model_id"])
    for model_id, view, reserved in sorted(views, key=lambda v: v[0]):
        low.add_metric([model_id], view["min"])
        high.add_metric([model_id], view["max"])
        gpus.add_metric([model_id], reserved)
        why.add_metric([model_id, view["why"]], 1)
        took = (view.get("last_wake") or {}).get("took_s")
        if took is not None:
            wake.add_metric([model_id], float(took))
    yield from (low, high, gpus, why, wake)


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
        self.replicas = Gauge("argus_model_replicas", "Replicas of each model as Ray Serve reported them at the "
                              "last reconcile: running, and wanted (its autoscaler's target)",
                              ["model_id", "state"], registry=r)

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

    def replicas_seen(self, seen: dict[str, tuple[int, int | None]]) -> None:
        """model id -> (running, wanted) replicas, as the last reconcile read them from Serve;
        models no longer there are dropped."""
        self.replicas.clear()
        for model_id, (running, wanted) in sorted(seen.items()):
            self.replicas.labels(model_id, "running").set(running)
            if wanted is not None:
                self.replicas.labels(model_id, "wanted").set(wanted)

    def serve(self, listen: str) -> None:
        """Serve /metrics on HOST:PORT in a background thread."""
        host, _, port = listen.rpartition(":")
        start_http_server(int(port), addr=host or "0.0.0.0", registry=self.registry)

"""The reconcile shell: gather desired (store) and observed (Serve) state, ask
plan.plan what to do, apply it declaratively, record the outcome.

Level-triggered and idempotent: every tick starts from scratch. A no-op applies nothing
and writes nothing. A failed apply records one APPLY_FAILED event per model and returns;
the next tick tries again.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Callable

from daemon.config import Config
from daemon.core.replica_contract import read_replica_start
from daemon.core.spec import ResolvedServingSpec
from daemon.folders import path_problem, read_adapter, source_problem
from daemon.core.states import CLUSTER_EVENTS, EventType, ModelState, StrEnum
from daemon.errors import ClusterError
from daemon.replicas.names import LEASE_APP, probe_id
from daemon.serving.client import ServeClient
from daemon.serving.desired import DesiredModel, Serving, Transition
from daemon.serving.judge import adapters_to_probe, cluster_event, lost_while_claiming
from daemon.serving.lease import LeaseMemory, LeaseValue, Role, decide
from daemon.serving.llm_config import LlmSettings
from daemon.serving.observe import Observed, building, observed_from_status
from daemon.serving.placement import AdmissionMode
from daemon.serving.plan import Plan, ServeSettings, plan, renews_only
from daemon.serving.probe import endpoint_url, probe_adapter, probe_model
from daemon.serving.rollout import rollouts_to_probe
from daemon.serving.reaper import reap_orphaned_engines
from daemon.serving.serve_config import LeaseApp, OtherApp, ServeConfig
from daemon.store import Store, iso, parse_iso, utc_now
from daemon.traffic import CanaryWatch, TrafficSampler

log = logging.getLogger("argus.reconcile")


def sync_behind(store: Store) -> str | None:
    """Why the store is not yet what git says, read from the store's own state each tick (so it
    cannot stick: sync clears it in the transaction that records the head): no commit recorded
    yet (a new or lost store: applying it would remove every model Serve runs), or a store being
    rebuilt from the history that has not reached the head (applying it would deploy older
    versions of the models). None: caught up."""
    if store.cursor() is None:
        return "the store has recorded no commit yet"
    if store.rebuilding():
        return "the store is being rebuilt from the git history and has not reached its head"
    return None



def _at_zero(observed: Observed, model_key: str, app: str | None) -> bool:
    """Serve runs no replica of the model's deployment in `app` (an autoscaled one at zero)."""
    seen = observed.server(model_key, app) if app is not None else None
    return seen is not None and seen[1].running_replicas == 0


class ReconcileOutcome(StrEnum):
    STANDBY = "standby"            # another argusd holds the lease: nothing touched
    CLAIMED = "claimed"            # wrote (or waits to read back) a claim on the lease
    RENEWED = "renewed"            # only the lease was renewed
    NOOP = "noop"                  # nothing to apply, nothing to record
    WAITING_FOR_SYNC = "waiting_for_sync"  # the store has not caught up with git: Serve left as it is
    APPLIED = "applied"            # a new Serve config was applied (and its transitions recorded)
    RECORDED = "recorded"          # only state changes observed in Serve were recorded
    APPLY_FAILED = "apply_failed"  # Serve refused the config or could not be reached


@dataclass
class ReconcileResult:
    outcome: ReconcileOutcome
    recheck_soon: bool = False   # look again soon, not a poll interval later (Plan.awaiting_route)


class Reconciler:
    def __init__(self, store: Store, client: ServeClient, config: Config,
                 clock: Callable[[], datetime] = utc_now, reap: Callable[[], object] | None = None,
                 identity: str | None = None, monotonic: Callable[[], float] = time.monotonic,
                 probe: Callable[[str], tuple[bool, str | None]] | None = None,
                 probe_rollout: Callable[[str], tuple[bool, str | None]] | None = None,
                 canary_watch: CanaryWatch | None = None):
        """`reap`: clears engine processes a dead replica left behind (default: the reaper job).
        `identity`: this daemon's name in the lease (default: host, pid and a random tag).
        `probe`: asks the endpoint by an adapter's id (default: a request to Serve's endpoint);
        `probe_rollout`: the same by a new generation's probe id."""
        self.store = store
        self.client = client
        self.lease_ttl = config.serving.serve.lease_seconds
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.lease_memory = LeaseMemory()
        self.role = Role.STANDBY if self.lease_ttl else Role.ACTIVE
        self.monotonic = monotonic
        self.reap = reap if reap is not None else (lambda: reap_orphaned_engines(client))
        self.settings = LlmSettings.from_config(config)
        self.serve = ServeSettings.from_config(config)
        self._waking_probes: dict[str, threading.Thread] = {}   # public or probe id -> its wake request
        self.admission = AdmissionMode(config.serving.llm.admission)
        self.clock = clock
        self.root = config.storage.root
        self.quota = config.gpu_quota   # users.<user>.max_gpus, else limits.max_gpus_per_user (core/quota.py)
        serve = config.serving.serve
        base_url = endpoint_url(serve.http_host, serve.http_port, serve.dashboard_url)
        self._last_cluster: tuple[str, dict] | None = None   # the newest cluster event (read once)
        self._waiting: str | None = None   # why the last tick waited for sync (logged once per reason)
        self._waking: dict[str, datetime] = {}   # model key -> the tick Serve first wanted a replica of it at zero
        # model id -> (running, wanted) replicas of its serving deployment at the last tick (/metrics)
        self.replicas_seen: dict[str, tuple[int, int | None]] = {}
        self.probe = probe if probe is not None else (lambda model_id, *timeout: probe_adapter(base_url, model_id, *timeout))
        self.probe_rollout = (probe_rollout if probe_rollout is not None
                              else (lambda model_id, *timeout: probe_model(base_url, model_id, *timeout)))
        self.canary_watch = canary_watch or CanaryWatch(TrafficSampler(serve.dashboard_url), config.api.traffic_seconds)

    def desired(self) -> list[DesiredModel]:
        out = []
        newest = self.store.last_events()
        applied = self.store.last_events_of((EventType.APPLIED, EventType.ROLLOUT_STARTED))
        scaled = self.store.last_events_of((EventType.IDLE, EventType.WOKE))
        for row in self.store.list_models():
            spec = ResolvedServingSpec.from_dict(row.resolved)
            last = newest.get(row.model_key)
            out.append(DesiredModel(
                model_key=row.model_key, model_id=row.model_id, state=row.state, generation=row.generation,
                spec=spec,
                # Checked here, before Serve, through symlinks: a missing or swapped folder fails
                # fast with a clear reason instead of loading whatever the path leads to now.
                source_problem=(source_problem(spec.model_source, spec.user_id, self.root, spec.gpus_per_replica)
                                if row.state == ModelState.QUEUED and not spec.is_adapter
                                # While it runs, the path rules still hold: a swapped folder fails it.
                                else path_problem(spec.model_source, spec.user_id, self.root)
                                if row.state in (ModelState.DEPLOYING, ModelState.RUNNING) else None),
                adapter=(read_adapter(spec.model_source, spec.user_id, self.root)
                         if spec.is_adapter and row.state in (ModelState.QUEUED, ModelState.DEPLOYING) else None),
                last_event=(last.event_type, last.payload) if last else None,
                was_running=row.applied_generation is not None,
                ran_this_generation=row.applied_generation == row.generation,
                applied_generation=row.applied_generation,
                applied_at=parse_iso(applied[row.model_key].time) if row.model_key in applied else None,
                last_scale=EventType(scaled[row.model_key].event_type) if row.model_key in scaled else None,
                waking_since=self._waking.get(row.model_key),
                author=row.commit_author, commit=row.commit_sha,
                serving=(Serving.from_dict(row.model_key, row.serving)
                         if row.serving is not None and row.state == ModelState.FAILED else None)))
        return out

    def _remember_wakes(self, models: list[DesiredModel], observed: Observed) -> None:
        """Since when Serve has wanted a replica of each model it runs none of (the WOKE event's
        wake time is measured from there); kept in memory: an argusd started mid-wake records
        the wake without its time."""
        now = self.clock()
        self.replicas_seen = {}
        for model in models:
            seen = observed.server(model.model_key, observed.live_app(model.model_key, model.model_id))
            if seen is not None and not model.spec.is_adapter:
                self.replicas_seen[model.model_id] = (seen[1].running_replicas, seen[1].target_replicas)
            if seen is not None and seen[1].waking:
                self._waking.setdefault(model.model_key, now)
            else:
                self._waking.pop(model.model_key, None)

    def tick(self) -> ReconcileResult:
        try:
            status = self.client.get_applications()
        except ClusterError as exc:
            self._record_cluster(str(exc))
            raise
        self._record_cluster(None)
        observed = observed_from_status(status)
        lease, renewal = None, None
        if self.lease_ttl:
            step = decide(self.lease_memory, LeaseValue.from_dict(observed.lease()),
                          self.identity, self.monotonic(), self.lease_ttl, busy=building(observed))
            if step.role != self.role:
                log.info("lease: %s -> %s (%s)", self.role, step.role, self.identity)
            self.lease_memory, self.role = step.memory, step.role
            seen = step.memory.mine if step.role == Role.ACTIVE else LeaseValue.from_dict(observed.lease())
            # For `argusctl status` (one statement, autocommit); an unchanged view writes nothing.
            self.store.set_lease_view(step.role, self.identity, seen.holder if seen else None,
                                      seen.epoch if seen else None, iso(self.clock()))
            if step.role == Role.STANDBY:
                return ReconcileResult(ReconcileOutcome.STANDBY)
            if step.role == Role.CLAIMING:
                # Recorded before the claim's PUT: the first PUT after a Ray restart starts Serve,
                # which takes seconds (or fails), and status should not say RUNNING meanwhile.
                models = self.desired()
                self._record(lost_while_claiming(models, observed),
                             {m.model_key: (m.generation, m.state) for m in models})
                if step.write is not None:
                    self.client.put_config(self._claim(observed, step.write))
                return ReconcileResult(ReconcileOutcome.CLAIMED)
            lease, renewal = (step.write or step.memory.mine).to_dict(), step.write
        behind = sync_behind(self.store)
        if behind is not None:
            return self._wait_for_sync(behind, observed, renewal)
        self._waiting = None
        models = self.desired()
        capacity = (None if self.settings.on_cpu
                    else self.client.capacity(self.settings.accelerator_type, self.admission))
        probes = {}
        for adapter, base in adapters_to_probe(models, observed):
            if _at_zero(observed, base.model_key, observed.live_app(base.model_key, base.model_id)):
                self._wake(adapter.model_id, self.probe)
                continue
            decided, failure = self.probe(adapter.model_id)
            if decided:
                probes[adapter.model_key] = failure
        decision = plan(models, observed, capacity=capacity, settings=self.settings, serve=self.serve, lease=lease,
                        probes=probes, rollout_probes=self._probe_rollouts(models, observed), now=self.clock(),
                        quotas=self.quota, canaries=self.canary_watch.evidence(self.store, models))
        self._remember_wakes(models, observed)
        if decision.noop:
            return ReconcileResult(ReconcileOutcome.NOOP, recheck_soon=decision.awaiting_route)
        if decision.apply is not None:
            try:
                self.client.put_config(decision.apply.to_json())
            except ClusterError as exc:
                self._record_apply_failure(decision, str(exc))
                return ReconcileResult(ReconcileOutcome.APPLY_FAILED)
            renewal_only = lease is not None and not decision.transitions and renews_only(decision.apply, observed)
            if renewal_only:
                log.debug("renewed the lease (%s)", lease)
                return ReconcileResult(ReconcileOutcome.RENEWED, recheck_soon=decision.awaiting_route)
            log.info("applied Serve config: %d application(s)", len(decision.apply.apps))
        self._record(self._with_replica_starts(decision.transitions),
                     {m.model_key: (m.generation, m.state) for m in models})
        adapters = {m.model_key for m in models if m.spec.is_adapter}
        if any(t.event_type in (EventType.DEGRADED, EventType.REPLICAS_LOST, EventType.FAILED, EventType.ROLLED_BACK)
               and t.model_key not in adapters
               for t in decision.transitions):
            self.reap()  # a replica died or gave up: its engine processes may have outlived it
        return ReconcileResult(ReconcileOutcome.APPLIED if decision.apply is not None else ReconcileOutcome.RECORDED,
                               recheck_soon=decision.awaiting_route)

    def _wake(self, model_id: str, probe: Callable[..., tuple[bool, str | None]]) -> None:
        """A probe of a model at zero replicas, sent in the background: the tick (and the lease it
        renews) must not wait out a cold start. The request stays held by the front end while Serve
        wakes the model, so Serve keeps seeing the demand; its answer is not the verdict: the
        probe that decides runs on a later tick, once a replica runs."""
        running = self._waking_probes.get(model_id)
        if running is not None and running.is_alive():
            return
        thread = threading.Thread(target=probe, args=(model_id, self.serve.wake_timeout_s + 30), daemon=True,
                                  name=f"wake {model_id}")
        self._waking_probes[model_id] = thread
        thread.start()

    def _probe_rollouts(self, models: list[DesiredModel], observed: Observed) -> dict[str, str | None]:
        """Ask each new generation that is ready beside the serving one by its probe id, then each
        of its base's running adapters (so they are loaded before clients move): model key -> None
        when all answered, else the first definite failure; no entry while any has no verdict."""
        out: dict[str, str | None] = {}
        frontend = observed.frontend()
        for model, adapters in rollouts_to_probe(models, observed, self.settings):
            route = frontend.route(probe_id(model.model_id)) if frontend is not None else None
            if _at_zero(observed, model.model_key, route.app if route is not None else None):
                self._wake(probe_id(model.model_id), self.probe_rollout)
                continue
            decided, failure = self.probe_rollout(probe_id(model.model_id))
            log.info("rollout probe %s: %s", model.model_key, "no verdict yet" if not decided else failure or "answered")
            for adapter in adapters if decided and failure is None else ():
                decided, failure = self.probe(probe_id(adapter.model_id))
                if failure is not None:
                    failure = f"adapter {adapter.model_id}: {failure}"
                if not decided or failure is not None:
                    break
            if decided:
                out[model.model_key] = failure
        return out

    def _wait_for_sync(self, why: str, observed: Observed, renewal: LeaseValue | None) -> ReconcileResult:
        """Nothing of the store is applied while it is behind git (what it holds is not what users
        committed); a lease renewal that is due still goes in, changing no other app."""
        if self._waiting != why:
            log.info("reconcile waits: %s; Serve is left as it is", why)
            self._waiting = why
        if renewal is not None:
            self.client.put_config(self._claim(observed, renewal))
            return ReconcileResult(ReconcileOutcome.RENEWED)
        return ReconcileResult(ReconcileOutcome.WAITING_FOR_SYNC)

    def _record_cluster(self, unreachable: str | None) -> None:
        """Record once when Ray's dashboard stops answering and once when it answers again, so
        `status` says "cluster unreachable since T" instead of the last state Serve reported."""
        if self._last_cluster is None:
            last = self.store.last_cluster_event(CLUSTER_EVENTS)
            self._last_cluster = (last.event_type, last.payload) if last else ("", {})
        event = cluster_event(self._last_cluster, unreachable)
        if event is None:
            return
        with self.store.transaction():
            self.store.append_event(event[0], event[1], now=iso(self.clock()))
        self._last_cluster = event

    def _claim(self, observed: Observed, value: LeaseValue) -> dict:
        """A claim changes nothing but the lease: every app goes back exactly as Serve has it."""
        apps = [OtherApp(name, app.deployed) for name, app in sorted(observed.apps.items())
                if name != LEASE_APP and app.deployed and not app.going]
        return ServeConfig(self.serve.http, tuple(apps) + (LeaseApp(value.to_dict()),)).to_json()

    def _with_replica_starts(self, transitions: list[Transition]) -> list[Transition]:
        """Each first start's RUNNING with how its replica spent its start, from the replica's own
        log line. Optional: a log that cannot be read (or reads as anything unexpected) leaves
        its event as it is, and the tick reads no further log (each read waits up to
        LOG_READ_TIMEOUT_S: a node whose agent does not answer must not hold the tick)."""
        out, reading = [], True
        for t in transitions:
            if t.replica_log is None or not reading:
                out.append(t)
                continue
            try:
                start = read_replica_start(self.client.replica_log(t.replica_log.node_id, t.replica_log.log_file))
            except Exception as exc:   # the event matters, its detail does not
                log.info("%s: its replica's log is not readable (%s); its start is recorded without the replica's "
                         "phases", t.model_key, exc)
                reading = False
                out.append(t)
                continue
            out.append(t if start is None else replace(t, payload={**t.payload, **start.to_payload()}))
        return out

    def _record(self, transitions: list[Transition], seen: dict[str, tuple[int, str]]) -> None:
        """Write the plan's transitions, each only if sync has not changed its model since the
        plan read it (sync records commits concurrently): a stale one is dropped and the next
        tick plans from the new state."""
        now = iso(self.clock())
        with self.store.transaction():
            for t in transitions:
                current = self.store.model_version(t.model_key)
                if current != seen.get(t.model_key):
                    log.info("%s %s: dropped, the model changed meanwhile (%s -> %s)", t.event_type, t.model_key,
                             seen.get(t.model_key), current)
                    continue
                if t.state is not None:
                    self.store.set_state(t.model_key, t.state, error_summary=t.error_summary, now=now)
                if t.attempted_generation is not None:
                    self.store.mark_attempted(t.model_key, t.attempted_generation)
                if t.applied_generation is not None:
                    self.store.mark_applied(t.model_key, t.applied_generation)
                if t.records_serving:
                    self.store.set_serving(t.model_key, t.serving.to_dict() if t.serving is not None else None)
                self.store.append_event(t.event_type, t.payload, now=now, model_key=t.model_key)
                log.info("%s %s -> %s", t.event_type, t.model_key, t.state or "(unchanged)")

    def _record_apply_failure(self, decision: Plan, message: str) -> None:
        now = iso(self.clock())
        applied = [t.model_key for t in decision.transitions
                   if t.event_type in (EventType.APPLIED, EventType.ROLLOUT_STARTED)]
        with self.store.transaction():
            for key in applied:
                last = self.store.last_event(key)
                if last is None or (last.event_type, last.payload.get("message")) != (EventType.APPLY_FAILED, message):
                    self.store.append_event(EventType.APPLY_FAILED, {"message": message}, now=now, model_key=key)
        log.error("applying the Serve config failed: %s", message)

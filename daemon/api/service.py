"""What the management API does, as plain calls on behalf of an Identity. The engine owns the
errors (daemon.errors); daemon/api/http.py only maps them onto status codes.

Every write is a commit by the caller, made in a clone argusd keeps for that user and pushed
through the same write path as `argusctl apply/scale/suspend/resume/delete` (daemon/gitwrite.py: the same
lint, the pre-receive hook's ownership rules, rebase-and-retry). A write returns once argusd
has recorded its commit, so the answer names the model's key and state.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Protocol

import yaml

from daemon import gitwrite
from daemon.api.tokens import Identity
from daemon.config import Config
from daemon.core.adapters import BaseRef, find_base
from daemon.core.describe import adapter_load, describe_event, reason_of, replicas_line, replicas_view
from daemon.core.spec import SpecPolicy
from daemon.core.verdict import known_user
from daemon.verdicts import judged_spec
from daemon.core.states import EventType, ModelState
from daemon.errors import ClusterError, ForbiddenError, NotFoundError, SpecError, StoreError
from daemon.replicas.names import deployment_name, model_app_name
from daemon.serving.observe import Observed, ObservedApp, observed_from_status
from daemon.serving.serve_config import ModelApp
from daemon.core.records import ModelRow
from daemon.store import Store

EVENTS_PAGE = 50
RECORD_TIMEOUT_SECONDS = 15.0


class ServeStatusSource:
    """Live replica states from Serve; None when argusd runs --sync-only."""

    def __init__(self, client: Any):
        self.client = client

    def applications(self) -> dict[str, Any]:
        return (self.client.get_applications() or {}).get("applications") or {}

    def gpus(self) -> dict[str, float]:
        return self.client.cluster_resources()


class TrafficSource(Protocol):
    """A model's recent traffic from Ray's metrics (daemon/traffic.py: TrafficRecorder)."""

    def history(self, model_key: str) -> dict[str, Any]: ...


def no_traffic(problem: str) -> dict[str, Any]:
    return {"available": False, "problem": problem, "points": []}


@dataclass(frozen=True)
class WriteResult:
    model_key: Optional[str]
    model_id: Optional[str]
    state: ModelState | Literal["PENDING"]   # PENDING: argusd has not recorded the commit yet
    action: str
    commit: Optional[str]
    message: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def is_adapter(row: ModelRow) -> bool:
    return row.resolved.get("base_model") is not None


def base_refs(rows: list[ModelRow]) -> list[BaseRef]:
    """The models an adapter may name (not adapters, not deleted ones), as the reconciler
    resolves them (daemon.serving.plan.base_refs does the same from its own rows)."""
    return [BaseRef(r.model_id, r.user_id, r.model_id_suffix, r.resolved.get("model_source", ""), r.resolved.get("adapters"))
            for r in rows if not is_adapter(r) and r.state != ModelState.DELETED]


@dataclass(frozen=True)
class Adapters:
    """Which base each adapter runs on and which adapters each base carries, read once from
    every model on record (a base may be another user's model)."""

    base_of: dict[str, ModelRow]        # adapter model_key -> its base, where one resolves
    on: dict[str, list[ModelRow]]       # base model_key -> its adapters (deleted ones not)

    @classmethod
    def of(cls, every: list[ModelRow]) -> "Adapters":
        refs = base_refs(every)
        bases = {r.model_id: r for r in every if not is_adapter(r) and r.state != ModelState.DELETED}
        base_of: dict[str, ModelRow] = {}
        on: dict[str, list[ModelRow]] = {}
        for row in every:
            if not is_adapter(row):
                continue
            ref = find_base(row.resolved["base_model"], row.user_id, refs)
            if ref is not None:
                base_of[row.model_key] = bases[ref.model_id]  # a deleted adapter's too: its history names it
                if row.state != ModelState.DELETED:
                    on.setdefault(bases[ref.model_id].model_key, []).append(row)
        return cls(base_of, on)


def visible_to(identity: Identity, row: ModelRow) -> bool:
    return identity.admin or row.user_id == identity.user


def adapter_facts(identity: Identity, row: ModelRow, adapters: Adapters) -> dict[str, Any]:
    """What the list and the page say of an adapter and of a base's adapters: an adapter's base
    and load state; a base's adapters (another user's adapter: its id, owner and load state
    only, as /v1/models would show the id; its reason may name that user's paths)."""
    if is_adapter(row):
        base = adapters.base_of.get(row.model_key)
        return {"kind": "adapter", "adapter_load": adapter_load(row.state).value,
                "base_model": {"ref": row.resolved["base_model"], "model_id": base.model_id if base else None,
                               "model_key": base.model_key if base and visible_to(identity, base) else None,
                               "state": base.state.value if base else None}}
    mine = sorted(adapters.on.get(row.model_key, []), key=lambda a: a.model_id)
    return {"kind": "model", "takes_adapters": row.resolved.get("adapters"),
            "adapters": [{"model_id": a.model_id, "user_id": a.user_id, "state": a.state.value,
                          "adapter_load": adapter_load(a.state).value,
                          "model_key": a.model_key if visible_to(identity, a) else None,
                          "reason": (a.error_summary or "") if visible_to(identity, a) else ""} for a in mine]}


class ReplicaEvents:
    """The events a model's replicas view is read from (describe.replicas_view), for every model."""

    def __init__(self, store: Store):
        self.newest = store.last_events()
        self.scaled = store.last_events_of((EventType.IDLE, EventType.WOKE))
        self.woke = store.last_events_of((EventType.WOKE,))

    def view(self, row: ModelRow, running: Optional[int] = None) -> Optional[dict[str, Any]]:
        key = row.model_key
        return replicas_view(row, self.newest.get(key), self.scaled.get(key), self.woke.get(key), running)


def model_summary(row: ModelRow, rejection: Any = None, facts: Optional[dict[str, Any]] = None,
                  replicas: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """One model as the API lists it. An adapter has no replicas or GPUs of its own (null).
    `replicas`: its range, replicas now, why and last wake (describe.replicas_view), with
    `line`, the same in words."""
    resolved = row.resolved
    adapter = is_adapter(row)
    return {"model_key": row.model_key, "model_id": row.model_id, "user_id": row.user_id,
            "name": row.model_id_suffix, "state": row.state.value, "reason": reason_of(row, rejection),
            "num_replicas": None if adapter else resolved.get("num_replicas"),
            "gpus_per_replica": None if adapter else resolved.get("gpus_per_replica"),
            "autoscaling": None if adapter else resolved.get("autoscaling"),
            "suspended": bool(resolved.get("suspended")),
            "replicas": None if replicas is None else {**replicas, "line": replicas_line(replicas)},
            "model_source": resolved.get("model_source"), "spec_path": row.spec_path,
            "generation": row.generation, "applied_generation": row.applied_generation,
            "commit_sha": row.commit_sha, "commit_author": row.commit_author,
            "created_at": row.created_at, "updated_at": row.updated_at, **(facts or {})}


def replica_states(observed: Observed, model_key: str, model_id: Optional[str] = None) -> Optional[dict[str, Any]]:
    """The Serve application and replicas that serve one model, from what Serve reports; while
    a new generation starts beside the serving one, that one too (`next_generation`)."""
    deployment = deployment_name(model_key)
    held = [(name, app) for name, app in sorted(observed.apps.items()) if deployment in app.deployments]
    if not held:
        return None
    serving = observed.live_app(model_key, model_id) if model_id else None
    held.sort(key=lambda pair: pair[0] != serving)   # the serving generation first

    def one(name: str, app: ObservedApp) -> dict[str, Any]:
        dep = app.deployments[deployment]
        return {"application": name, "app_status": app.status.value, "status": dep.status.value,
                "message": dep.message or app.message,
                # what Serve wants now (its autoscaler's decision for an autoscaled model)
                "target_replicas": dep.target_replicas,
                "replicas": [replica.to_dict() for replica in dep.replicas]}

    found = one(*held[0])
    if len(held) > 1:
        found["next_generation"] = one(*held[1])
    return found


def adapter_serve_status(observed: Observed, adapter: ModelRow, base: ModelRow) -> dict[str, Any]:
    """An adapter in Serve: its base's deployment and replicas, and whether the base's adapter
    table (its deployment's user_config) holds the adapter, at which generation."""
    found = replica_states(observed, base.model_key, base.model_id)
    held = observed.apps.get(found["application"] if found else model_app_name(base.model_key))
    app = held.config if held is not None else None
    entry = (app.adapters or {}).get(adapter.model_id) if isinstance(app, ModelApp) else None
    on_base = {"base_model_id": base.model_id, "in_adapter_table": entry is not None,
               "table_generation": entry.generation if entry is not None else None}
    if found is None:
        return {"available": True, "deployed": False, "replicas": [], **on_base,
                "reason": f"its base model {base.model_id} is not deployed in Serve"}
    return {"available": True, "deployed": True, **found, **on_base}


class ModelService:
    def __init__(self, config: Config, clones_dir: Path, *, wake: Callable[[], None] = lambda: None,
                 serve: Optional[ServeStatusSource] = None, health: Callable[[], dict[str, Any]] = dict,
                 record_timeout: float = RECORD_TIMEOUT_SECONDS, traffic: Optional[TrafficSource] = None):
        self.config = config
        self.policy = SpecPolicy.from_config(config)
        self.clones_dir = Path(clones_dir)
        self.wake = wake
        self.serve = serve
        self.health = health
        self.record_timeout = record_timeout
        self.traffic_source = traffic
        # No lock of its own around a user's writes: in argusd, WriteLanes (daemon/api/dependencies.py)
        # runs one user's writes one at a time, and gitwrite's flock on the clone serializes any
        # two writers through it, threads of this process included (flock locks are per open file).

    # -- reading -----------------------------------------------------------------------------

    def _store(self) -> Store:
        return Store.open_readonly(self.config.state.db)

    def _visible(self, identity: Identity, row: ModelRow) -> ModelRow:
        # Another user's model does not exist for a non-admin caller: 404, not 403, leaks nothing.
        if row.user_id != identity.user and not identity.admin:
            raise NotFoundError(f"no model {row.model_key!r} of yours; GET /api/v2/serve/models lists them")
        return row

    def _row(self, store: Store, identity: Identity, model_key: str) -> ModelRow:
        try:
            row = store.get_model(model_key)
        except NotFoundError:
            raise NotFoundError(f"no model {model_key!r} of yours; GET /api/v2/serve/models lists them") from None
        return self._visible(identity, row)

    def list_models(self, identity: Identity, user: Optional[str] = None,
                    include_deleted: bool = False) -> dict[str, Any]:
        if user is not None and user != identity.user and not identity.admin:
            raise ForbiddenError(f"only an admin token lists other users' models; drop ?user={user}")
        owner = user if identity.admin else identity.user
        store = self._store()
        try:
            rejections = {r.spec_path: r for r in store.rejections(owner)}
            rows = store.list_models(user_id=owner, include_deleted=include_deleted)
            adapters = Adapters.of(store.list_models())
            scaling = ReplicaEvents(store)
        finally:
            store.close()
        rows.sort(key=lambda m: (m.user_id, m.model_id))
        live = {m.spec_path for m in rows if m.live}
        return {"items": [model_summary(m, rejections.get(m.spec_path) if m.live else None,
                                        adapter_facts(identity, m, adapters),
                                        scaling.view(m)) for m in rows],
                "rejected_specs": [r.to_dict() for p, r in sorted(rejections.items()) if p not in live]}

    def get_model(self, identity: Identity, model_key: str, after: int = 0,
                  limit: int = EVENTS_PAGE) -> dict[str, Any]:
        store = self._store()
        try:
            row = self._row(store, identity, model_key)
            rejection = {r.spec_path: r for r in store.rejections(row.user_id)}.get(row.spec_path) if row.live else None
            events = store.events(model_key=row.model_key, spec_path=row.spec_path, after_id=after)
            adapters = Adapters.of(store.list_models())
            scaling = ReplicaEvents(store)
        finally:
            store.close()
        page = events[:limit] if after else events[-limit:]  # the newest page first, then onwards
        serve = self.serve_status(row, adapters.base_of.get(row.model_key) if is_adapter(row) else None)
        running = (sum(1 for r in serve.get("replicas") or [] if r.get("state") == "RUNNING")
                   if serve.get("deployed") and not is_adapter(row) else None)
        return {"model": model_summary(row, rejection, adapter_facts(identity, row, adapters),
                                       scaling.view(row, running)),
                "spec_yaml": row.spec_yaml,
                "resolved_spec_yaml": yaml.safe_dump(row.resolved, sort_keys=False),
                "rejection": rejection.to_dict() if rejection else None,
                "events": [{**e.to_dict(), "text": describe_event(e)} for e in page],
                "events_next_after": page[-1].id if page else after,
                "serve_status": serve}

    def traffic(self, identity: Identity, model_key: str) -> dict[str, Any]:
        """The model's requests, failures and latency over the last half hour, from Ray Serve's
        metrics (what its replicas counted)."""
        store = self._store()
        try:
            row = self._row(store, identity, model_key)
        finally:
            store.close()
        if is_adapter(row):
            return no_traffic(f"requests to a LoRA adapter are counted with its base model's "
                              f"({row.resolved['base_model']}): Ray counts them per deployment")
        if self.traffic_source is None:
            return no_traffic("argusd does not read Ray's metrics (it runs --sync-only)")
        return self.traffic_source.history(row.model_key)

    def serve_status(self, row: ModelRow, base: Optional[ModelRow] = None) -> dict[str, Any]:
        """The model's deployment and replicas in Serve. An adapter has none of its own: its
        base's, and whether the base's adapter table in Serve holds it."""
        if self.serve is None:
            return {"available": False, "reason": "argusd runs --sync-only: it does not talk to Ray Serve"}
        if is_adapter(row) and base is None:
            return {"available": True, "deployed": False, "replicas": [],
                    "reason": f"base model {row.resolved['base_model']} is not in argus"}
        try:
            observed = observed_from_status({"applications": self.serve.applications()})
        except ClusterError as exc:
            return {"available": False, "reason": f"Ray Serve is not reachable: {exc}"}
        if base is not None:
            return adapter_serve_status(observed, row, base)
        found = replica_states(observed, row.model_key, row.model_id)
        if found is None:
            if row.state == ModelState.SUSPENDED:
                return {"available": True, "deployed": False, "replicas": [],
                        "reason": "suspended: no replica runs, no GPU is held"}
            return {"available": True, "deployed": False, "replicas": [],
                    "reason": "not deployed in Serve" + (" (it is queued)" if row.state.value == "QUEUED" else "")}
        return {"available": True, "deployed": True, **found}

    def status(self, identity: Identity) -> dict[str, Any]:
        if not identity.admin:
            raise ForbiddenError("GET /api/v2/serve/status needs an admin token (argusctl token create --admin)")
        store = self._store()
        try:
            cursor = store.cursor()
            counts: dict[str, int] = {}
            for row in store.list_models():
                counts[row.state.value] = counts.get(row.state.value, 0) + 1
        finally:
            store.close()
        out: dict[str, Any] = {"sync": {"branch": cursor[0], "commit": cursor[1]} if cursor else None,
                               "models_by_state": counts, "argusd": self.health()}
        if self.serve is None:
            out["serve"] = {"available": False, "reason": "argusd runs --sync-only"}
            return out
        try:
            observed = observed_from_status({"applications": self.serve.applications()})
            resources = self.serve.gpus()
        except ClusterError as exc:
            out["serve"] = {"available": False, "reason": f"Ray Serve is not reachable: {exc}"}
            return out
        out["serve"] = {"available": True,
                        "applications": {n: {"status": a.status.value, "message": a.message}
                                         for n, a in sorted(observed.apps.items())}}
        out["cluster"] = {"gpus_total": resources.get("GPU", 0.0)}
        return out

    # -- writing -----------------------------------------------------------------------------

    def lint(self, identity: Identity, data: bytes) -> list[dict[str, Any]]:
        """Every problem of a spec as the caller would commit it (the UI checks as you type)."""
        try:
            judged_spec("spec.yaml", data, identity.user, self.policy, self._known(identity))
        except SpecError as exc:
            return [p.to_dict() for p in exc.problems]
        return []

    def _known(self, identity: Identity) -> bool:
        """The config's users: still names the caller (a token outlives its user's removal)."""
        return known_user(identity.user, self.config.owners())

    def _clone(self, identity: Identity) -> gitwrite.Clone:
        return gitwrite.server_clone(self.config.gitops.repo, self.clones_dir / identity.user, identity.user,
                                     self.config.gitops.branch, identity.git_name, identity.git_email,
                                     credentials=self.config.gitops.credentials,
                                     signing_key=self.config.gitops.api_signing_key)

    def create(self, identity: Identity, data: bytes) -> WriteResult:
        """Create or change a model from a spec (the body of POST)."""
        # judged once, in apply, before anything is written (SpecError)
        change = gitwrite.apply(self._clone(identity), data, "spec.yaml", self.policy, known=self._known(identity))
        return self._recorded(identity, change)

    def scale(self, identity: Identity, model_key: str, replicas: int) -> WriteResult:
        row = self._writable(identity, model_key)
        change = gitwrite.scale(self._clone(identity), row.model_id_suffix, replicas, self.policy,
                                known=self._known(identity))
        return self._recorded(identity, change)

    def suspend(self, identity: Identity, model_key: str) -> WriteResult:
        """`suspended: true` in the model's spec (no commit if it says so already)."""
        return self._set_suspended(identity, model_key, True)

    def resume(self, identity: Identity, model_key: str) -> WriteResult:
        """The spec without `suspended: true` (no commit if it is not suspended)."""
        return self._set_suspended(identity, model_key, False)

    def _set_suspended(self, identity: Identity, model_key: str, suspended: bool) -> WriteResult:
        row = self._writable(identity, model_key)
        change = gitwrite.set_suspended(self._clone(identity), row.model_id_suffix, suspended, self.policy,
                                        known=self._known(identity))
        return self._recorded(identity, change)

    def delete(self, identity: Identity, model_key: str) -> WriteResult:
        row = self._writable(identity, model_key)
        change = gitwrite.delete(self._clone(identity), row.model_id_suffix)
        return self._recorded(identity, change, deleting=True)

    def _writable(self, identity: Identity, model_key: str) -> ModelRow:
        store = self._store()
        try:
            row = self._row(store, identity, model_key)
        finally:
            store.close()
        if row.user_id != identity.user:
            raise ForbiddenError(f"{row.model_id} is {row.user_id}'s; an admin token reads every model, but only "
                                 f"its owner's commits change it")
        if not row.live:
            raise NotFoundError(f"model {row.model_id} is deleted; POST a spec to create it again")
        return row

    def _recorded(self, identity: Identity, change: gitwrite.Change, deleting: bool = False) -> WriteResult:
        """Wait (bounded) until argusd has recorded the commit; the model as it is then."""
        if change.commit is not None:
            self.wake()
        deadline = time.monotonic() + self.record_timeout
        while True:
            row = None
            try:
                store = self._store()
                try:
                    try:
                        row = store.find_model(change.model_id, user_id=identity.user)
                    except NotFoundError:
                        row = None
                    rejected = {r.spec_path: r for r in store.rejections(identity.user)}.get(change.path)
                finally:
                    store.close()
            except StoreError:
                rejected = None
            if rejected is not None and change.commit is not None and rejected.commit_sha == change.commit:
                raise SpecError(rejected.problems)  # argusd refused what the hook let in
            if row is not None and (change.commit is None or row.commit_sha == change.commit):
                return WriteResult(row.model_key, row.model_id, row.state, change.action, change.commit,
                                   change.message)
            if time.monotonic() > deadline:
                return WriteResult(row.model_key if row else None, row.model_id if row else None,
                                   "PENDING", change.action, change.commit,
                                   f"{change.message}; argusd has not recorded it yet")
            time.sleep(0.05)

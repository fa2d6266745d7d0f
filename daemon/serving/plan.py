"""The reconcile decision: a pure function of (desired models, observed Serve, capacity).

plan() says which Serve config to apply (None: nothing changed, apply nothing) and which
state transitions and events to record. The shell (reconcile.py) gathers the inputs, puts
the config and writes the outcome.

State machine: QUEUED -> DEPLOYING when applied; DEPLOYING -> RUNNING when Serve reports
the model's deployment healthy at the applied config; DEPLOYING/RUNNING -> FAILED with
Serve's message; RUNNING -> DEPLOYING when Serve has no running replica of it (Ray restarted,
its app removed, every replica died), and back once Serve runs it again; DELETING -> DELETED
when Serve no longer has it. While DEPLOYING, why it is not up yet (a replica that failed to
start and is being retried) is recorded once per distinct reason. A FAILED model is left
out of every apply until its spec changes (sync re-queues it), so one broken model never
keeps the others from being applied.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from daemon.serving.llm_config import (LEASE_APP_NAME, SINGLE_APP_NAME, LlmSettings, ModelDeployment, adapter_route,
                                       adapter_table, app_name, deployed_models, deployment_name, frontend_app,
                                       frontend_route, frontend_routes, is_argus_app, lease_app, model_app,
                                       serve_config, single_app)
from daemon.serving.placement import (AdmissionMode, Capacity, Free, free_of, place, placement_stalled,
                                      shortfall)
from daemon.core.adapters import AdapterInfo, BaseRef, adapter_fit, base_allows, find_base
from daemon.core.spec import ResolvedServingSpec
from daemon.core.states import EventType, ModelState, ServeStatus


@dataclass(frozen=True)
class DesiredModel:
    model_key: str
    model_id: str
    state: str
    generation: int
    spec: ResolvedServingSpec
    # Why the folder cannot be served now: for a QUEUED model spec.source_problem; for one that
    # deploys or runs (adapters too), spec.path_problem (swapped out of its owner's roots).
    source_problem: str | None = None
    last_event: tuple[str, dict] | None = None   # (event_type, payload) of its newest event
    was_running: bool = False     # reached RUNNING before (so an update keeps it routable)
    ran_this_generation: bool = False  # this very generation reached RUNNING (a redeploy after Serve lost it)
    adapter: AdapterInfo | str | None = None   # an adapter's folder facts, or why it cannot be served


@dataclass(frozen=True)
class ObservedDeployment:
    status: str                 # UPDATING | HEALTHY | UNHEALTHY | DEPLOY_FAILED | ...
    message: str = ""
    running_replicas: int = 0


@dataclass(frozen=True)
class ObservedApp:
    status: str                 # NOT_STARTED | DEPLOYING | RUNNING | DEPLOY_FAILED | UNHEALTHY | DELETING
    message: str = ""
    deployed_config: dict[str, Any] | None = None
    deployments: dict[str, ObservedDeployment] = field(default_factory=dict)


@dataclass(frozen=True)
class Observed:
    apps: dict[str, ObservedApp] = field(default_factory=dict)

    def deployment(self, name: str) -> tuple[ObservedApp, ObservedDeployment] | None:
        for app in self.apps.values():
            if name in app.deployments:
                return app, app.deployments[name]
        return None


@dataclass(frozen=True)
class ServeSettings:
    """What the reconcile decision needs from the config's serving.serve (no defaults of its
    own: the config's are the only ones)."""

    http_host: str
    http_port: int
    proxy_location: str
    layout: str                     # per_model | single_app
    frontend_replicas: int          # per_model: replicas of the front end

    @classmethod
    def from_config(cls, config: Any) -> "ServeSettings":
        serve = config.serving.serve
        return cls(serve.http_host, serve.http_port, serve.proxy_location, serve.layout, serve.frontend_replicas)


@dataclass(frozen=True)
class Transition:
    model_key: str
    state: str | None               # None: no state change, only an event
    event_type: str
    payload: dict[str, Any]
    error_summary: str | None = None
    attempted_generation: int | None = None
    applied_generation: int | None = None


@dataclass(frozen=True)
class Plan:
    apply: dict[str, Any] | None
    transitions: list[Transition]

    @property
    def noop(self) -> bool:
        return self.apply is None and not self.transitions


def _app_view(app: dict[str, Any]) -> dict[str, Any]:
    """The parts of an application config that decide what runs (compared for drift)."""
    return {"name": app.get("name"), "route_prefix": app.get("route_prefix"), "import_path": app.get("import_path"),
            "args": app.get("args") or {}, "runtime_env": app.get("runtime_env") or {},
            "deployments": sorted(({"name": d.get("name"), "num_replicas": d.get("num_replicas"),
                                    "user_config": d.get("user_config")}
                                   for d in app.get("deployments") or []), key=lambda d: d["name"])}


def config_differs(desired: dict[str, Any], observed: Observed, ignore: set[str] = frozenset()) -> bool:
    """Whether Serve runs argus's applications other than as desired (other apps are not argus's)."""
    wanted = {a["name"]: _app_view(a) for a in desired["applications"]
              if a["name"] not in ignore and is_argus_app(a["name"])}
    # An app Serve is already deleting counts as gone: putting the same config again is noise.
    have = {name: _app_view(app.deployed_config or {"name": name}) for name, app in observed.apps.items()
            if app.status != ServeStatus.DELETING and name not in ignore and is_argus_app(name)}
    return wanted != have


def foreign_apps(observed: Observed) -> list[dict[str, Any]]:
    """Other teams' Serve applications on a shared cluster, to pass through unchanged: the
    dashboard's PUT replaces every declaratively deployed app, so each one that is not argus's
    goes back exactly as Serve reports it. Apps deployed with serve.run (no deployed config)
    are left alone by Serve's PUT and need nothing."""
    return [app.deployed_config for name, app in sorted(observed.apps.items())
            if not is_argus_app(name) and app.deployed_config and app.status != ServeStatus.DELETING]


def _once(model: DesiredModel, event_type: str, payload: dict[str, Any]) -> bool:
    """Whether an event says something new (a persisting condition is recorded once)."""
    return model.last_event != (event_type, payload)


def _tp(deployment: ModelDeployment) -> int:
    return int(deployment.llm_config.get("engine_kwargs", {}).get("tensor_parallel_size", 1))


@dataclass
class Admission:
    entries: dict[str, ModelDeployment]   # model key -> what the next config holds for it
    admitted: set[str]                    # QUEUED models that go in now
    transitions: list[Transition]         # FAILED (folder) and PENDING_RESOURCES


def _model_view(app: dict[str, Any]) -> dict[str, Any]:
    """An app's view without the deployments' user_config: a model's adapter table changes in
    place and is not a change of the model itself."""
    view = _app_view(app)
    view["deployments"] = [{**d, "user_config": None} for d in view["deployments"]]
    return view


def plan(models: list[DesiredModel], observed: Observed, *, capacity: Capacity | None,
         settings: LlmSettings, serve: ServeSettings, lease: dict[str, Any] | None = None,
         probes: dict[str, str | None] | None = None) -> Plan:
    """What to apply and record, in five phases: admit (who is in the next config), build the
    models' config, judge each model against what Serve reports, judge the adapters against
    their base models, and (per_model) the front end's routes. `capacity` None: no GPU
    admission (CPU serving). `lease`: the lease value this daemon holds, kept in the config
    (None: no lease). `probes`: adapters the shell asked through the endpoint this tick
    (model key -> None when it answered, else the failure message)."""
    adapters = [m for m in models if m.spec.is_adapter]
    models = [m for m in models if not m.spec.is_adapter]
    running_now: dict[str, ModelDeployment] = {}
    for name, app in observed.apps.items():
        if is_argus_app(name):
            running_now.update(deployed_models(app.deployed_config))
    others = foreign_apps(observed)
    held = [lease_app(lease)] if lease is not None else []
    unleased = set() if lease is not None else {LEASE_APP_NAME}   # no lease: a leftover lease app is not judged
    admission = admit(models, running_now, capacity, settings, observed)
    per_model = serve.layout == "per_model"
    if per_model:
        model_apps = [model_app(m) for m in admission.entries.values()]
        wanted_apps = {a["name"]: a for a in model_apps}
        models_config = serve_config(model_apps, http_host=serve.http_host, http_port=serve.http_port,
                                     proxy_location=serve.proxy_location)
    else:
        model_apps, wanted_apps = [], {}
        models_config = serve_config(([single_app(list(admission.entries.values()))] if admission.entries else [])
                                     + held + others,
                                     http_host=serve.http_host, http_port=serve.http_port,
                                     proxy_location=serve.proxy_location)
    # Whether the model part is applied as wanted (the front end is judged after the transitions).
    apply = models_config if config_differs(models_config, observed, ignore={SINGLE_APP_NAME, LEASE_APP_NAME}
                                            if per_model else unleased) else None

    transitions = list(admission.transitions)
    decided = {t.model_key for t in transitions}
    for model in models:
        if model.model_key in decided:  # admission already said what happens to it this tick
            continue
        if per_model:  # only this model's own app decides whether it is applied
            app = observed.apps.get(app_name(model.model_key))
            name = app_name(model.model_key)
            in_sync = (app is not None and name in wanted_apps
                       and _model_view(wanted_apps[name]) == _model_view(app.deployed_config or {}))
        else:
            app = observed.apps.get(SINGLE_APP_NAME)
            in_sync = apply is None
        judged = judge(model, observed.deployment(deployment_name(model.model_key)), app, in_sync,
                       model.model_key in admission.admitted, running_now.get(model.model_key),
                       admission.entries.get(model.model_key))
        if judged is not None:
            transitions.append(judged)
    state_after = {m.model_key: m.state for m in models}
    state_after.update({t.model_key: t.state for t in transitions if t.state is not None})
    served = judge_adapters(adapters, models, state_after, admission.entries, observed, probes or {}, per_model)
    transitions += served.transitions
    if not per_model:
        return Plan(apply, transitions)
    model_apps = [model_app(m, served.tables.get(m.model_key)) for m in admission.entries.values()]
    base_routes = routes(models, transitions, admission.entries, observed)
    routed = {r["model_id"] for r in base_routes}
    adapter_routes = [r for r in served.routes if r["base_model"] in routed]
    desired = serve_config(model_apps + [frontend_app(base_routes + adapter_routes, serve.frontend_replicas)]
                           + held + others,
                           http_host=serve.http_host, http_port=serve.http_port, proxy_location=serve.proxy_location)
    return Plan(desired if config_differs(desired, observed, ignore=unleased) else None, transitions)


@dataclass
class ServedAdapters:
    transitions: list[Transition]
    tables: dict[str, dict[str, dict[str, Any]]]   # base model key -> its adapter table
    routes: list[dict[str, Any]]                  # the front end's entries for the adapters


def adapter_applied(adapter: DesiredModel, base: DesiredModel, observed: Observed) -> bool:
    """Serve holds the adapter at its generation in its base's table, and the front end routes
    it: a request by its id reaches a base replica that knows its folder."""
    app = observed.apps.get(app_name(base.model_key))
    entry = adapter_table(app.deployed_config if app else None, base.model_key).get(adapter.model_id) or {}
    frontend = observed.apps.get(SINGLE_APP_NAME)
    routed = frontend_routes(frontend.deployed_config if frontend else None).get(adapter.model_id) or {}
    return entry.get("generation") == adapter.generation and routed.get("base_model") == base.model_id


def base_refs(models: list[DesiredModel]) -> list[BaseRef]:
    """The models adapters may name (not adapters, not deleted ones)."""
    return [BaseRef(m.model_id, m.spec.user_id, m.spec.model_id_suffix, m.spec.model_source, m.spec.adapters)
            for m in models if not m.spec.is_adapter and m.state != ModelState.DELETED]


def _base_of(adapter: DesiredModel, refs: list[BaseRef],
             bases: dict[str, DesiredModel]) -> tuple[BaseRef, DesiredModel] | None:
    ref = find_base(adapter.spec.base_model or "", adapter.spec.user_id, refs)
    return (ref, bases[ref.model_id]) if ref is not None else None


def adapters_to_probe(models: list[DesiredModel], observed: Observed) -> list[tuple[DesiredModel, DesiredModel]]:
    """(adapter, base) pairs the shell asks through the endpoint this tick: DEPLOYING adapters
    that Serve and the front end already hold, on a RUNNING base. The first answer proves that
    vLLM loaded the adapter (or says why not)."""
    refs, bases = base_refs(models), {m.model_id: m for m in models if not m.spec.is_adapter}
    out = []
    for adapter in models:
        if not adapter.spec.is_adapter or adapter.state != ModelState.DEPLOYING:
            continue
        found = _base_of(adapter, refs, bases)
        if found is not None and found[1].state == ModelState.RUNNING and adapter_applied(adapter, found[1], observed):
            out.append((adapter, found[1]))
    return out


def _held_adapter_ids(observed: Observed) -> set[str]:
    """Adapter ids any base table in Serve or the front end's table still holds."""
    held = {adapter_id for app in observed.apps.values() for d in (app.deployed_config or {}).get("deployments") or []
            for adapter_id in ((d.get("user_config") or {}).get("adapters") or {})}
    frontend = observed.apps.get(SINGLE_APP_NAME)
    return held | set(frontend_routes(frontend.deployed_config if frontend else None))


def judge_adapters(adapters: list[DesiredModel], models: list[DesiredModel], state_after: dict[str, str],
                   entries: dict[str, ModelDeployment], observed: Observed, probes: dict[str, str | None],
                   per_model: bool) -> ServedAdapters:
    """Each adapter against its base model this tick: an early-return ladder per adapter. An
    adapter is in its base's table (and routed) while DEPLOYING or RUNNING on a RUNNING base."""
    refs, bases = base_refs(models), {m.model_id: m for m in models}
    held = _held_adapter_ids(observed)
    out = ServedAdapters([], {}, [])
    for adapter in sorted(adapters, key=lambda m: m.model_key):
        found = _base_of(adapter, refs, bases)
        transition = _judge_adapter(adapter, found, state_after, entries, observed, probes, per_model, held)
        if transition is not None:
            out.transitions.append(transition)
        state = transition.state if transition is not None and transition.state is not None else adapter.state
        if state not in (ModelState.DEPLOYING, ModelState.RUNNING) or found is None:
            continue
        base = found[1]
        out.tables.setdefault(base.model_key, {})[adapter.model_id] = {"path": adapter.spec.model_source,
                                                                       "generation": adapter.generation,
                                                                       "user_id": adapter.spec.user_id}
        out.routes.append(adapter_route(adapter.model_id, entries[base.model_key]))
    return out


def _judge_adapter(adapter: DesiredModel, found: tuple[BaseRef, DesiredModel] | None, state_after: dict[str, str],
                   entries: dict[str, ModelDeployment], observed: Observed, probes: dict[str, str | None],
                   per_model: bool, held: set[str]) -> Transition | None:
    key, state = adapter.model_key, adapter.state

    def wait(reason: str) -> Transition | None:
        payload = {"message": reason}
        if state == ModelState.QUEUED and not _once(adapter, EventType.WAITING_FOR_BASE, payload):
            return None
        return Transition(key, ModelState.QUEUED, EventType.WAITING_FOR_BASE, payload, error_summary=reason)

    # Its spec is gone: DELETED once no base table and no route holds it any more.
    if state == ModelState.DELETING:
        return None if adapter.model_id in held else Transition(key, ModelState.DELETED, EventType.DELETED, {})
    # Failed (until its spec changes) or deleted: nothing to do.
    if state not in (ModelState.QUEUED, ModelState.DEPLOYING, ModelState.RUNNING):
        return None
    # Ray's own app for all models (single_app) has no adapter table.
    if not per_model:
        return wait("adapters need serving.serve.layout: per_model (this platform runs single_app)")
    # Its folder is not a usable adapter, or (deploying or running) was swapped out of its owner's
    # roots: the base's replicas refuse to load it anyway (daemon/replicas/weights.py).
    if isinstance(adapter.adapter, str) and state == ModelState.QUEUED:
        return _failed(adapter, adapter.adapter)
    if adapter.source_problem is not None and state in (ModelState.DEPLOYING, ModelState.RUNNING):
        return _failed(adapter, adapter.source_problem)
    # The base it names does not exist.
    if found is None:
        return wait(f"base model {adapter.spec.base_model} is not in argus: no model has that public id, and "
                    f"{adapter.spec.user_id} has no model with that model_id")
    ref, base = found
    # The base does not take it: not opted in or not allowed (also for a running adapter, when
    # its owner revokes), or (read from its folder) a rank too large or another base.
    problem = (adapter_fit(adapter.adapter, adapter.spec.user_id, ref) if isinstance(adapter.adapter, AdapterInfo)
               else base_allows(adapter.spec.user_id, ref))
    if problem is not None:
        return wait(problem)
    # The base does not run (yet, or any more): the adapter waits for it.
    if state_after.get(base.model_key) != ModelState.RUNNING or base.model_key not in entries:
        return wait(f"waits for base model {base.model_id}, which is {state_after.get(base.model_key)}")
    # The base runs and takes it: into its table now.
    if state == ModelState.QUEUED:
        return Transition(key, ModelState.DEPLOYING, EventType.APPLIED,
                          {"generation": adapter.generation, "base_model": base.model_id},
                          attempted_generation=adapter.generation)
    # In the table: the shell's first request through the endpoint says whether vLLM loaded it.
    if state == ModelState.DEPLOYING and key in probes and adapter_applied(adapter, base, observed):
        if probes[key] is None:
            return Transition(key, ModelState.RUNNING, EventType.RUNNING,
                              {"generation": adapter.generation, "base_model": base.model_id},
                              applied_generation=adapter.generation)
        return _failed(adapter, str(probes[key]))
    return None


def admit(models: list[DesiredModel], running_now: dict[str, ModelDeployment], capacity: Capacity | None,
          settings: LlmSettings, observed: Observed | None = None) -> Admission:
    """Who is in the next config: what already runs or deploys, plus the QUEUED models whose
    folder is usable and whose every replica fits on one node now (a queued update keeps its
    running version until then). `capacity` None: CPU serving, no GPU admission."""
    observed = observed or Observed()
    entries: dict[str, ModelDeployment] = {}
    transitions: list[Transition] = []
    free = free_of(capacity) if capacity is not None else None
    for model in sorted(models, key=lambda m: m.model_key):
        if model.state not in (ModelState.DEPLOYING, ModelState.RUNNING):
            continue
        seen = observed.deployment(deployment_name(model.model_key))
        running = seen[1].running_replicas if seen else 0
        if model.state == ModelState.DEPLOYING and seen and placement_stalled(seen[1].message):
            stalled = _stalled(model, seen[1].message, running, capacity, free)
            if stalled is not None:
                transitions.append(stalled)
                if stalled.state == ModelState.QUEUED:  # out of the config: its pending group holds nothing
                    continue
        entries[model.model_key] = ModelDeployment.of(model.model_key, model.spec, settings)
        if free is not None and model.state == ModelState.DEPLOYING:
            # In flight: Ray's usage shows new placement groups only seconds later, so the replicas
            # not running yet are counted here; one that does not fit holds nothing (Ray cannot
            # place it either).
            free = place(free, max(model.spec.num_replicas - running, 0), model.spec.gpus_per_replica) or free
    admitted: set[str] = set()
    for model in sorted((m for m in models if m.state == ModelState.QUEUED), key=lambda m: m.model_key):
        if model.source_problem is not None:
            transitions.append(Transition(model.model_key, ModelState.FAILED, EventType.FAILED,
                                          {"message": model.source_problem}, error_summary=model.source_problem,
                                          attempted_generation=model.generation))
            continue
        if capacity is not None:  # GPU serving (free is its live view)
            seen = observed.deployment(deployment_name(model.model_key))
            extra = _extra_replicas(model, running_now.get(model.model_key), seen[1].running_replicas if seen else 0)
            placed = place(free, extra, model.spec.gpus_per_replica)
            waiting = _waits_after_stall(model, free)
            if capacity.mode == AdmissionMode.FIT and (placed is None or waiting):
                payload = (model.last_event[1] if waiting and model.last_event
                           else shortfall(capacity, free, extra, model.spec.gpus_per_replica))
                if _once(model, EventType.PENDING_RESOURCES, payload):
                    transitions.append(Transition(model.model_key, ModelState.QUEUED, EventType.PENDING_RESOURCES,
                                                  payload, error_summary=str(payload["message"])))
                if model.model_key in running_now:  # keep serving what runs until the update fits
                    entries[model.model_key] = running_now[model.model_key]
                continue
            free = placed or free
        entries[model.model_key] = ModelDeployment.of(model.model_key, model.spec, settings)
        admitted.add(model.model_key)
    return Admission(entries, admitted, transitions)


def _extra_replicas(model: DesiredModel, running: ModelDeployment | None, running_replicas: int) -> int:
    """Replicas a queued model adds to what Ray holds now: a scale-up of the same shape adds
    the difference; anything else is placed whole (its old replicas go only once the new
    ones run)."""
    if running is not None and _tp(running) == model.spec.gpus_per_replica:
        return max(model.spec.num_replicas - running_replicas, 0)
    return model.spec.num_replicas


def _stalled(model: DesiredModel, message: str, running: int, capacity: Capacity | None,
             free: Free | None) -> Transition | None:
    """Serve says a replica could not be placed for 30 s. Admitting by fit, a model with
    nothing running goes back to QUEUED (and waits for more free GPUs than now); otherwise
    it keeps deploying (the autoscaler may add a node) with Serve's reason, recorded once."""
    reason = f"Serve cannot place a replica yet: {summarize_failure(message)}"
    if capacity is not None and capacity.mode == AdmissionMode.FIT and running == 0:
        payload = {"message": reason, "free_gpus_then": _total_free(free), "free_by_node_then": _gpus_by_node(free)}
        return Transition(model.model_key, ModelState.QUEUED, EventType.PENDING_RESOURCES, payload,
                          error_summary=reason)
    payload = {"message": reason}
    if not _once(model, EventType.PENDING_RESOURCES, payload):
        return None
    return Transition(model.model_key, ModelState.DEPLOYING, EventType.PENDING_RESOURCES, payload,
                      error_summary=reason)


def _waits_after_stall(model: DesiredModel, free: Free) -> bool:
    """A model Serve could not place is tried again once the free GPUs change from what they
    were when it stalled, on any node (argus's view and Ray's disagreed; trying again on the
    same view would only repeat it). A stall recorded before per-node views: once more GPUs
    are free in all."""
    if model.last_event is None or model.last_event[0] != EventType.PENDING_RESOURCES:
        return False
    by_node = model.last_event[1].get("free_by_node_then")
    if by_node is not None:
        return _gpus_by_node(free) == by_node
    then = model.last_event[1].get("free_gpus_then")
    return then is not None and _total_free(free) <= float(then)


def _gpus_by_node(free: Free | None) -> dict[str, float]:
    """Free GPUs per node, nodes with none left out (the payload stays small on large clusters)."""
    return {node: gpus for node, (gpus, _) in sorted((free or {}).items()) if gpus > 0}


def _total_free(free: Free | None) -> float:
    return sum(gpus for gpus, _ in (free or {}).values())


def judge(model: DesiredModel, seen: tuple[ObservedApp, ObservedDeployment] | None, app: ObservedApp | None,
          in_sync: bool, admitted: bool, running: ModelDeployment | None,
          wanted: ModelDeployment | None) -> Transition | None:
    """One model's transition from what Serve reports about it, or None: an early-return
    ladder. `seen`: its deployment (with its app); `app`: the app that should hold it;
    `in_sync`: Serve has the config argus wants for it; `running`: what Serve runs for it
    now; `wanted`: what the next config holds for it."""
    # Admitted this tick: it goes into the config now.
    if admitted:
        return Transition(model.model_key, ModelState.DEPLOYING, EventType.APPLIED,
                          {"generation": model.generation, "num_replicas": model.spec.num_replicas},
                          attempted_generation=model.generation)
    # Its folder was swapped out of its owner's roots while it deploys or runs: failed (and out of
    # the next config); its replicas would refuse to load it anyway (daemon/replicas/weights.py).
    if model.state in (ModelState.DEPLOYING, ModelState.RUNNING) and model.source_problem is not None:
        return _failed(model, model.source_problem)
    if model.state == ModelState.DEPLOYING:
        # Its config is not in Serve yet (or is being replaced): wait for it.
        if not in_sync:
            return None
        # No deployment at all: only an app that did not even build says why.
        if seen is None:
            if app is not None and app.status == ServeStatus.DEPLOY_FAILED:
                return _failed(model, f"DEPLOY_FAILED: {app.message}".strip())
            return None
        # Serve gave up on it. (A generation that ran before and lost its replicas is UNHEALTHY
        # while Serve replaces them: waited for, not failed.)
        failed = _failure(*seen)
        if failed and not (model.ran_this_generation and seen[1].status == ServeStatus.UNHEALTHY):
            return _failed(model, failed)
        # Healthy with every replica running.
        if (seen[1].status == ServeStatus.HEALTHY and seen[0].status == ServeStatus.RUNNING
                and seen[1].running_replicas == model.spec.num_replicas):
            return Transition(model.model_key, ModelState.RUNNING, EventType.RUNNING,
                              {"generation": model.generation}, applied_generation=model.generation)
        # Not up yet, and Serve says why: recorded once per distinct reason.
        reason = startup_failure(seen[1].message or seen[0].message)
        if reason is not None and _once(model, EventType.REPLICA_START_FAILED, {"message": reason}):
            return Transition(model.model_key, ModelState.DEPLOYING, EventType.REPLICA_START_FAILED,
                              {"message": reason}, error_summary=reason)
        return None
    if model.state == ModelState.RUNNING:
        # Serve gave up on it.
        if seen is not None and seen[1].status == ServeStatus.DEPLOY_FAILED:
            return _failed(model, _failure(*seen))
        # Serve has no running replica of it: not RUNNING, whatever argus applied before.
        lost = replicas_lost(seen, app, in_sync)
        if lost is not None:
            return Transition(model.model_key, ModelState.DEPLOYING, EventType.REPLICAS_LOST, {"message": lost},
                              error_summary=lost)
        # A replica died or fails its health checks: Serve replaces it, so the model stays in the
        # config (failing it would take it out, and with it the replicas that still serve); the
        # reason is recorded once.
        if seen is not None and seen[1].status == ServeStatus.UNHEALTHY:
            reason = summarize_failure(f"UNHEALTHY: {seen[1].message or seen[0].message}".strip())
            if not _once(model, EventType.DEGRADED, {"message": reason}):
                return None
            return Transition(model.model_key, ModelState.RUNNING, EventType.DEGRADED, {"message": reason},
                              error_summary=reason)
        # Healthy again: the reason goes.
        if (seen is not None and seen[1].status == ServeStatus.HEALTHY and model.last_event is not None
                and model.last_event[0] == EventType.DEGRADED):
            return Transition(model.model_key, ModelState.RUNNING, EventType.RECOVERED,
                              {"running_replicas": seen[1].running_replicas})
        # Removed or changed behind argus's back: applied again.
        if not in_sync and (seen is None or running != wanted):
            return Transition(model.model_key, ModelState.DEPLOYING, EventType.DRIFT_REPAIRED,
                              {"message": "Serve did not run this model as specified; applied again"})
        return None
    # Deleting, and Serve no longer has it.
    if model.state == ModelState.DELETING and seen is None and running is None:
        return Transition(model.model_key, ModelState.DELETED, EventType.DELETED, {})
    return None


def replicas_lost(seen: tuple[ObservedApp, ObservedDeployment] | None, app: ObservedApp | None,
                  in_sync: bool) -> str | None:
    """Why a RUNNING model is not served any more, or None while Serve runs a replica of it (or
    cannot tell: an app Serve is re-importing lists no deployments while its replicas serve on)."""
    if seen is None and app is not None and app.status == ServeStatus.DEPLOYING and not app.deployments:
        return None
    if seen is not None and seen[1].running_replicas > 0:
        return None
    said = summarize_failure(seen[1].message or seen[0].message) if seen is not None else ""
    reason = ("Serve has no replica of it; redeploying" if not in_sync
              else "Serve has no running replica of it; Serve is starting one")
    return f"{reason} ({said})" if said else reason


def lost_while_claiming(models: list[DesiredModel], observed: Observed, serve: ServeSettings) -> list[Transition]:
    """RUNNING models Serve has no running replica of, while this argusd claims the lease (after
    a Ray restart the lease is gone with everything else): it applies nothing until it holds the
    lease, but it does not keep saying RUNNING meanwhile. Holding the lease, plan() redeploys."""
    out = []
    for model in models:
        if model.spec.is_adapter or model.state != ModelState.RUNNING:
            continue
        app = observed.apps.get(app_name(model.model_key) if serve.layout == "per_model" else SINGLE_APP_NAME)
        lost = replicas_lost(observed.deployment(deployment_name(model.model_key)), app, in_sync=False)
        if lost is not None:
            out.append(Transition(model.model_key, ModelState.DEPLOYING, EventType.REPLICAS_LOST, {"message": lost},
                                  error_summary=lost))
    return out


# In Serve's deployment message while it retries a replica that did not start (Ray 2.60
# deployment_state: "A replica failed to start with exception. Retrying N more time(s). Error:\n...").
STARTUP_FAILED_MARK = "failed to start"
_RETRY_COUNT = re.compile(r"Retrying \d+ more time\(s\)")


def startup_failure(message: str) -> str | None:
    """Why Serve's replicas do not start, from its deployment message while it retries (the
    engine's own error is the final exception), or None when the message says no such thing.
    The retry count is left out: the same failure on every retry is one reason."""
    if STARTUP_FAILED_MARK not in (message or ""):
        return None
    return summarize_failure(_RETRY_COUNT.sub("Retrying", message))


def cluster_event(last: tuple[str, dict[str, Any]] | None,
                  unreachable: str | None) -> tuple[EventType, dict[str, Any]] | None:
    """The cluster event to record this tick, once per change of reachability: `last` is the
    newest one recorded, `unreachable` why Ray's dashboard could not be reached now (None: it
    answered). A starting dashboard fails in several ways in a row (refused, timed out, closed):
    the first one is recorded, so "unreachable since" stays when it began (argusd logs each)."""
    if unreachable is not None:
        if last is not None and last[0] == EventType.CLUSTER_UNREACHABLE:
            return None
        return EventType.CLUSTER_UNREACHABLE, {"message": unreachable}
    if last is not None and last[0] == EventType.CLUSTER_UNREACHABLE:
        return EventType.CLUSTER_REACHABLE, {}
    return None


def routes(models: list[DesiredModel], transitions: list[Transition], entries: dict[str, ModelDeployment],
           observed: Observed) -> list[dict[str, Any]]:
    """The front end's model table once this tick is recorded: RUNNING models, models being
    updated or scaled that still have a replica serving, and models whose replicas Serve lost
    and restarts at the generation that ran (Serve holds their requests until a replica runs,
    rather than the front end answering that no such model exists)."""
    state_after = {m.model_key: m.state for m in models}
    state_after.update({t.model_key: t.state for t in transitions if t.state is not None})

    def routable(m: DesiredModel) -> bool:
        if m.model_key not in entries:
            return False
        if state_after[m.model_key] == ModelState.RUNNING:
            return True
        seen = observed.deployment(deployment_name(m.model_key))
        return (state_after[m.model_key] in (ModelState.QUEUED, ModelState.DEPLOYING) and m.was_running
                and seen is not None
                and (seen[1].running_replicas > 0
                     or (state_after[m.model_key] == ModelState.DEPLOYING and m.ran_this_generation)))

    return [frontend_route(entries[m.model_key]) for m in models if routable(m)]


def _failed(model: DesiredModel, message: str) -> Transition:
    return Transition(model.model_key, ModelState.FAILED, EventType.FAILED, {"message": message},
                      error_summary=summarize_failure(message))


def _failure(app: ObservedApp, dep: ObservedDeployment) -> str | None:
    if dep.status in (ServeStatus.DEPLOY_FAILED, ServeStatus.UNHEALTHY):
        return f"{dep.status}: {dep.message or app.message}".strip()
    if app.status == ServeStatus.DEPLOY_FAILED and dep.status != ServeStatus.HEALTHY:
        return f"DEPLOY_FAILED: {app.message}".strip()
    return None


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")
SUMMARY_CHARS = 500


def final_exception(text: str) -> str:
    """The last exception line of a traceback and what follows it, on one line ("" if none)."""
    lines = text.splitlines()
    last = max((i for i, line in enumerate(lines) if _EXCEPTION_LINE.match(line.strip())), default=None)
    return " ".join(" ".join(lines[last:]).split()) if last is not None else ""


def summarize_failure(message: str) -> str:
    """Serve's failure messages carry whole tracebacks; the summary keeps the first
    sentence and the final exception (the full text stays in the FAILED event)."""
    text = _ANSI.sub("", message or "").strip()
    lines = text.splitlines()
    if not lines or "Traceback" not in text:
        return " ".join(text.split())[:SUMMARY_CHARS]
    head = lines[0].split(". ")[0].rstrip(".") + "."
    tail = re.sub(r"\s*\[type=.*", "", final_exception(text))  # pydantic's input echo
    summary = f"{head} {tail}".strip()
    return summary if len(summary) <= SUMMARY_CHARS else summary[: SUMMARY_CHARS - 1] + "…"


def observed_from_status(status: dict[str, Any] | None) -> Observed:
    """Parse GET /api/serve/applications/ into Observed."""
    apps = {}
    for name, app in ((status or {}).get("applications") or {}).items():
        deployments = {}
        for dep_name, dep in (app.get("deployments") or {}).items():
            replicas = dep.get("replicas") or []
            deployments[dep_name] = ObservedDeployment(
                status=dep.get("status", ""), message=dep.get("message") or "",
                running_replicas=sum(1 for r in replicas if r.get("state") == ServeStatus.RUNNING))
        apps[name] = ObservedApp(status=app.get("status", ""), message=app.get("message") or "",
                                 deployed_config=app.get("deployed_app_config"), deployments=deployments)
    return Observed(apps)

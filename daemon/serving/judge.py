"""Each model and adapter against what Serve reports: its state transition this tick (an
early-return ladder per model), the adapters' tables, and the front end's route table once the
tick is recorded. Pure.

State machine: QUEUED -> DEPLOYING when applied; DEPLOYING -> RUNNING when Serve reports
the model's deployment healthy at the applied config; DEPLOYING/RUNNING -> FAILED with
Serve's message; RUNNING -> DEPLOYING when Serve has no running replica of it (Ray restarted,
its app removed, every replica died), and back once Serve runs it again; DELETING -> DELETED
when Serve no longer has it. While DEPLOYING, why it is not up yet (a replica that failed to
start and is being retried) is recorded once per distinct reason. A FAILED model is left
out of every apply until its spec changes (sync re-queues it), so one broken model never
keeps the others from being applied; a FAILED model whose change was rolled back keeps its
serving generation (rollout.py, restore.py).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from daemon.core.adapters import AdapterInfo, AdapterRefused, BaseRef, adapter_fit, base_allows, find_base
from daemon.core.spec import ResolvedServingSpec
from daemon.core.states import EventType, ModelState
from daemon.replicas.names import model_app_name
from daemon.serving.desired import DesiredModel, Transition, failed, once
from daemon.serving.llm_config import ModelDeployment, takes_adapters
from daemon.serving.observe import (AppStatus, DeploymentStatus, Observed, ObservedApp, ObservedDeployment,
                                    startup_failure, summarize_failure)
from daemon.serving.placement import placement_stalled
from daemon.serving.serve_config import AdapterEntry, ModelApp, Route


@dataclass
class ServedAdapters:
    transitions: list[Transition]
    tables: dict[str, dict[str, AdapterEntry]]   # base model key -> its adapter table
    routes: list[Route]                          # the front end's entries for the adapters


def adapter_applied(adapter: DesiredModel, base: DesiredModel, observed: Observed) -> bool:
    """Serve holds the adapter at its generation in its base's table, and the front end routes
    it: a request by its id reaches a base replica that knows its folder."""
    app, frontend = observed.model_app(base.model_key), observed.frontend()
    entry = (app.adapters or {}).get(adapter.model_id) if app is not None else None
    routed = frontend.route(adapter.model_id) if frontend is not None else None
    return (entry is not None and entry.generation == adapter.generation
            and routed is not None and routed.base_model == base.model_id)


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
    that Serve and the front end already hold, on a base whose serving generation the front end
    routes to (a rolled-back base's too). The first answer proves that vLLM loaded the adapter
    (or says why not)."""
    refs, bases = base_refs(models), {m.model_id: m for m in models if not m.spec.is_adapter}
    out = []
    for adapter in models:
        if not adapter.spec.is_adapter or adapter.state != ModelState.DEPLOYING:
            continue
        found = _base_of(adapter, refs, bases)
        # A generation of the base serves (RUNNING, or beside a change that starts or was rolled back).
        serves = found is not None and observed.live_app(found[1].model_key, found[1].model_id) is not None
        if serves and adapter_applied(adapter, found[1], observed):
            out.append((adapter, found[1]))
    return out


def _held_adapter_ids(observed: Observed) -> set[str]:
    """Adapter ids any base table in Serve or the front end's table still holds."""
    held = {adapter_id for app in observed.apps.values() if isinstance(app.config, ModelApp)
            for adapter_id in app.config.adapters or {}}
    frontend = observed.frontend()
    return held | {r.model_id for r in (frontend.routes if frontend is not None else ())}


def judge_adapters(adapters: list[DesiredModel], models: list[DesiredModel], state_after: dict[str, ModelState],
                   model_apps: dict[str, ModelApp], observed: Observed,
                   probes: dict[str, str | None]) -> ServedAdapters:
    """Each adapter against its base model this tick: an early-return ladder per adapter. An
    adapter is in its base's table (and routed to its base's app) while DEPLOYING or RUNNING on
    a RUNNING base. `model_apps`: the model apps the next config holds, by model key."""
    refs, bases = base_refs(models), {m.model_id: m for m in models}
    held = _held_adapter_ids(observed)
    out = ServedAdapters([], {}, [])
    for adapter in sorted(adapters, key=lambda m: m.model_key):
        found = _base_of(adapter, refs, bases)
        transition = _judge_adapter(adapter, found, state_after, model_apps, observed, probes, held)
        if transition is not None:
            out.transitions.append(transition)
        state = transition.state if transition is not None and transition.state is not None else adapter.state
        if state not in (ModelState.DEPLOYING, ModelState.RUNNING) or found is None:
            continue
        base = found[1]
        out.tables.setdefault(base.model_key, {})[adapter.model_id] = AdapterEntry(
            adapter.spec.model_source, adapter.generation, adapter.spec.user_id)
        # An adapter is reached through its base's deployment, with its id as the multiplexed
        # model id (which is also the LoRA name vLLM serves it under).
        out.routes.append(replace(model_apps[base.model_key].route(), model_id=adapter.model_id,
                                  base_model=base.model_id))
    return out


def _judge_adapter(adapter: DesiredModel, found: tuple[BaseRef, DesiredModel] | None,
                   state_after: dict[str, ModelState], model_apps: dict[str, ModelApp], observed: Observed,
                   probes: dict[str, str | None], held: set[str]) -> Transition | None:
    key, state = adapter.model_key, adapter.state

    def wait(reason: str) -> Transition | None:
        payload = {"message": reason}
        if state == ModelState.QUEUED and not once(adapter, EventType.WAITING_FOR_BASE, payload):
            return None
        return Transition(key, ModelState.QUEUED, EventType.WAITING_FOR_BASE, payload, error_summary=reason)

    # Its spec is gone: DELETED once no base table and no route holds it any more.
    if state == ModelState.DELETING:
        return None if adapter.model_id in held else Transition(key, ModelState.DELETED, EventType.DELETED, {})
    # Failed (until its spec changes) or deleted: nothing to do.
    if state not in (ModelState.QUEUED, ModelState.DEPLOYING, ModelState.RUNNING):
        return None
    # Its folder is not a usable adapter, or (deploying or running) was swapped out of its owner's
    # roots: the base's replicas refuse to load it anyway (daemon/replicas/weights.py).
    if isinstance(adapter.adapter, AdapterRefused) and state == ModelState.QUEUED:
        return failed(adapter, adapter.adapter.reason)
    if adapter.source_problem is not None and state in (ModelState.DEPLOYING, ModelState.RUNNING):
        return failed(adapter, adapter.source_problem)
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
    # The base is suspended: the adapter waits until it is resumed.
    if base.spec.suspended:
        return wait(f"base {base.model_id} is suspended")
    # The base does not run (yet, or any more): the adapter waits for it.
    if state_after.get(base.model_key) != ModelState.RUNNING or base.model_key not in model_apps:
        return wait(f"waits for base model {base.model_id}, which is {state_after.get(base.model_key)}")
    # The base's serving generation cannot load it (its change that can is starting beside it, or
    # was rolled back): it waits for a generation that can, never routed to one that cannot.
    refused = engine_refuses(adapter, base, model_apps[base.model_key].deployment)
    if refused is not None:
        return wait(refused)
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
        return failed(adapter, str(probes[key]))
    return None


def engine_refuses(adapter: DesiredModel, base: DesiredModel, serving: ModelDeployment) -> str | None:
    """Why the engine of the base's serving generation cannot load the adapter (None: it can):
    it reserves no LoRA slots, or smaller ones than the adapter's rank. Read from the deployment
    Serve runs, not the base's spec: while a change that adds `adapters:` (or raises max_rank)
    starts beside it, or after it was rolled back, the spec says more than the engine holds."""
    engine = serving.llm_config.get("engine_kwargs") or {}
    which = (f"base model {base.model_id}'s serving generation"
             + (f" {base.applied_generation}" if base.applied_generation is not None else ""))
    if not takes_adapters(serving.llm_config):
        why = f"{which} takes no adapters"
    elif (isinstance(adapter.adapter, AdapterInfo) and engine.get("max_lora_rank") is not None
          and adapter.adapter.rank > int(engine["max_lora_rank"])):
        why = f"{which} reserves LoRA rank {engine['max_lora_rank']}, under the adapter's {adapter.adapter.rank}"
    else:
        return None
    if base.state == ModelState.DEPLOYING and base.generation != base.applied_generation:
        return f"{why}; generation {base.generation}, starting beside it, can: the adapter is loaded once it serves"
    return f"{why}; the adapter is loaded once a generation that can serves"


def is_suspended(model: DesiredModel) -> bool:
    """Its spec says suspended (and it is not being deleted): no app of it in the config."""
    return model.spec.suspended and model.state not in (ModelState.DELETING, ModelState.DELETED)


def suspended_message(model: DesiredModel) -> str:
    """What a request to a suspended model is told (503): who suspended it, in which commit."""
    who = (model.author or model.spec.user_id).split(" <")[0]
    commit = (model.commit or "")[:7] or "an unknown commit"
    return f"model {model.model_id} is suspended by {who} in {commit}; set suspended: false to resume"


def judge_suspended(model: DesiredModel, observed: Observed) -> Transition | None:
    """A suspended model is SUSPENDED once Serve holds no app of it any more (recorded once)."""
    if model.state == ModelState.SUSPENDED or observed.apps_of(model.model_key):
        return None
    message = suspended_message(model)
    return Transition(model.model_key, ModelState.SUSPENDED, EventType.SUSPENDED,
                      {"generation": model.generation, "message": message}, error_summary=message)


def at_target(spec: ResolvedServingSpec, dep: ObservedDeployment) -> bool:
    """Serve runs the replicas the spec asks for: every one of a fixed num_replicas; at least
    min_replicas of an autoscaled model (0 included: a model with min_replicas 0 is deployed
    without a cold start, its first request wakes it)."""
    if spec.autoscaling is None:
        return dep.running_replicas == spec.num_replicas
    return dep.running_replicas >= spec.num_replicas


def wake_stalled(model: DesiredModel, seen: tuple[ObservedApp, ObservedDeployment] | None,
                 unit: str = "GPUs") -> str | None:
    """Why a model at zero cannot wake: Serve wants a replica and says it cannot place one (the
    resources it needs are held by other models). None: it is not stalled."""
    if not model.spec.may_idle or seen is None or not seen[1].waking or not placement_stalled(seen[1].message):
        return None
    return (f"model {model.model_id} cannot wake: it needs {model.spec.gpus_per_replica} {unit} "
            f"and none are free")


def scale_event(model: DesiredModel, seen: tuple[ObservedApp, ObservedDeployment] | None,
                now: datetime | None) -> Transition | None:
    """IDLE once when Serve scaled a RUNNING model to zero, WOKE once when a replica runs again
    (with how long the wake took: from the tick Serve first wanted a replica to this one)."""
    if not model.spec.may_idle or seen is None:
        return None
    dep = seen[1]
    # At zero: said once, and again after a wake Serve could not place (its reason goes).
    stalled_before = model.last_event is not None and model.last_event[0] == EventType.PENDING_RESOURCES
    if dep.idle and (model.last_scale != EventType.IDLE or stalled_before):
        delay = model.spec.autoscaling["scale_down_delay_s"] if model.spec.autoscaling else None
        message = (f"no request for {delay} s: Serve runs no replica; the next request wakes it"
                   if model.last_scale is not None or stalled_before
                   else "at zero replicas since it was deployed; the first request wakes it")
        return Transition(model.model_key, ModelState.RUNNING, EventType.IDLE, {"message": message})
    # Woken: after an IDLE, or seen waking since its first deploy at zero (no IDLE recorded yet:
    # a request came before the first tick that saw it idle).
    if dep.running_replicas > 0 and (model.last_scale == EventType.IDLE
                                     or (model.last_scale is None and model.waking_since is not None)):
        took = (round((now - model.waking_since).total_seconds(), 1)
                if now is not None and model.waking_since is not None else None)
        return Transition(model.model_key, ModelState.RUNNING, EventType.WOKE,
                          {"wake_s": took, "running_replicas": dep.running_replicas})
    return None


def deploy_phases(applied_at: datetime | None, replica_started: datetime | None,
                  now: datetime | None) -> dict[str, float]:
    """How long a generation took from argusd's apply to the tick that saw it serve (`deploy_s`),
    split where Serve started its newest running replica: Serve's build and placement before it
    (`placed_s`), the replica's own start after it (`replica_start_s`: its process, the imports
    of Ray Serve LLM and vLLM, vLLM's engine, until argusd's tick saw it; the shell adds the
    replica's own split of it from its log, `replica_imports_s` and `replica_engine_s`). Only
    what is known: nothing without the apply's time, and
    no split when that replica started outside the apply..now window (clocks apart, or a replica
    Serve kept from before)."""
    if applied_at is None or now is None:
        return {}
    phases = {"deploy_s": round((now - applied_at).total_seconds(), 1)}
    if replica_started is not None and applied_at <= replica_started <= now:
        phases["placed_s"] = round((replica_started - applied_at).total_seconds(), 1)
        phases["replica_start_s"] = round((now - replica_started).total_seconds(), 1)
    return phases


def judge(model: DesiredModel, seen: tuple[ObservedApp, ObservedDeployment] | None, app: ObservedApp | None,
          in_sync: bool, admitted: bool, running: ModelDeployment | None,
          wanted: ModelDeployment | None, now: datetime | None = None, unit: str = "GPUs") -> Transition | None:
    """One model's transition from what Serve reports about it, or None: an early-return
    ladder. `seen`: its deployment (with its app); `app`: the app that should hold it;
    `in_sync`: Serve has the config argus wants for it; `running`: what Serve runs for it
    now; `wanted`: what the next config holds for it; `now`: the time (how long a wake took);
    `unit`: what a replica's workers are (GPUs, or CPUs on CPU serving)."""
    # Admitted this tick: it goes into the config now.
    if admitted:
        return Transition(model.model_key, ModelState.DEPLOYING, EventType.APPLIED,
                          {"generation": model.generation, "num_replicas": model.spec.num_replicas},
                          attempted_generation=model.generation)
    # Its folder was swapped out of its owner's roots while it deploys or runs: failed (and out of
    # the next config); its replicas would refuse to load it anyway (daemon/replicas/weights.py).
    if model.state in (ModelState.DEPLOYING, ModelState.RUNNING) and model.source_problem is not None:
        return failed(model, model.source_problem)
    if model.state == ModelState.DEPLOYING:
        # Its config is not in Serve yet (or is being replaced): wait for it.
        if not in_sync:
            return None
        # No deployment at all: only an app that did not even build says why.
        if seen is None:
            if app is not None and app.status == AppStatus.DEPLOY_FAILED:
                return failed(model, f"DEPLOY_FAILED: {app.message}".strip())
            return None
        # Serve gave up on it. (A generation that ran before and lost its replicas is UNHEALTHY
        # while Serve replaces them: waited for, not failed.)
        failure = deployment_failure(*seen)
        if failure and not (model.ran_this_generation and seen[1].status == DeploymentStatus.UNHEALTHY):
            return failed(model, failure)
        # Healthy with every replica running.
        if (seen[1].status == DeploymentStatus.HEALTHY and seen[0].status == AppStatus.RUNNING
                and at_target(model.spec, seen[1])):
            # How long its start took, for a generation's first start only: applied_at is its
            # apply, not a redeploy's after Serve lost it.
            phases = {} if model.ran_this_generation else deploy_phases(model.applied_at,
                                                                         seen[1].newest_running_since, now)
            return Transition(model.model_key, ModelState.RUNNING, EventType.RUNNING,
                              {"generation": model.generation, **phases}, applied_generation=model.generation,
                              replica_log=seen[1].newest_running_log if "replica_start_s" in phases else None)
        # Not up yet, and Serve says why: recorded once per distinct reason.
        reason = startup_failure(seen[1].message or seen[0].message)
        if reason is not None and once(model, EventType.REPLICA_START_FAILED, {"message": reason}):
            return Transition(model.model_key, ModelState.DEPLOYING, EventType.REPLICA_START_FAILED,
                              {"message": reason}, error_summary=reason)
        return None
    if model.state == ModelState.RUNNING:
        # Serve gave up on it.
        if seen is not None and seen[1].status == DeploymentStatus.DEPLOY_FAILED:
            return failed(model, deployment_failure(*seen) or DeploymentStatus.DEPLOY_FAILED.value)
        # Serve has no running replica of it: not RUNNING, whatever argus applied before (an
        # autoscaled model at zero runs none by Serve's own decision: lost only when Serve lost it).
        lost = replicas_lost(seen, app, in_sync) if not (model.spec.may_idle and seen is not None) else None
        if lost is not None:
            return Transition(model.model_key, ModelState.DEPLOYING, EventType.REPLICAS_LOST, {"message": lost},
                              error_summary=lost)
        # A replica died or fails its health checks: Serve replaces it, so the model stays in the
        # config (failing it would take it out, and with it the replicas that still serve); the
        # reason is recorded once.
        if seen is not None and seen[1].status == DeploymentStatus.UNHEALTHY:
            reason = summarize_failure(f"UNHEALTHY: {seen[1].message or seen[0].message}".strip())
            if not once(model, EventType.DEGRADED, {"message": reason}):
                return None
            return Transition(model.model_key, ModelState.RUNNING, EventType.DEGRADED, {"message": reason},
                              error_summary=reason)
        # Healthy again: the reason goes.
        if (seen is not None and seen[1].status == DeploymentStatus.HEALTHY and model.last_event is not None
                and model.last_event[0] == EventType.DEGRADED):
            return Transition(model.model_key, ModelState.RUNNING, EventType.RECOVERED,
                              {"running_replicas": seen[1].running_replicas})
        # Removed or changed behind argus's back: applied again.
        if not in_sync and (seen is None or running != wanted):
            return Transition(model.model_key, ModelState.DEPLOYING, EventType.DRIFT_REPAIRED,
                              {"message": "Serve did not run this model as specified; applied again"})
        # At zero, woken by a request, and Serve cannot place the replica: said once (it stays
        # RUNNING; its route answers 503 with the same reason while Serve reports it).
        stalled = wake_stalled(model, seen, unit)
        if stalled is not None:
            if not once(model, EventType.PENDING_RESOURCES, {"message": stalled}):
                return None
            return Transition(model.model_key, ModelState.RUNNING, EventType.PENDING_RESOURCES,
                              {"message": stalled}, error_summary=stalled)
        return scale_event(model, seen, now)
    # Deleting, and Serve no longer has it.
    if model.state == ModelState.DELETING and seen is None and running is None:
        return Transition(model.model_key, ModelState.DELETED, EventType.DELETED, {})
    return None


def replicas_lost(seen: tuple[ObservedApp, ObservedDeployment] | None, app: ObservedApp | None,
                  in_sync: bool) -> str | None:
    """Why a RUNNING model is not served any more, or None while Serve runs a replica of it (or
    cannot tell: an app Serve is re-importing lists no deployments while its replicas serve on)."""
    if seen is None and app is not None and app.status == AppStatus.DEPLOYING and not app.deployments:
        return None
    if seen is not None and seen[1].running_replicas > 0:
        return None
    said = summarize_failure(seen[1].message or seen[0].message) if seen is not None else ""
    reason = ("Serve has no replica of it; redeploying" if not in_sync
              else "Serve has no running replica of it; Serve is starting one")
    return f"{reason} ({said})" if said else reason


def lost_while_claiming(models: list[DesiredModel], observed: Observed) -> list[Transition]:
    """RUNNING models Serve has no running replica of, while this argusd claims the lease (after
    a Ray restart the lease is gone with everything else): it applies nothing until it holds the
    lease, but it does not keep saying RUNNING meanwhile. Holding the lease, plan() redeploys."""
    out = []
    for model in models:
        if model.spec.is_adapter or model.state != ModelState.RUNNING:
            continue
        # Its serving app: the one the front end routes it to (the second slot after a rollout).
        name = observed.live_app(model.model_key, model.model_id) or model_app_name(model.model_key)
        seen = observed.server(model.model_key, name)
        if seen is not None and model.spec.may_idle:   # at zero by Serve's own decision
            continue
        lost = replicas_lost(seen, observed.apps.get(name), in_sync=False)
        if lost is not None:
            out.append(Transition(model.model_key, ModelState.DEPLOYING, EventType.REPLICAS_LOST, {"message": lost},
                                  error_summary=lost))
    return out


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


def deployment_failure(app: ObservedApp, dep: ObservedDeployment) -> str | None:
    """Serve's reason when it gave up on a model's deployment (None: it has not)."""
    if dep.status in (DeploymentStatus.DEPLOY_FAILED, DeploymentStatus.UNHEALTHY):
        return f"{dep.status.value}: {dep.message or app.message}".strip()
    if app.status == AppStatus.DEPLOY_FAILED and dep.status != DeploymentStatus.HEALTHY:
        return f"DEPLOY_FAILED: {app.message}".strip()
    return None

"""Who is in the next Serve config: what already runs or deploys, and the QUEUED models that
may start now (their folder is usable; on GPUs, every replica fits on one node). Pure."""
from __future__ import annotations

from dataclasses import dataclass, replace

from daemon.core.quota import Quotas, quota_problem
from daemon.core.spec import ResolvedServingSpec
from daemon.core.states import EventType, ModelState
from daemon.replicas.names import model_app_name
from daemon.serving.desired import DesiredModel, Transition, once
from daemon.serving.llm_config import LlmSettings, ModelDeployment
from daemon.serving.observe import Observed, summarize_failure
from daemon.serving.placement import (AdmissionMode, Capacity, Free, free_of, place, placement_stalled,
                                      shortfall)
from daemon.serving.rollout import same_engine
from daemon.serving.serve_config import ModelApp


@dataclass
class Admission:
    entries: dict[str, ModelDeployment]   # model key -> what the next config holds for it
    admitted: set[str]                    # QUEUED models that go in now
    transitions: list[Transition]         # FAILED (folder) and PENDING_RESOURCES


def admit(models: list[DesiredModel], running_now: dict[str, ModelDeployment], capacity: Capacity | None,
          settings: LlmSettings, observed: Observed | None = None,
          targets: dict[str, str] | None = None, quotas: Quotas | None = None,
          restoring: dict[str, str] | None = None) -> Admission:
    """Who is in the next config: what already runs or deploys, plus the QUEUED models whose
    folder is usable, whose owner's GPU quota has room for what they reserve, and whose every
    replica fits on one node now (a queued update keeps its running version until then).
    `capacity` None: CPU serving, no GPU admission. `targets`: the app each model's wanted
    generation goes in (rollout.locate; default its first slot). `quotas`: each user's GPU
    quota (core/quota.py, Config.gpu_quota; None: no quotas). `restoring`: FAILED models whose
    serving generation goes back in Serve (restore.py), by the app it goes in: its replicas are
    in flight like a deploying model's. A FAILED model's serving generation (desired.Serving)
    holds its owner's GPUs like any running model. Reserved is num_replicas
    (min_replicas when autoscaled) x gpus_per_replica; replicas Serve adds under load are
    Ray's to place, where it can, and reserve nothing."""
    observed = observed or Observed()
    entries: dict[str, ModelDeployment] = {}
    transitions: list[Transition] = []
    free = free_of(capacity) if capacity is not None else None
    for model in sorted(models, key=lambda m: m.model_key):
        if model.model_key in (restoring or {}) and model.serving is not None and free is not None:
            # Its serving generation is deployed again: its replicas are in flight.
            back = model.serving.deployment
            seen = observed.server(model.model_key, (restoring or {})[model.model_key])
            free = place(free, max(back.num_replicas - (seen[1].running_replicas if seen else 0), 0),
                         _gpus_per_replica(back)) or free
        if model.state not in (ModelState.DEPLOYING, ModelState.RUNNING):
            continue
        seen = observed.server(model.model_key, (targets or {}).get(model.model_key))
        running = seen[1].running_replicas if seen else 0
        if model.state == ModelState.DEPLOYING and seen and placement_stalled(seen[1].message):
            stalled = _stalled(model, seen[1].message, running, capacity, free)
            if stalled is not None:
                transitions.append(stalled)
                if stalled.state == ModelState.QUEUED:  # out of the config: its pending group holds nothing
                    serving = _serving_beside(model, observed, (targets or {}).get(model.model_key))
                    if serving is not None:  # a new generation beside a serving one: that one serves on
                        entries[model.model_key] = serving
                    continue
        entries[model.model_key] = ModelDeployment.of(model.model_key, model.spec, settings)
        if free is not None and model.state == ModelState.DEPLOYING:
            # In flight: Ray's usage shows new placement groups only seconds later, so the replicas
            # not running yet are counted here; one that does not fit holds nothing (Ray cannot
            # place it either).
            free = place(free, max(model.spec.num_replicas - running, 0), model.spec.gpus_per_replica) or free
    admitted: set[str] = set()
    by_key = {m.model_key: m for m in models}
    for model in sorted((m for m in models if m.state == ModelState.QUEUED), key=lambda m: m.model_key):
        if model.source_problem is not None:
            transitions.append(Transition(model.model_key, ModelState.FAILED, EventType.FAILED,
                                          {"message": model.source_problem}, error_summary=model.source_problem,
                                          attempted_generation=model.generation))
            continue
        user = model.spec.user_id
        # What the user's other models hold: those in the config, and queued updates of ones that run.
        holding = set(entries) | admitted | {k for k in running_now
                                             if k in by_key and by_key[k].state == ModelState.QUEUED}
        others = [by_key[key].spec for key in sorted(holding)
                  if key != model.model_key and key in by_key and by_key[key].spec.user_id == user]
        others += [_holds(m.spec, m.serving.deployment) for m in models
                   if m.state == ModelState.FAILED and m.serving is not None and m.spec.user_id == user
                   and m.model_key != model.model_key]
        serving = model.serving.deployment if model.serving is not None else None
        over = quota_problem(user, model.spec, others, quotas(user) if quotas is not None else None,
                             before=_reserved(running_now.get(model.model_key) or serving))
        wanted = ModelDeployment.of(model.model_key, model.spec, settings)
        held = _held_in_target(wanted, observed, (targets or {}).get(model.model_key))
        kept = held or running_now.get(model.model_key)
        if over is not None:
            if once(model, EventType.QUOTA_EXCEEDED, {"message": over}):
                transitions.append(Transition(model.model_key, ModelState.QUEUED, EventType.QUOTA_EXCEEDED,
                                              {"message": over}, error_summary=over))
            if kept is not None:  # keep what Serve holds of it until the update fits the quota
                entries[model.model_key] = kept
            continue
        if capacity is not None:  # GPU serving (free is its live view)
            extra = _extra_replicas(wanted, held or _replaced_in_place(wanted, observed, (targets or {}).get(model.model_key)))
            placed = place(free, extra, model.spec.gpus_per_replica)
            waiting = _waits_after_stall(model, free)
            if capacity.mode == AdmissionMode.FIT and (placed is None or waiting):
                payload = (model.last_event[1] if waiting and model.last_event
                           else shortfall(capacity, free, extra, model.spec.gpus_per_replica))
                if once(model, EventType.PENDING_RESOURCES, payload):
                    transitions.append(Transition(model.model_key, ModelState.QUEUED, EventType.PENDING_RESOURCES,
                                                  payload, error_summary=str(payload["message"])))
                if kept is not None:  # keep what Serve holds of it (serving, or still starting) until it fits
                    entries[model.model_key] = kept
                continue
            free = placed or free
        entries[model.model_key] = ModelDeployment.of(model.model_key, model.spec, settings)
        admitted.add(model.model_key)
    return Admission(entries, admitted, transitions)


def _gpus_per_replica(deployment: ModelDeployment) -> int:
    """A deployment's GPUs per replica: its tensor-parallel size (llm_config.build_llm_config)."""
    return int(deployment.llm_config.get("engine_kwargs", {}).get("tensor_parallel_size", 1))


def _reserved(running: ModelDeployment | None) -> int:
    """GPUs a running version of a model reserves (0: none runs): its replicas (min_replicas
    when autoscaled) times its tensor-parallel size."""
    if running is None:
        return 0
    return running.num_replicas * _gpus_per_replica(running)


def _holds(spec: ResolvedServingSpec, deployment: ModelDeployment) -> ResolvedServingSpec:
    """What a generation Serve runs reserves, as the quota rule reads a spec: its replicas
    (min_replicas when autoscaled) of its tensor-parallel size, whatever the model's wanted
    spec now says."""
    return replace(spec, num_replicas=deployment.num_replicas, gpus_per_replica=_gpus_per_replica(deployment),
                   suspended=False)


def _serving_beside(model: DesiredModel, observed: Observed, target: str | None) -> ModelDeployment | None:
    """What serves the model in another app than the one its wanted generation goes in (None:
    nothing, or the wanted generation's own app)."""
    live = observed.live_app(model.model_key, model.model_id)
    if live is None or live == target:
        return None
    app = observed.apps[live].config
    return app.deployment if isinstance(app, ModelApp) else None


def _held_in_target(wanted: ModelDeployment, observed: Observed, target: str | None) -> ModelDeployment | None:
    """What Serve holds of the model in the app its wanted generation goes in, when that runs
    the wanted engine (running or still starting): a change that only adds replicas to it
    scales it in place (None: the wanted engine is new there)."""
    app = observed.apps.get(target or model_app_name(wanted.model_key))
    if app is None or app.going or not isinstance(app.config, ModelApp):
        return None
    return app.config.deployment if same_engine(app.config.deployment, wanted) else None


def _replaced_in_place(wanted: ModelDeployment, observed: Observed, target: str | None) -> ModelDeployment | None:
    """What Serve runs of the model in the app its wanted generation replaces in place (recreate:
    the target is the app that serves it), whatever its engine: Serve stops those replicas before
    it starts new ones, so their GPUs are the new ones' (replicas of the same size only; None:
    not in place, or another size, placed whole)."""
    live = observed.live_app(wanted.model_key, wanted.model_id)
    app = observed.apps.get(target or "")
    if live is None or target != live or app is None or app.going or not isinstance(app.config, ModelApp):
        return None
    running = app.config.deployment
    return running if _gpus_per_replica(running) == _gpus_per_replica(wanted) else None


def _extra_replicas(wanted: ModelDeployment, held: ModelDeployment | None) -> int:
    """Replicas a queued model adds to what Ray holds now. Scaling an engine Serve already
    holds adds the difference to the replicas Serve already places for it (running or still
    starting: their placement groups are Ray's, in its usage); anything else is placed whole (a
    new generation starts beside the serving one, whose replicas go only once the new ones
    answered)."""
    if held is not None:
        return max(wanted.num_replicas - held.num_replicas, 0)
    return wanted.num_replicas


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
    if not once(model, EventType.PENDING_RESOURCES, payload):
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

"""The reconcile decision: a pure function of (desired models, observed Serve, capacity).

plan() says which Serve config to apply (None: Serve already runs what argus wants, apply
nothing) and which state transitions and events to record. The shell (reconciler.py) gathers
the inputs, puts the config and writes the outcome. Its parts, by job: observe.py reads what
Serve reports, admit.py decides who is in the next config, judge.py decides each model's and
adapter's transition and the front end's routes, rollout.py a model's generations and
restore.py a rolled-back model's serving generation that Serve lost, serve_config.py is the
config itself.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from daemon.core.quota import Quotas
from daemon.core.states import EventType, ModelState
from daemon.core.spec import SURGE
from daemon.replicas.names import LEASE_APP, WAKE_RETRY_AFTER_MAX_S, is_argus_app
from daemon.serving.admit import admit
from daemon.serving.desired import DesiredModel, Serving, Transition
from daemon.serving.restore import judge_serving, restore, restore_slot
from daemon.core.adapters import find_base
from daemon.serving.judge import (base_refs, is_suspended, judge, judge_adapters, judge_suspended,
                                  suspended_message, wake_stalled)
from daemon.serving.llm_config import LlmSettings, ModelDeployment
from daemon.serving.observe import Observed
from daemon.serving.placement import Capacity
from daemon.serving.rollout import (CanaryEvidence, arrange, canary_share, frontend_settled, judge_candidate, locate,
                                    probe_routes, with_canaries)
from daemon.serving.serve_config import FrontendApp, HttpOptions, LeaseApp, ModelApp, Route, ServeConfig, Unavailable


@dataclass(frozen=True)
class ServeSettings:
    """What the reconcile decision needs from the config's serving.serve (no defaults of its
    own: the config's are the only ones)."""

    http_host: str
    http_port: int
    proxy_location: str
    frontend_replicas: int          # replicas of the front end
    wake_timeout_s: float           # a request to a model at zero is held this long while it wakes

    @property
    def http(self) -> HttpOptions:
        return HttpOptions(self.http_host, self.http_port, self.proxy_location)

    @classmethod
    def from_config(cls, config: Any) -> "ServeSettings":
        serve = config.serving.serve
        return cls(serve.http_host, serve.http_port, serve.proxy_location, serve.frontend_replicas,
                   serve.wake_timeout_s)


@dataclass(frozen=True)
class Plan:
    apply: ServeConfig | None
    transitions: list[Transition]
    # A model serves and waits only for the front end's replicas to route it (its RUNNING is
    # held back until they do): Serve hands them the route within a second or so, so the next
    # look is worth taking sooner than the poll interval.
    awaiting_route: bool = False

    @property
    def noop(self) -> bool:
        return self.apply is None and not self.transitions


def config_differs(desired: ServeConfig, observed: Observed, ignore: frozenset[str] | set[str] = frozenset()) -> bool:
    """Whether Serve runs argus's applications other than as desired (other apps are not argus's;
    an app Serve is deleting counts as gone)."""
    wanted = {name: app for name, app in desired.by_name().items() if name not in ignore and is_argus_app(name)}
    have = {name: app for name, app in observed.as_configured().items() if name not in ignore and is_argus_app(name)}
    return wanted != have


def plan(models: list[DesiredModel], observed: Observed, *, capacity: Capacity | None,
         settings: LlmSettings, serve: ServeSettings, lease: dict[str, Any] | None = None,
         probes: dict[str, str | None] | None = None, rollout_probes: dict[str, str | None] | None = None,
         now: datetime | None = None, quotas: Quotas | None = None,
         canaries: dict[str, CanaryEvidence] | None = None) -> Plan:
    """What to apply and record, in five steps: locate each model's generations in Serve
    (rollout.py), admit (who is in the next config), judge each model against what Serve
    reports, judge the adapters against their base models, and arrange each model's apps and
    routes. `capacity` None: no GPU admission (CPU serving). `lease`: the lease value this
    daemon holds, kept in the config (None: no lease). `probes`: adapters the shell asked
    through the endpoint this tick (model key -> None when it answered, else the failure);
    `rollout_probes`: the same for models whose new generation waits to be switched to (asked
    by its probe id, with its adapters). `now`: the time, for the rollout's bound. `quotas`:
    each user's GPU quota (admit.py). `canaries`: models whose new generation is in its canary
    phase (rollout.py), with the failure counts the shell read."""
    adapters = [m for m in models if m.spec.is_adapter]
    bases = [m for m in models if not m.spec.is_adapter]
    suspended = [m for m in bases if is_suspended(m)]
    models = [m for m in bases if not is_suspended(m)]
    wanted = {m.model_key: ModelDeployment.of(m.model_key, m.spec, settings) for m in models}
    slots = {m.model_key: locate(m, wanted[m.model_key], observed, surge=m.spec.rollout_strategy == SURGE)
             for m in models}
    running_now = observed.running_models()
    restoring = {m.model_key: slot for m in models
                 if (slot := restore_slot(m, slots[m.model_key], observed)) is not None}
    by_key = {m.model_key: m for m in models}
    admission = admit(models, running_now, capacity, settings, observed,
                      targets={key: s.target for key, s in slots.items()}, quotas=quotas, restoring=restoring)

    transitions = list(admission.transitions)
    decided = {t.model_key for t in transitions}
    for model in models:
        if model.model_key in decided:  # admission already said what happens to it this tick
            continue
        if model.state == ModelState.FAILED and model.serving is not None:   # rolled back: its serving generation
            lost = judge_serving(model, slots[model.model_key], restoring.get(model.model_key), observed)
            transitions += [lost] if lost is not None else []
            continue
        where, entry = slots[model.model_key], admission.entries.get(model.model_key)
        wanted_app = ModelApp.of(entry, where.target) if entry is not None else None
        # Only this model's own app decides whether it is applied (its adapter table aside).
        app = observed.apps.get(where.target)
        in_sync = wanted_app is not None and app is not None and wanted_app.same_server(app.config)
        seen = observed.server(model.model_key, where.target)
        admitted = model.model_key in admission.admitted
        if where.surge and (admitted or model.state == ModelState.DEPLOYING
                            or (model.state == ModelState.RUNNING and not in_sync)):
            judged = judge_candidate(model, seen, app, in_sync, admitted, rollout_probes or {}, now, where,
                                     (canaries or {}).get(model.model_key))
        else:
            judged = judge(model, seen, app, in_sync, admitted, running_now.get(model.model_key), entry, now,
                           _unit(settings))
        if judged is not None:
            transitions.append(judged)
    transitions += [t for t in (judge_suspended(m, observed) for m in suspended) if t is not None]
    state_after: dict[str, ModelState] = {m.model_key: m.state for m in bases}
    state_after.update({t.model_key: t.state for t in transitions if t.state is not None})
    arranged = {m.model_key: arrange(m, state_after[m.model_key], slots[m.model_key],
                                     admission.entries.get(m.model_key), observed,
                                     canary_share(m, transitions, canaries or {})) for m in models}
    # A rolled-back model whose serving generation Serve lost: that generation goes back.
    arranged.update({key: restore(by_key[key], slot, observed, settings.drain_timeout_s) for key, slot in restoring.items()
                     if state_after[key] == ModelState.FAILED})
    transitions = [_records_serving(t, arranged) for t in transitions]
    # Adapters follow their base's serving generation: they run while it serves (also while a
    # new generation starts beside it, or after a rollback), in every app of it.
    serving = {key: next(a for a in arr.apps if a.name == arr.serving)
               for key, arr in arranged.items() if arr.serving is not None}
    base_state = {key: (ModelState.RUNNING if key in serving else state) for key, state in state_after.items()}
    served = judge_adapters(adapters, bases, base_state, serving, observed, probes or {})
    transitions += served.transitions
    apps: list[ModelApp] = []
    routes: list[Route] = []
    for model in models:
        arr = arranged[model.model_key]
        table = served.tables.get(model.model_key)
        mine = [ModelApp.of(a.deployment, a.name, table) for a in arr.apps]
        apps += mine
        if arr.serving is not None:
            routes.append(next(a for a in mine if a.name == arr.serving).route())
        elif arr.unavailable is not None:
            routes.append(Route(model.model_id, "", "", unavailable=arr.unavailable))
        if arr.probing is not None:
            candidate = next(a for a in mine if a.name == arr.probing)
            routes.append(probe_routes(candidate.route(), candidate))
            routes += [probe_routes(r, candidate) for r in served.routes if r.base_model == model.model_id]
    # A suspended model keeps its public id: the front end answers it 503 with who suspended it.
    routes += [Route(m.model_id, "", "", unavailable=Unavailable(503, suspended_message(m))) for m in suspended]
    routes += _adapters_of_suspended(adapters, bases, suspended)
    routed = {r.model_id for r in routes if r.unavailable is None and not r.probe}
    routes += [r for r in served.routes if r.base_model in routed]
    routes = with_canaries(routes, models, arranged)
    routes = _while_idle(routes, apps, models, observed, serve.wake_timeout_s, _unit(settings))
    front = FrontendApp.of(routes, serve.frontend_replicas, settings.drain_timeout_s)
    config_apps = (sorted(apps, key=lambda a: a.name) + [front] + ([LeaseApp(lease)] if lease is not None else [])
                   + observed.foreign())
    desired = ServeConfig(serve.http, tuple(config_apps))
    ids = {m.model_key: m.model_id for m in models}
    unrouted = [t for t in transitions if _unrouted_running(t, ids, arranged, observed)]
    transitions = [t for t in transitions if t not in unrouted]
    # No lease: a leftover lease app is not argus's to judge.
    return Plan(desired if config_differs(desired, observed, ignore=set() if lease is not None else {LEASE_APP})
                else None, transitions, awaiting_route=bool(unrouted))


def _records_serving(t: Transition, arranged: dict[str, Any]) -> Transition:
    """A model that fails this tick keeps, in the store, the generation that serves on beside
    the failure (rolled back; restore.py deploys it again if Serve loses it), or that none does
    (it failed in place: FAILED took it out)."""
    if t.event_type not in (EventType.FAILED, EventType.ROLLED_BACK) or t.model_key not in arranged:
        return t
    arr = arranged[t.model_key]
    app = next((a for a in arr.apps if a.name == arr.serving), None)
    serving = Serving(app.deployment, t.error_summary or "") if app is not None else None
    return replace(t, records_serving=True, serving=serving)


def _while_idle(routes: list[Route], apps: list[ModelApp], models: list[DesiredModel], observed: Observed,
               hold_s: float, unit: str) -> list[Route]:
    """Routes to a model that may be at zero replicas (autoscaled, min_replicas 0; its adapters
    and its probe id too) hold a request up to `hold_s` while Serve wakes it; while Serve says it
    cannot place the replica to wake it, they answer 503 with why instead (Serve retries placing
    it as long as it wants a replica; a request after the GPUs are free wakes it)."""
    by_app = {a.name: a for a in apps}
    by_key = {m.model_key: m for m in models}
    out = []
    for route in routes:
        app = by_app.get(route.app)
        if route.unavailable is not None or app is None or not app.deployment.may_idle:
            out.append(route)
            continue
        model = by_key.get(app.model_key)
        stalled = wake_stalled(model, observed.server(app.model_key, app.name), unit) if model is not None else None
        if stalled is not None and not route.probe:
            if route.base_model is not None:
                stalled = f"{stalled} (adapter {route.model_id} runs on it)"
            out.append(Route(route.model_id, "", "", route.max_request_context_length, route.base_model,
                             unavailable=Unavailable(503, stalled, WAKE_RETRY_AFTER_MAX_S)))
        else:
            out.append(replace(route, hold_s=hold_s))
    return out


def _unit(settings: LlmSettings) -> str:
    """What a replica's workers are, in messages: GPUs, or CPUs on CPU serving."""
    return "CPUs" if settings.on_cpu else "GPUs"


def _unrouted_running(t: Transition, ids: dict[str, str], arranged: dict[str, Any], observed: Observed) -> bool:
    """A model judged RUNNING that the front end does not route to yet: the config routing it
    goes out this tick, and Serve hands it to the front-end replicas a moment later; RUNNING is
    recorded on a later tick, once every front-end replica routes the public id to the serving
    app (else `apply --wait` said RUNNING and the first request got 503 "starting")."""
    if t.event_type != EventType.RUNNING or t.model_key not in arranged:
        return False
    serving = arranged[t.model_key].serving
    return (serving is None or observed.live_app(t.model_key, ids[t.model_key]) != serving
            or not frontend_settled(observed))


def _adapters_of_suspended(adapters: list[DesiredModel], bases: list[DesiredModel],
                           suspended: list[DesiredModel]) -> list[Route]:
    """An adapter whose base is suspended keeps its public id too: 503 naming its base's
    suspension, not a 404 (it is declared, and comes back with its base)."""
    refs, by_id = base_refs(bases), {m.model_id: m for m in suspended}
    out = []
    for adapter in adapters:
        if adapter.state in (ModelState.DELETING, ModelState.DELETED):
            continue
        ref = find_base(adapter.spec.base_model or "", adapter.spec.user_id, refs)
        base = by_id.get(ref.model_id) if ref is not None else None
        if base is not None:
            message = suspended_message(base).replace(
                f"model {base.model_id} is", f"adapter {adapter.model_id} runs on model {base.model_id}, which is", 1)
            out.append(Route(adapter.model_id, "", "", base_model=base.model_id,
                             unavailable=Unavailable(503, message)))
    return out


def renews_only(desired: ServeConfig, observed: Observed) -> bool:
    """Whether applying `desired` changes nothing but the lease."""
    return not config_differs(desired, observed, ignore={LEASE_APP})

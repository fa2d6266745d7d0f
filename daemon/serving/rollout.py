"""A model's generations in Serve: which app serves it, where its next generation goes, and
when clients move to it. Pure.

At most two apps per model, in two slots (names.model_app_name and names.candidate_app_name):
the live one, which the front end routes the model's public id to (read back from Serve, so
level-triggered: argusd killed mid-rollout resumes from what Serve runs), and a candidate.
A change that needs new replicas (anything of the LLMConfig but the replica count and the
adapter table) starts the candidate in the slot the live app does not hold (surge); the
front end reaches it only under names.probe_id(public id) until the shell's request through
the endpoint got an answer, then routes the public id to it (switch). The old app stays in
the config until the front end routes to the new one with every replica reconfigured
(drain); Serve's graceful shutdown then lets in-flight requests finish. A candidate that
fails, or is not up within ROLLOUT_START_TIMEOUT_S, never takes traffic: it is removed and
the model is FAILED with the serving generation named (rollback).

Canary (a spec's rollout.canary_percent/canary_seconds): once the candidate answered its probe,
it takes canary_percent of the public id's requests (its adapters' too) beside the serving app
for canary_seconds (CANARY_STARTED; the front end draws per request, route_table.route), then
the switch as above; or the rollback, when its failure rate over the canary was significantly
above the serving generation's over the same intervals (canary_verdict). The split is written
only while the candidate runs. The phase is read back from the store (the CANARY_STARTED event
of this generation: when it began) and Serve (the apps), so an argusd restarted mid-canary
splits the same way; it decides once it read a canary's length of counts (those before its
start are gone).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Mapping

from daemon.core.adapters import find_base
from daemon.core.spec import RolloutStrategy, switches_autoscaling
from daemon.core.states import EventType, ModelState, StrEnum
from daemon.core.traffic import Counts
from daemon.replicas.names import FRONTEND_APP, FRONTEND_DEPLOYMENT, candidate_app_name, model_app_name, probe_id
from daemon.serving.desired import DesiredModel, Transition, once
from daemon.serving.llm_config import LlmSettings, ModelDeployment
from daemon.serving.judge import at_target, base_refs, deployment_failure
from daemon.serving.observe import (AppStatus, DeploymentStatus, Observed, ObservedApp, ObservedDeployment,
                                    startup_failure, summarize_failure)
from daemon.serving.serve_config import Canary, ModelApp, Route, Unavailable

# A candidate not RUNNING this long after it was applied is rolled back. Serve gives up on a
# replica that crashes at start by itself (3 tries, seconds to minutes); this bounds the rest
# (a replica that never gets placed, an engine that hangs while loading). Large models on GPUs
# load in minutes, so the bound is generous.
ROLLOUT_START_TIMEOUT_S = 30 * 60
# What clients are told while a model has no serving generation (first deploy, recreate).
STARTING_RETRY_AFTER_S = 10
# Fewer requests than this on the new generation over its canary compare nothing: at 10 a single
# failure moves its rate by 10 points. The canary then ends in the switch (the probe answered;
# nothing says it is worse), and the SWITCHED message says the rates were not compared.
MIN_CANARY_REQUESTS = 20
# The new generation is rolled back only when its failure rate is above the serving one's by more
# than chance: a one-sided two-proportion z-test, z > 2 (2.6-4 % of healthy canaries of the same
# true rate are rolled back, tests/unit/test_canary.py; "any excess" rolled back 43-49 %).
ROLLBACK_Z = 2.0


@dataclass(frozen=True)
class CanaryEvidence:
    """A model whose new generation takes a canary share: since when (the CANARY_STARTED event
    of its generation), and each of its Serve apps' requests and failures over the intervals
    argusd read since then (None: it read none). `read_from`: when the first of those intervals
    began, `read_seconds`: how long they last together (an argusd restarted mid-canary read only
    the canary's end), `interval_seconds`: how often argusd reads, `watched_from`: when this
    argusd began watching the canary (None: from its start)."""

    started_at: datetime
    counts: Mapping[str, Counts] | None
    read_from: datetime | None = None
    read_seconds: float = 0.0
    interval_seconds: float = 30.0
    watched_from: datetime | None = None

    def give_up_at(self, seconds: int) -> datetime:
        """When a canary whose readings do not cover it is decided on what there is: `seconds`
        after its end, or after this argusd began watching it if that is later."""
        watched = max(self.started_at, self.watched_from or self.started_at)
        return max(self.started_at + timedelta(seconds=2 * seconds), watched + timedelta(seconds=seconds))

    def covers(self, seconds: int) -> bool:
        """The readings span the canary: they began within one interval of its start (the first
        read follows the start by a tick), or last `seconds` together."""
        if self.counts is None or self.read_from is None:
            return False
        late = (self.read_from - self.started_at).total_seconds()
        return late <= self.interval_seconds or self.read_seconds >= seconds


class CanaryStep(StrEnum):
    WAIT = "WAIT"
    SWITCH = "SWITCH"
    ROLL_BACK = "ROLL_BACK"


def _rate(counts: Counts) -> str:
    return f"{counts.failures:.0f} of {counts.requests:.0f} requests failed ({100 * counts.failure_rate:.1f} %)"


def excess_z(new: Counts, old: Counts) -> float | None:
    """How far the new generation's failure rate is above the old one's, in standard errors
    (one-sided two-proportion z-test, pooled). None: either had no request (nothing to compare);
    0.0 when neither or both failed every time (no difference to measure)."""
    if new.requests <= 0 or old.requests <= 0:
        return None
    pooled = (new.failures + old.failures) / (new.requests + old.requests)
    spread = (pooled * (1 - pooled) * (1 / new.requests + 1 / old.requests)) ** 0.5
    return (new.failure_rate - old.failure_rate) / spread if spread > 0 else 0.0


def canary_verdict(seconds: int, evidence: CanaryEvidence, candidate_app: str, serving_app: str | None,
                   generation: int, serving_generation: int | None, now: datetime) -> tuple[CanaryStep, str]:
    """The canary's end: wait until `seconds` passed and argusd's readings cover them (after a
    restart it waits for `seconds` of readings, until give_up_at at most, then decides on what
    it read, saying so); then roll back when the new generation's failure rate is significantly
    above the serving one's (excess_z > ROLLBACK_Z, over the same intervals), else switch. With
    fewer than MIN_CANARY_REQUESTS on the new generation, or none on the serving one, nothing is
    compared, and it switches. The message says which and why (with both rates)."""
    elapsed = (now - evidence.started_at).total_seconds()
    if elapsed < seconds:
        return CanaryStep.WAIT, ""
    partial = ""
    if not evidence.covers(seconds):
        if now < evidence.give_up_at(seconds):
            return CanaryStep.WAIT, (f"waiting for {seconds} s of Ray metrics over the canary "
                                     f"(read {evidence.read_seconds:.0f} s: argusd restarted or could not read them)")
        partial = (f"; over only {evidence.read_seconds:.0f} s of the canary read (argusd restarted or could not "
                   f"read Ray's metrics)")
    if evidence.counts is None:
        return CanaryStep.SWITCH, (f"failure rates not compared: argusd read no Ray metrics over the canary "
                                   f"(waited {elapsed:.0f} s)")
    new = evidence.counts.get(candidate_app, Counts())
    old = evidence.counts.get(serving_app, Counts()) if serving_app is not None else Counts()
    serving = f"generation {serving_generation}" if serving_generation is not None else "the serving generation"
    if new.requests < MIN_CANARY_REQUESTS:
        return CanaryStep.SWITCH, (f"failure rates not compared: generation {generation} got {new.requests:.0f} "
                                   f"requests in its canary, fewer than {MIN_CANARY_REQUESTS}{partial}")
    z = excess_z(new, old)
    if z is None:
        return CanaryStep.SWITCH, (f"failure rates not compared: {serving} got no request in the canary{partial}")
    both = f"generation {generation}: {_rate(new)}; {serving}: {_rate(old)}{partial}"
    if z > ROLLBACK_Z:
        return CanaryStep.ROLL_BACK, (f"its failure rate in the canary was significantly above the serving one's "
                                      f"(z = {z:.1f} > {ROLLBACK_Z:g}; {both})")
    return CanaryStep.SWITCH, f"canary passed ({both})"


def same_engine(a: ModelDeployment, b: ModelDeployment) -> bool:
    """Whether two deployments run the same replicas (their count or autoscaling range aside,
    which Serve changes in place). A switch between a fixed count and autoscaling is not in
    place: Ray 2.60's code version of an app lists its deployments' autoscaling policies
    (`deploy_utils.get_app_code_version`: [] when fixed, [None] when autoscaled), so Serve
    rebuilds the app and stops the old replica before the new one runs; as a new generation it
    starts beside the serving one instead (tests/integration/test_ray_contract.py holds this
    to Ray's own function)."""
    return ((a.model_key, a.model_id, a.llm_config) == (b.model_key, b.model_id, b.llm_config)
            and not switches_autoscaling(a.autoscaling, b.autoscaling))


def other_slot(model_key: str, app_name: str) -> str:
    """The slot of a model's two the app `app_name` does not hold."""
    first = model_app_name(model_key)
    return candidate_app_name(model_key) if app_name == first else first


@dataclass(frozen=True)
class Slots:
    """Where a model's generations are in Serve. `target`: the app its wanted generation goes
    in; `live`: the app the observed front end routes its public id to (None: no generation
    serves); `held`: every app of the model Serve holds now."""

    target: str
    live: str | None
    held: tuple[str, ...]

    @property
    def surge(self) -> bool:
        """The wanted generation starts beside the serving one."""
        return self.live is not None and self.live != self.target


def locate(model: DesiredModel, wanted: ModelDeployment, observed: Observed, surge: bool = True) -> Slots:
    """Where the model's wanted generation goes: the app that already runs it (in place: scaling,
    adapter tables), else beside the live app (surge; `surge` False: in place, recreate), else
    the app of it Serve holds, else the first slot."""
    held = tuple(observed.apps_of(model.model_key))
    live = observed.live_app(model.model_key, model.model_id)
    same = [name for name in held if same_engine(_deployment(observed, name), wanted)]
    if live is not None and live in same:
        return Slots(live, live, held)
    if same:
        return Slots(same[0], live, held)
    if live is not None:
        return Slots(other_slot(model.model_key, live) if surge else live, live, held)
    first = model_app_name(model.model_key)
    return Slots(first if first in held or not held else held[0], None, held)


def _deployment(observed: Observed, name: str) -> ModelDeployment:
    config = observed.apps[name].config
    assert isinstance(config, ModelApp)
    return config.deployment


def live_deployment(observed: Observed, slots: Slots) -> ModelDeployment | None:
    return _deployment(observed, slots.live) if slots.live is not None else None


def judge_candidate(model: DesiredModel, seen: tuple[ObservedApp, ObservedDeployment] | None,
                    app: ObservedApp | None, in_sync: bool, admitted: bool, probes: dict[str, str | None],
                    now: datetime | None, slots: Slots | None = None,
                    canary: CanaryEvidence | None = None) -> Transition | None:
    """A model whose wanted generation starts beside the serving one (the shell's `probes`: model
    key -> None when the candidate answered through its probe id, else the failure; `canary`:
    its canary phase, when one began for this generation)."""
    key, generation, serving = model.model_key, model.generation, model.applied_generation
    beside = f"generation {serving} (serving)" if serving is not None else "the serving generation"
    if admitted or model.state == ModelState.RUNNING:  # a new candidate (RUNNING: Serve lost or changed it)
        message = f"generation {generation} starting beside {beside}"
        return Transition(key, ModelState.DEPLOYING, EventType.ROLLOUT_STARTED,
                          {"generation": generation, "serving_generation": serving, "message": message},
                          error_summary=message, attempted_generation=generation)
    if model.state != ModelState.DEPLOYING:
        return None
    if model.source_problem is not None:
        return rolled_back(model, model.source_problem)
    if in_sync and seen is None and app is not None and app.status == AppStatus.DEPLOY_FAILED:
        return rolled_back(model, f"DEPLOY_FAILED: {app.message}".strip())
    if in_sync and seen is not None:
        failure = deployment_failure(*seen)
        if failure:
            return rolled_back(model, failure)
        share = model.spec.canary
        if canary is not None and share is not None and slots is not None and now is not None:
            step, why = canary_verdict(share[1], canary, slots.target, slots.live, generation, serving, now)
            if step == CanaryStep.ROLL_BACK:
                return rolled_back(model, why)
            return switched(model, why) if step == CanaryStep.SWITCH else None   # the canary's own bound, not the start's
        if ready(model, seen) and key in probes:
            if probes[key] is not None:
                return rolled_back(model, str(probes[key]))
            if share is not None:
                message = f"generation {generation} takes {share[0]} % beside {beside} for {share[1]} s (canary)"
                return Transition(key, ModelState.DEPLOYING, EventType.CANARY_STARTED,
                                  {"generation": generation, "serving_generation": serving, "percent": share[0],
                                   "seconds": share[1], "message": message}, error_summary=message)
            return switched(model)
    if (now is not None and model.applied_at is not None
            and (now - model.applied_at).total_seconds() > ROLLOUT_START_TIMEOUT_S):
        return rolled_back(model, f"not RUNNING within {ROLLOUT_START_TIMEOUT_S} s of being applied")
    reason = startup_failure(seen[1].message or seen[0].message) if seen is not None else None
    if reason is not None and once(model, EventType.REPLICA_START_FAILED, {"message": reason}):
        return Transition(key, ModelState.DEPLOYING, EventType.REPLICA_START_FAILED, {"message": reason},
                          error_summary=f"generation {generation} starting beside {beside}: {reason}")
    return None


def switched(model: DesiredModel, canary: str | None = None) -> Transition:
    generation, serving = model.generation, model.applied_generation
    message = (f"switched from generation {serving} to {generation}" if serving is not None
               else f"switched to generation {generation}") + (f": {canary}" if canary else "")
    payload = {"generation": generation, "from_generation": serving, "message": message}
    if canary:
        payload["canary"] = canary
    return Transition(model.model_key, ModelState.RUNNING, EventType.SWITCHED, payload, applied_generation=generation)


def ready(model: DesiredModel, seen: tuple[ObservedApp, ObservedDeployment]) -> bool:
    """Serve reports the candidate healthy with every replica running: time for the probe. An
    autoscaled candidate with min_replicas 0 is ready at zero replicas: the probe wakes it (a
    model at zero is probed like any other: a bad change must not reach clients)."""
    return (seen[1].status == DeploymentStatus.HEALTHY and seen[0].status == AppStatus.RUNNING
            and at_target(model.spec, seen[1]))


def rolled_back(model: DesiredModel, reason: str) -> Transition:
    message = (f"generation {model.generation} failed: {summarize_failure(reason)}; "
               + (f"serving generation {model.applied_generation}" if model.applied_generation is not None
                  else "the serving generation serves on"))
    return Transition(model.model_key, ModelState.FAILED, EventType.ROLLED_BACK,
                      {"generation": model.generation, "serving_generation": model.applied_generation,
                       "message": message, "reason": reason}, error_summary=message)


def keeps_serving(state: ModelState, slots: Slots) -> bool:
    """A FAILED model whose failed generation started beside a serving one (rolled back): the
    serving generation stays. Read from what Serve routes, not from the store's counters (a
    RUNNING record dropped because a commit landed meanwhile must not cost the serving app).
    A generation that failed in place (recreate, scaling) has nothing beside it: FAILED takes
    it out, as before rollouts."""
    return state == ModelState.FAILED and slots.live is not None and slots.live != slots.target


def frontend_settled(observed: Observed) -> bool:
    """Every front-end replica runs the front end's deployed route table."""
    app = observed.apps.get(FRONTEND_APP)
    dep = app.deployments.get(FRONTEND_DEPLOYMENT) if app is not None else None
    return (app is not None and dep is not None and app.status == AppStatus.RUNNING
            and dep.status == DeploymentStatus.HEALTHY)


@dataclass(frozen=True)
class Arrangement:
    """One model's apps in the next config and its front-end entry. `serving`: the app its
    public id routes to (None: no generation serves; see `unavailable`); `probing`: the
    candidate its probe id reaches (None: no rollout in flight)."""

    apps: tuple[ModelApp, ...]
    serving: str | None
    probing: str | None = None
    unavailable: Unavailable | None = None
    canary: str | None = None    # the candidate that takes canary_percent of the public id's requests
    canary_percent: int = 0


def arrange(model: DesiredModel, state: ModelState, slots: Slots, wanted: ModelDeployment | None,
            observed: Observed, canary_percent: int | None = None) -> Arrangement:
    """The model's apps (without adapter tables) and routes once this tick is recorded.
    `wanted`: what the next config holds for its wanted generation (None: not in the config,
    e.g. FAILED; the live app as it runs when a queued change waits for room).
    `canary_percent`: its candidate is in its canary phase (canary_share)."""
    live = observed.apps[slots.live].config if slots.live is not None else None
    live_app = ModelApp.of(live.deployment, live.name) if isinstance(live, ModelApp) else None
    if keeps_serving(state, slots):  # rolled back: the serving generation alone
        return Arrangement((live_app,), slots.live) if live_app is not None else Arrangement((), None)
    if wanted is None:
        return Arrangement((), None, None, starting(model) if state == ModelState.QUEUED else None)
    if state in (ModelState.FAILED, ModelState.DELETING, ModelState.DELETED):
        # Failed this tick (out of the next config), or being deleted: as applied, not routed.
        return Arrangement((ModelApp.of(wanted, slots.target),), None)
    if live_app is not None and slots.surge and same_engine(wanted, live_app.deployment):
        # A queued change that waits for room: the live app keeps running as it is.
        return Arrangement((live_app,), slots.live)
    target = ModelApp.of(wanted, slots.target)
    seen = observed.server(model.model_key, slots.target)
    if not slots.surge:
        # In place (or no generation serves): the public id reaches the app while it runs a replica.
        if state == ModelState.RUNNING or (seen is not None and model.was_running and state == ModelState.DEPLOYING
                                           and (seen[1].running_replicas > 0 or model.ran_this_generation)):
            serving: str | None = slots.target
        elif (seen is not None and model.was_running and state == ModelState.QUEUED
              and seen[1].running_replicas > 0):
            serving = slots.target
        elif (seen is not None and model.was_running and wanted.may_idle
              and state in (ModelState.QUEUED, ModelState.DEPLOYING)):
            serving = slots.target   # at zero by Serve's decision while its range changes in place: it wakes
        else:
            return Arrangement(_with_drain(target, slots, observed), None, None, starting(model))
        return Arrangement(_with_drain(target, slots, observed), serving)
    # Beside the live app: clients stay on it until the candidate answered and was switched to.
    assert live_app is not None
    switched = state == ModelState.RUNNING and seen is not None and (seen[1].running_replicas > 0
                                                                      or wanted.may_idle)
    if switched:
        return Arrangement((target, live_app), slots.target)
    if state == ModelState.DEPLOYING and canary_percent and seen is not None and (seen[1].running_replicas > 0
                                                                                  or wanted.may_idle):
        # Split only while the candidate runs (or may idle at zero: a request wakes it): one lost
        # or restarting mid-canary would leave its share of clients on an app that cannot answer.
        return Arrangement((target, live_app), slots.live, canary=slots.target, canary_percent=canary_percent)
    return Arrangement((target, live_app), slots.live, slots.target if state == ModelState.DEPLOYING else None)


def canary_share(model: DesiredModel, transitions: list[Transition],
                 canaries: Mapping[str, CanaryEvidence]) -> int | None:
    """The percent of a model's requests its candidate takes after this tick: its canary began
    earlier (the store says so for this generation) or this tick; arrange keeps it only while
    the model is DEPLOYING (a switch or a rollback this tick ends it)."""
    share = model.spec.canary
    began = model.model_key in canaries or any(t.model_key == model.model_key
                                               and t.event_type == EventType.CANARY_STARTED for t in transitions)
    return share[0] if share is not None and began else None


def with_canaries(routes: list[Route], models: list[DesiredModel],
                  arranged: Mapping[str, Arrangement]) -> list[Route]:
    """The routes to a model whose candidate takes a canary share, split: the model's own and its
    adapters' (they follow the split, so both generations see the same mix of requests and their
    failure rates compare like with like; each adapter was loaded and probed on the candidate
    before its canary began). Probe routes and the front end's own answers are left as they are."""
    splitting = {m.model_id: arranged[m.model_key] for m in models
                 if m.model_key in arranged and arranged[m.model_key].canary is not None}
    out = []
    for route in routes:
        arr = splitting.get(route.base_model or route.model_id)
        if arr is None or arr.canary is None or route.probe or route.unavailable is not None or route.app != arr.serving:
            out.append(route)
        else:
            out.append(replace(route, canary=Canary(arr.canary, route.deployment, arr.canary_percent)))
    return out


def starting(model: DesiredModel) -> Unavailable:
    """The front end's own answer while a model has no serving generation."""
    return Unavailable(503, f"model {model.model_id} is starting", STARTING_RETRY_AFTER_S)


def _with_drain(target: ModelApp, slots: Slots, observed: Observed) -> tuple[ModelApp, ...]:
    """The target app, and the model's other app while it drains: the front end routed to it a
    moment ago and not every front-end replica has the new table yet."""
    others = [name for name in slots.held if name != slots.target]
    if not others or frontend_settled(observed):
        return (target,)
    old = observed.apps[others[0]].config
    return (target, ModelApp.of(old.deployment, old.name)) if isinstance(old, ModelApp) else (target,)


def probe_routes(route: Route, candidate: ModelApp) -> Route:
    """The entry that reaches `candidate` under the probe id of `route`'s public id."""
    base = candidate.route()
    return Route(probe_id(route.model_id), base.app, base.deployment, base.max_request_context_length,
                 route.base_model, probe=True)


def rollouts_to_probe(models: list[DesiredModel], observed: Observed,
                      settings: LlmSettings) -> list[tuple[DesiredModel, list[DesiredModel]]]:
    """(model, its RUNNING adapters) whose new generation Serve reports ready beside the serving
    one and the front end reaches by its probe id: the shell asks each through the endpoint,
    and plan switches once they all answered."""
    bases = [m for m in models if not m.spec.is_adapter]
    refs = base_refs(models)
    frontend = observed.frontend()
    out = []
    for model in bases:
        if model.state != ModelState.DEPLOYING or frontend is None:
            continue
        wanted = ModelDeployment.of(model.model_key, model.spec, settings)
        slots = locate(model, wanted, observed, surge=model.spec.rollout_strategy == RolloutStrategy.SURGE)
        seen = observed.server(model.model_key, slots.target)
        route = frontend.route(probe_id(model.model_id))
        app = observed.apps.get(slots.target)
        if (not slots.surge or seen is None or app is None or not isinstance(app.config, ModelApp)
                or not same_engine(app.config.deployment, wanted) or not ready(model, seen)
                or route is None or route.app != slots.target):
            continue
        adapters = [a for a in models if a.spec.is_adapter and a.state == ModelState.RUNNING
                    and (found := find_base(a.spec.base_model or "", a.spec.user_id, refs)) is not None
                    and found.model_id == model.model_id]
        out.append((model, adapters))
    return out

"""Autoscaled models in the reconcile decision, as tables: the Serve config they render (Ray's
autoscaling_config instead of num_replicas, the LLMConfig args unchanged), changes applied in
place, and each model's transition from what Serve reports for a deployment it scales itself
(at zero by its own decision is RUNNING; IDLE and WOKE once each; a wake Serve cannot place is
said in status and in the route's 503; Serve losing the app is still REPLICAS_LOST)."""
import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from daemon.core.spec import ResolvedServingSpec
from daemon.core.states import EventType
from daemon.serving.desired import DesiredModel
from daemon.serving.llm_config import ModelDeployment
from daemon.serving.observe import Observed, ObservedApp, ObservedDeployment
from daemon.serving.plan import plan
from daemon.serving.rollout import rollouts_to_probe
from daemon.serving.serve_config import ModelApp, parse_app, render_app
from helpers import llm_settings, serve_settings

CPU = llm_settings(accelerator_type="cpu")
SERVE = serve_settings(wake_timeout_s=120.0)
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
SCALE0 = {"min_replicas": 0, "max_replicas": 3, "target_ongoing_requests": 16, "scale_down_delay_s": 300}
SCALE1 = {**SCALE0, "min_replicas": 1}
STALLED = ("Deployment 'x' has 1 replicas that have taken more than 30s to be scheduled. This may be due to "
           "waiting for the cluster to auto-scale or for a runtime environment to be installed.")


def spec(scaling=SCALE0, engine=None, gpus=1):
    return ResolvedServingSpec("alice", "a", "alice-1", "alice-1-a", "/private/hf/m",
                               scaling["min_replicas"] if scaling else 2, gpus, engine or {}, autoscaling=scaling)


def model(state="RUNNING", scaling=SCALE0, generation=1, **kw):
    s = kw.pop("spec", None) or spec(scaling)
    kw.setdefault("was_running", state == "RUNNING")
    kw.setdefault("ran_this_generation", state == "RUNNING")
    kw.setdefault("applied_generation", generation if state == "RUNNING" else None)
    return DesiredModel("a", s.model_id, state, generation, s, **kw)


def serve_answer(config, status="HEALTHY", running=0, target=0, message="", app_status="RUNNING"):
    """What Serve reports once it took `config`: every LLMServer deployment with `running`
    replicas, wanting `target` (the front end and lease healthy with theirs)."""
    apps = {}
    for app in config.to_json()["applications"]:
        deps = {}
        for d in app["deployments"]:
            if d["name"].startswith("LLMServer:"):
                deps[d["name"]] = ObservedDeployment(status, message, running, target)
            else:
                deps[d["name"]] = ObservedDeployment("HEALTHY", "", d["num_replicas"], d["num_replicas"])
        apps[app["name"]] = ObservedApp(app_status, "", app, deps, name=app["name"])
    return Observed(apps)


def first_config(m):
    """The config once the model runs (its front-end route in it)."""
    observed = Observed()
    for _ in range(3):
        p = plan([m], observed, capacity=None, settings=CPU, serve=SERVE, now=NOW)
        if p.apply is None:
            return observed
        observed = serve_answer(p.apply, running=1, target=1)
    return observed


def route(config, model_id="alice-1-a"):
    front = next(a for a in config.to_json()["applications"] if a["name"] == "argus")
    return next(r for r in front["deployments"][0]["user_config"]["models"] if r["model_id"] == model_id)


def states(p):
    return [(t.model_key, t.state, t.event_type) for t in p.transitions]


# ---- render -----------------------------------------------------------------------------------

def test_an_autoscaled_model_renders_rays_autoscaling_config_and_the_same_args_as_a_fixed_one():
    auto = ModelApp.of(ModelDeployment.of("a", spec(SCALE0), CPU), "llm-a")
    fixed = ModelApp.of(ModelDeployment.of("a", spec(None), CPU), "llm-a")
    raw = render_app(auto)
    assert raw["deployments"] == [{"name": "LLMServer:a", "autoscaling_config": {
        "min_replicas": 0, "max_replicas": 3, "target_ongoing_requests": 16.0,
        "downscale_delay_s": 300.0, "downscale_to_zero_delay_s": 300.0},
        "graceful_shutdown_timeout_s": 600.0, "graceful_shutdown_wait_loop_s": 2.0}]
    assert raw["args"] == render_app(fixed)["args"]        # byte-stable (the switch is still a new generation: test below)
    assert parse_app(raw) == auto                          # reads back as written
    assert parse_app(render_app(fixed)) == fixed


@pytest.mark.parametrize("before, after", [
    (SCALE0, {**SCALE0, "max_replicas": 5}),                       # the range
    (SCALE0, {**SCALE0, "target_ongoing_requests": 4}),            # the target
])
def test_a_change_of_scaling_is_applied_in_place(before, after):
    observed = first_config(model(scaling=before))
    changed = model("QUEUED", scaling=after, generation=2, was_running=True, applied_generation=1)
    p = plan([changed], observed, capacity=None, settings=CPU, serve=SERVE, now=NOW)
    assert states(p) == [("a", "DEPLOYING", "APPLIED")]           # no ROLLOUT_STARTED: same app, same engine
    names = sorted(a["name"] for a in p.apply.to_json()["applications"])
    assert names == ["argus", "llm-a"]
    assert route(p.apply)["app"] == "llm-a"                         # keeps serving meanwhile


@pytest.mark.parametrize("before, after", [
    (None, SCALE1),                                                # fixed -> autoscaled
    (SCALE1, None),                                                # autoscaled -> fixed
])
def test_a_switch_to_or_from_autoscaling_starts_beside_the_serving_generation(before, after):
    """Serve rebuilds the app for it (its code version lists the autoscaling policies) and would
    stop the old replica first: a new generation instead (test_ray_contract.py, Ray's own code)."""
    observed = first_config(model(scaling=before))
    changed = model("QUEUED", scaling=after, generation=2, was_running=True, applied_generation=1)
    p = plan([changed], observed, capacity=None, settings=CPU, serve=SERVE, now=NOW)
    assert states(p) == [("a", "DEPLOYING", "ROLLOUT_STARTED")]
    names = sorted(a["name"] for a in p.apply.to_json()["applications"])
    assert names == ["argus", "llm-a", "llm-a-b"]
    assert route(p.apply)["app"] == "llm-a"                         # keeps serving meanwhile


def test_a_model_at_zero_stays_routed_while_its_range_changes_in_place():
    """Idle (no replica) while argus applies a new range: its requests are still held for the
    wake, never answered "starting"."""
    observed = first_config(model())
    at_zero = Observed({name: (dataclasses.replace(app, deployments={
        d: ObservedDeployment("HEALTHY", "", 0, 0) if d.startswith("LLMServer:") else dep
        for d, dep in app.deployments.items()})) for name, app in observed.apps.items()})
    wider = {**SCALE0, "max_replicas": 5}
    for state in ("QUEUED", "DEPLOYING"):
        changed = model(state, scaling=wider, generation=2, was_running=True, applied_generation=1)
        p = plan([changed], at_zero, capacity=None, settings=CPU, serve=SERVE, now=NOW)
        assert (route(p.apply)["app"], route(p.apply)["hold_s"]) == ("llm-a", 120.0), state


# ---- judge ------------------------------------------------------------------------------------

@pytest.mark.parametrize("scaling, status, running, target, expected", [
    (SCALE0, "HEALTHY", 0, 0, [("a", "RUNNING", "RUNNING")]),      # min 0: no cold start at deploy
    (SCALE0, "UPDATING", 0, 0, []),
    (SCALE1, "HEALTHY", 0, 1, []),                                  # min 1: waits for its replica
    (SCALE1, "HEALTHY", 2, 2, [("a", "RUNNING", "RUNNING")]),      # load already took it above min
    (None, "HEALTHY", 3, 3, []),                                    # fixed: exactly num_replicas (2)
])
def test_a_first_deploy_is_running_at_min_replicas(scaling, status, running, target, expected):
    applied = plan([model("QUEUED", scaling)], Observed(), capacity=None, settings=CPU, serve=SERVE).apply
    p = plan([model("DEPLOYING", scaling)], serve_answer(applied, status, running, target),
             capacity=None, settings=CPU, serve=SERVE, now=NOW)
    if expected:   # recorded once the front end routes it (the config that does goes out first)
        assert states(p) == [] and route(p.apply)["app"] == "llm-a"
        p = plan([model("DEPLOYING", scaling)], serve_answer(p.apply, status, running, target),
                 capacity=None, settings=CPU, serve=SERVE, now=NOW)
    assert states(p) == expected


# (scaling, Serve's status, running, target, last IDLE/WOKE, waking since (s before now), event, payload part)
RUNNING_TABLE = [
    (SCALE0, "HEALTHY", 0, 0, None, None, "IDLE", {}),                          # scaled to zero
    (SCALE0, "DOWNSCALING", 0, 0, None, None, "IDLE", {}),                      # the last one stopping
    (SCALE0, "HEALTHY", 0, 0, "IDLE", None, None, None),                        # once
    (SCALE0, "UPSCALING", 0, 1, "IDLE", 4, None, None),                         # waking: not lost
    (SCALE0, "HEALTHY", 1, 1, "IDLE", 42, "WOKE", {"wake_s": 42.0, "running_replicas": 1}),
    (SCALE0, "HEALTHY", 1, 1, "IDLE", None, "WOKE", {"wake_s": None}),         # argusd restarted mid-wake
    (SCALE0, "HEALTHY", 1, 1, "WOKE", None, None, None),                        # once
    (SCALE0, "HEALTHY", 1, 1, None, 30, "WOKE", {"wake_s": 30.0}),             # woken before any IDLE
    (SCALE0, "HEALTHY", 1, 1, "WOKE", 30, None, None),                          # once, also then
    (SCALE1, "HEALTHY", 1, 1, None, None, None, None),                          # min 1 running: nothing
    (SCALE0, "UPSCALING", 2, 3, "WOKE", None, None, None),                      # scaled up by load: nothing
    (SCALE1, "HEALTHY", 0, 1, None, None, "REPLICAS_LOST", {}),                 # min 1 at zero: lost
    (None, "HEALTHY", 0, 2, None, None, "REPLICAS_LOST", {}),                   # fixed at zero: lost
    (SCALE0, "UNHEALTHY", 0, 1, "IDLE", 5, "DEGRADED", {}),                     # the wake's replica fails
]


@pytest.mark.parametrize("scaling, status, running, target, last, since, event, payload", RUNNING_TABLE)
def test_a_running_autoscaled_model_follows_serve(scaling, status, running, target, last, since, event, payload):
    observed = first_config(model(scaling=scaling))
    config_now = plan([model(scaling=scaling)], observed, capacity=None, settings=CPU, serve=SERVE, now=NOW)
    assert config_now.noop
    reported = Observed({name: (dataclasses.replace(app, deployments={
        d: (ObservedDeployment(status, "boom" if status == "UNHEALTHY" else "", running, target)
            if d.startswith("LLMServer:") else dep) for d, dep in app.deployments.items()}))
        for name, app in observed.apps.items()})
    m = model(scaling=scaling, last_scale=EventType(last) if last else None,
              waking_since=NOW - timedelta(seconds=since) if since is not None else None)
    p = plan([m], reported, capacity=None, settings=CPU, serve=SERVE, now=NOW)
    if event is None:
        assert states(p) == []
    else:
        (t,) = p.transitions
        assert t.event_type == event
        assert payload.items() <= t.payload.items()


def test_a_model_serve_lost_is_lost_even_if_it_may_idle():
    observed = first_config(model())
    gone = Observed({n: a for n, a in observed.apps.items() if n != "llm-a"})
    p = plan([model()], gone, capacity=None, settings=CPU, serve=SERVE, now=NOW)
    assert states(p) == [("a", "DEPLOYING", "REPLICAS_LOST")]


def test_the_route_of_a_model_that_may_idle_holds_requests_for_the_wake_timeout():
    observed = first_config(model())
    assert route(plan([model()], Observed(), capacity=None, settings=CPU, serve=SERVE).apply)["unavailable"]
    config = ModelApp.of(ModelDeployment.of("a", spec(SCALE0), CPU), "llm-a")
    held = [r for r in observed.frontend().routes if r.model_id == "alice-1-a"]
    assert [(r.app, r.hold_s) for r in held] == [(config.name, 120.0)]
    fixed = first_config(model(scaling=SCALE1))
    assert [r.hold_s for r in fixed.frontend().routes] == [None]   # min 1: always a replica


def test_a_wake_serve_cannot_place_is_said_once_and_answered_503_with_why():
    observed = first_config(model(spec=spec(SCALE0, gpus=2)))
    stalled = Observed({name: (dataclasses.replace(app, deployments={
        d: ObservedDeployment("UPSCALING", STALLED, 0, 1) if d.startswith("LLMServer:") else dep
        for d, dep in app.deployments.items()})) for name, app in observed.apps.items()})
    m = model(spec=spec(SCALE0, gpus=2), last_scale=EventType.IDLE)
    p = plan([m], stalled, capacity=None, settings=CPU, serve=SERVE, now=NOW)
    (t,) = p.transitions
    message = "model alice-1-a cannot wake: it needs 2 CPUs and none are free"
    assert (t.state, t.event_type, t.payload, t.error_summary) == ("RUNNING", "PENDING_RESOURCES",
                                                                     {"message": message}, message)
    assert route(p.apply)["unavailable"] == {"status": 503, "message": message, "retry_after": 30}
    again = plan([dataclasses.replace(m, last_event=("PENDING_RESOURCES", {"message": message}))], stalled,
                 capacity=None, settings=CPU, serve=SERVE, now=NOW)
    assert states(again) == []
    # Serve gave up the wake and is back at zero: IDLE again, and the stale reason goes.
    idle = Observed({name: (dataclasses.replace(app, deployments={
        d: ObservedDeployment("HEALTHY", "", 0, 0) if d.startswith("LLMServer:") else dep
        for d, dep in app.deployments.items()})) for name, app in observed.apps.items()})
    back = plan([dataclasses.replace(m, last_event=("PENDING_RESOURCES", {"message": message}))], idle,
                capacity=None, settings=CPU, serve=SERVE, now=NOW)
    (t,) = back.transitions
    assert (t.state, t.event_type, t.error_summary) == ("RUNNING", "IDLE", None)


def test_a_new_generation_of_a_model_at_zero_is_probed_before_clients_move():
    """The candidate is ready at zero replicas (min 0); the probe's request wakes it."""
    observed = first_config(model())
    changed = model("QUEUED", spec=spec(SCALE0, engine={"max_model_len": 512}), generation=2,
                    was_running=True, applied_generation=1)
    p = plan([changed], observed, capacity=None, settings=CPU, serve=SERVE, now=NOW)
    assert states(p) == [("a", "DEPLOYING", "ROLLOUT_STARTED")]
    beside = serve_answer(p.apply, "HEALTHY", 0, 0)
    deploying = dataclasses.replace(changed, state="DEPLOYING")
    p2 = plan([deploying], beside, capacity=None, settings=CPU, serve=SERVE, now=NOW)
    probing = serve_answer(p2.apply or p.apply, "HEALTHY", 0, 0)
    assert [m.model_key for m, _ in rollouts_to_probe([deploying], probing, CPU)] == ["a"]
    assert route(p2.apply or p.apply, "alice-1-a@next")["hold_s"] == 120.0


def test_claiming_the_lease_does_not_call_a_model_at_zero_lost():
    from daemon.serving.judge import lost_while_claiming

    observed = first_config(model())
    at_zero = Observed({name: (dataclasses.replace(app, deployments={
        d: ObservedDeployment("HEALTHY", "", 0, 0) if d.startswith("LLMServer:") else dep
        for d, dep in app.deployments.items()})) for name, app in observed.apps.items()})
    assert lost_while_claiming([model()], at_zero) == []
    assert [t.event_type for t in lost_while_claiming([model(scaling=SCALE1)], at_zero)] == ["REPLICAS_LOST"]
    assert [t.event_type for t in lost_while_claiming([model()], Observed())] == ["REPLICAS_LOST"]

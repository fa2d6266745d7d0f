"""A rolled-back model (generation 2 failed beside generation 1, which serves on) never
vanishes from the endpoint: the rollback records how generation 1 runs, and when Serve loses
it (Ray restarted, its app deleted behind argus's back, every replica dead) argus deploys it
again, answers 503 "starting" meanwhile (never 404) and says so; its GPUs count for its
owner's quota and as in flight while it comes back. Tables of the pure plan, Serve's side as
it would report each config (test_reconcile_plan.served)."""
import json
from dataclasses import replace

import pytest

from daemon.core.quota import GpuQuota
from daemon.serving.observe import Observed
from daemon.serving.plan import plan
from test_reconcile_plan import GPU, nodes, served
from test_rollout_plan import ID, SERVE, T0, apps, front, model, started, states, step, with_status


def rolled_back(gen1):
    """Generation 2 failed beside generation 1: (the rollback's transition, what Serve runs after it)."""
    _, starting = started(gen1)
    bad = with_status(starting, "llm-a-b", "DEPLOY_FAILED", "DEPLOY_FAILED", running=0, message="engine died")
    p = step([model(2, "DEPLOYING", seqs=8)], bad)
    assert states(p) == [("a", "FAILED", "ROLLED_BACK")]
    return p.transitions[0], served(p.apply)


def failed(t, **kw):
    """The model as the store hands it over after the rollback `t` (and the events since)."""
    return replace(model(2, "FAILED", seqs=8, **kw), serving=t.serving)


@pytest.fixture
def gen1():
    from test_rollout_plan import settled
    return settled([model()])


def test_the_rollback_records_how_the_serving_generation_runs(gen1):
    t, after = rolled_back(gen1)
    assert t.records_serving and t.serving is not None
    assert t.serving.deployment == gen1.apps["llm-a"].config.deployment   # as Serve ran it: num_replicas too
    assert t.serving.failure == t.error_summary == "generation 2 failed: DEPLOY_FAILED: engine died; serving generation 1"
    assert step([failed(t)], after).noop                                   # served: nothing to do


def lost(after, how):
    if how == "Ray restarted":
        return Observed()
    if how == "its app deleted":   # the front end still routes to it
        return Observed({name: app for name, app in after.apps.items() if name != "llm-a"})
    if how == "the front end deleted":
        return Observed({name: app for name, app in after.apps.items() if name != "argus"})
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["Ray restarted", "its app deleted"])
def test_a_serving_generation_serve_lost_is_deployed_again_and_clients_get_503_meanwhile(gen1, how):
    t, after = rolled_back(gen1)
    p = step([failed(t)], lost(after, how))
    assert states(p) == [("a", "FAILED", "REPLICAS_LOST")]
    assert p.transitions[0].payload == {"message": "serving generation 1: Serve has no replica of it; redeploying"}
    assert p.transitions[0].error_summary == f"{t.serving.failure}: Serve has no replica of it; redeploying"
    assert not p.transitions[0].records_serving                            # the record stays as it is
    # Generation 1 exactly as it ran (not the failed generation 2); clients get 503 "starting", not 404.
    app = next(a for a in p.apply.to_json()["applications"] if a["name"] == "llm-a")
    assert app == gen1.apps["llm-a"].deployed
    assert apps(p.apply) == {"llm-a": None} and front(p.apply) == {ID: ("", False, 503)}
    said = failed(t, last_event=(p.transitions[0].event_type, p.transitions[0].payload))
    # Starting: said once.
    starting = with_status(served(p.apply), "llm-a", "UPDATING", "DEPLOYING", running=0)
    q = step([said], starting)
    assert states(q) == [] and q.apply is None
    # A replica runs: the public id goes back to it; once the front end routes it, it serves again.
    r = step([said], served(p.apply))
    assert states(r) == [] and front(r.apply) == {ID: ("llm-a", False, None)}
    s = step([said], served(r.apply))
    assert states(s) == [("a", "FAILED", "RECOVERED")]
    assert s.transitions[0].payload == {"message": "serving generation 1 serves again"}
    assert s.transitions[0].error_summary == t.serving.failure
    assert s.apply is None
    # A commit that fixes the spec rolls out beside it as usual.
    fix = step([model(3, "QUEUED", seqs=4)], served(r.apply))
    assert states(fix) == [("a", "DEPLOYING", "ROLLOUT_STARTED")]
    assert apps(fix.apply) == {"llm-a": None, "llm-a-b": 4}


def test_a_lost_front_end_entry_routes_the_serving_generation_again_without_restarting_it(gen1):
    t, after = rolled_back(gen1)
    p = step([failed(t)], lost(after, "the front end deleted"))
    assert states(p) == []
    assert front(p.apply) == {ID: ("llm-a", False, None)}
    assert next(a for a in p.apply.to_json()["applications"] if a["name"] == "llm-a") == after.apps["llm-a"].deployed


def test_every_replica_of_the_serving_generation_dead_is_said_once_and_serve_replaces_them(gen1):
    t, after = rolled_back(gen1)
    dead = with_status(after, "llm-a", "UNHEALTHY", "DEPLOYING", running=0, message="replica died")
    p = step([failed(t)], dead)
    assert states(p) == [("a", "FAILED", "REPLICAS_LOST")]
    assert p.transitions[0].payload["message"].startswith(
        "serving generation 1: Serve has no running replica of it; Serve is starting one")
    assert p.apply is None                                                 # its app and route stay as they are
    said = failed(t, last_event=(p.transitions[0].event_type, p.transitions[0].payload))
    assert step([said], dead).noop
    assert states(step([said], after)) == [("a", "FAILED", "RECOVERED")]


def test_a_generation_that_fails_in_place_records_that_nothing_serves(gen1):
    p = step([model(2, "QUEUED", seqs=8, strategy="recreate")], gen1)
    bad = with_status(served(p.apply), "llm-a", "DEPLOY_FAILED", "DEPLOY_FAILED", running=1, message="engine died")
    q = step([model(2, "DEPLOYING", seqs=8, strategy="recreate")], bad)
    (t,) = q.transitions
    assert (t.event_type, t.records_serving, t.serving) == ("FAILED", True, None)
    # Nothing to bring back after a Ray restart: FAILED took it out.
    gone = step([model(2, "FAILED", seqs=8, strategy="recreate")], Observed())
    assert states(gone) == [] and apps(gone.apply) == {}


def test_a_failed_queued_change_whose_folder_is_gone_keeps_what_serves_recorded(gen1):
    queued = replace(model(2, "QUEUED", seqs=8), source_problem="model_source /private/hf/m2 does not exist")
    p = step([queued], gen1)
    (t,) = p.transitions
    assert (t.event_type, t.records_serving) == ("FAILED", True)
    assert t.serving.deployment == gen1.apps["llm-a"].config.deployment
    assert p.apply is None                                                 # generation 1 serves on as it is


def gpu_plan(models, observed, free, quotas=None):
    return plan(models, observed, capacity=nodes(*free), settings=GPU, serve=SERVE, now=T0, quotas=quotas)


def gpu_rolled_back(replicas=1):
    """On GPUs: generation 1 (`replicas` of 1 GPU) serves, generation 2 failed beside it."""
    observed = Observed()
    for _ in range(4):
        p = gpu_plan([model(replicas=replicas)], observed, (4,))
        if p.apply is None:
            break
        observed = served(p.apply)
    p = gpu_plan([model(2, "QUEUED", seqs=8, replicas=replicas)], observed, (4,))
    bad = with_status(served(p.apply), "llm-a-b", "DEPLOY_FAILED", "DEPLOY_FAILED", running=0, message="x")
    q = gpu_plan([model(2, "DEPLOYING", seqs=8, replicas=replicas)], bad, (4,))
    (t,) = q.transitions
    return t, served(q.apply)


def other(key="b", user="alice", state="QUEUED"):
    b = model(1, state, applied=None)
    spec = replace(b.spec, user_id=user, model_id_suffix=key, model_id=f"{user}-202601010000-{key}")
    return replace(b, model_key=key, model_id=spec.model_id, spec=spec)


def test_the_gpus_of_a_serving_generation_coming_back_are_in_flight():
    t, _ = gpu_rolled_back()
    # Ray restarted: one GPU free, which generation 1 of a takes as it comes back; b waits.
    p = gpu_plan([replace(model(2, "FAILED", seqs=8), serving=t.serving), other()], Observed(), (1,))
    assert sorted(states(p)) == [("a", "FAILED", "REPLICAS_LOST"), ("b", "QUEUED", "PENDING_RESOURCES")]
    assert apps(p.apply) == {"llm-a": None}


@pytest.mark.parametrize("user, waits", [("alice", True), ("carol", False)])
def test_a_serving_generation_beside_a_failure_counts_for_its_owners_quota(user, waits):
    t, after = gpu_rolled_back(replicas=2)
    quota = lambda who: GpuQuota(2, "limits.max_gpus_per_user")  # noqa: E731
    p = gpu_plan([replace(model(2, "FAILED", seqs=8, replicas=2), serving=t.serving), other(user=user)], after, (4,),
                 quotas=quota)
    expected = ("QUEUED", "QUOTA_EXCEEDED") if waits else ("DEPLOYING", "APPLIED")
    assert [(s, e) for k, s, e in states(p) if k == "b"] == [expected]
    if waits:
        assert "alice's other models reserve 2" in p.transitions[0].payload["message"]


def test_a_restored_generation_drains_with_the_configs_bound_though_the_store_keeps_none(gen1):
    """The store keeps what the serving generation's replicas run, not the drain bound (a
    setting of the platform, not of the model): restored, it gets the config's bound again,
    not Ray's 20 s."""
    from daemon.serving.desired import Serving
    from daemon.serving.restore import restore
    from daemon.serving.serve_config import render_app
    t, after = rolled_back(gen1)
    stored = Serving.from_dict("a", json.loads(json.dumps(t.serving.to_dict())))   # through the store's JSON
    model_back = replace(failed(t), serving=stored)
    arranged = restore(model_back, "llm-a", Observed(), 600.0)
    (deployment,) = render_app(arranged.apps[0])["deployments"]
    assert (deployment["graceful_shutdown_timeout_s"], deployment["graceful_shutdown_wait_loop_s"]) == (600.0, 2.0)

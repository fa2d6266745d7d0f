"""Rollouts as tables of the pure plan: a change that needs new replicas starts beside the
serving generation (surge), is asked through its probe id, takes the public id only once it
answered (switch), and the old app goes once every front-end replica routes to the new one
(drain); a candidate that fails never takes traffic (rollback). Serve's side is what it would
report once it took each plan's config (test_reconcile_plan.served), with the candidate's
status set per step."""
from datetime import datetime, timedelta, timezone

import pytest

from daemon.core.adapters import AdapterInfo
from daemon.core.spec import ResolvedServingSpec
from daemon.replicas.names import probe_id
from daemon.serving.desired import DesiredModel
from daemon.serving.observe import Observed, ObservedApp, ObservedDeployment
from daemon.serving.plan import plan
from daemon.serving.rollout import ROLLOUT_START_TIMEOUT_S, rollouts_to_probe
from helpers import llm_settings, serve_settings
from test_reconcile_plan import served

CPU = llm_settings(accelerator_type="cpu")
SERVE = serve_settings()
ID = "alice-202601010000-a"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def model(generation=1, state="RUNNING", applied=1, seqs=None, replicas=1, strategy=None, last_event=None,
          applied_at=T0, adapters=None):
    spec = ResolvedServingSpec(user_id="alice", model_id_suffix="a", model_id_prefix="alice-202601010000",
                               model_id=ID, model_source="/private/hf/m", num_replicas=replicas, gpus_per_replica=1,
                               engine_kwargs={"max_num_seqs": seqs} if seqs else {}, adapters=adapters,
                               rollout={"strategy": strategy} if strategy else None)
    return DesiredModel("a", ID, state, generation, spec, None, last_event, was_running=applied is not None,
                        ran_this_generation=applied == generation, applied_generation=applied, applied_at=applied_at)


def adapter(state="RUNNING"):
    spec = ResolvedServingSpec("bob", "tutor", "bob-202601010010", "bob-202601010010-tutor", "/private/users/bob/t",
                               0, 0, {}, base_model=ID)
    return DesiredModel("k-ad", spec.model_id, state, 1, spec, adapter=AdapterInfo(8, None))


def step(models, observed, **kw):
    return plan(models, observed, capacity=None, settings=CPU, serve=SERVE, now=kw.pop("now", T0), **kw)


def states(p):
    return [(t.model_key, t.state, t.event_type) for t in p.transitions]


def apps(config):
    """Model app name -> its engine kwargs' max_num_seqs (None: unset)."""
    return {a["name"]: a["args"]["llm_config"]["engine_kwargs"].get("max_num_seqs")
            for a in config.to_json()["applications"] if a["name"].startswith("llm-")}


def front(config):
    """Front-end entries: model id -> (app, probe, unavailable status)."""
    argus = next(a for a in config.to_json()["applications"] if a["name"] == "argus")
    return {r["model_id"]: (r["app"], r.get("probe", False), (r.get("unavailable") or {}).get("status"))
            for r in argus["deployments"][0]["user_config"]["models"]}


def with_status(observed, app, dep_status="HEALTHY", app_status="RUNNING", running=None, message=""):
    """`observed` with one app's status replaced (its deployment's too)."""
    old = observed.apps[app]
    deps = {name: ObservedDeployment(dep_status, message, d.running_replicas if running is None else running)
            for name, d in old.deployments.items()}
    return Observed({**observed.apps, app: ObservedApp(app_status, message, old.deployed, deps, name=app)})


def settled(models):
    observed = Observed()
    for _ in range(4):
        p = step(models, observed)
        if p.apply is None:
            return observed
        observed = served(p.apply)
    raise AssertionError("did not settle")


@pytest.fixture
def gen1():
    """Generation 1 serves from the first slot."""
    return settled([model()])


def started(gen1, **kw):
    """Generation 2 (max_num_seqs 8) applied beside generation 1; Serve is starting it."""
    p = step([model(2, "QUEUED", seqs=8, **kw)], gen1)
    return p, with_status(served(p.apply), "llm-a-b", "UPDATING", "DEPLOYING", running=0)


def test_a_change_starts_beside_the_serving_generation_which_keeps_the_public_id(gen1):
    p, _ = started(gen1)
    assert states(p) == [("a", "DEPLOYING", "ROLLOUT_STARTED")]
    assert p.transitions[0].error_summary == "generation 2 starting beside generation 1 (serving)"
    assert apps(p.apply) == {"llm-a": None, "llm-a-b": 8}
    # The serving app goes back exactly as it runs: Serve restarts nothing of it.
    serving = next(a for a in p.apply.to_json()["applications"] if a["name"] == "llm-a")
    assert serving == gen1.apps["llm-a"].deployed
    assert front(p.apply) == {ID: ("llm-a", False, None), probe_id(ID): ("llm-a-b", True, None)}


def test_a_starting_candidate_changes_nothing_and_is_not_probed(gen1):
    _, observed = started(gen1)
    p = step([model(2, "DEPLOYING", seqs=8)], observed)
    assert p.noop
    assert rollouts_to_probe([model(2, "DEPLOYING", seqs=8)], observed, CPU) == []


def test_a_healthy_candidate_waits_for_its_probe_then_switches_and_drains(gen1):
    _, starting = started(gen1)
    ready = with_status(starting, "llm-a-b", running=1)
    deploying = model(2, "DEPLOYING", seqs=8)
    assert [m.model_key for m, _ in rollouts_to_probe([deploying], ready, CPU)] == ["a"]
    assert step([deploying], ready).noop                                      # no answer yet: no switch
    assert step([deploying], ready, rollout_probes={}).noop
    p = step([deploying], ready, rollout_probes={"a": None})
    assert states(p) == [("a", "RUNNING", "SWITCHED")]
    assert p.transitions[0].payload["message"] == "switched from generation 1 to 2"
    assert p.transitions[0].applied_generation == 2
    assert apps(p.apply) == {"llm-a": None, "llm-a-b": 8}                    # the old one drains
    assert front(p.apply) == {ID: ("llm-a-b", False, None)}
    running = model(2, "RUNNING", applied=2, seqs=8)
    # Not every front-end replica has the new table yet: the old app stays.
    updating = with_status(served(p.apply), "argus", "UPDATING", "DEPLOYING")
    assert step([running], updating).noop
    # They all have it: the old app goes (Serve's graceful shutdown lets its requests finish).
    q = step([running], served(p.apply))
    assert states(q) == [] and apps(q.apply) == {"llm-a-b": 8}
    assert front(q.apply) == {ID: ("llm-a-b", False, None)}
    assert step([running], served(q.apply)).noop


def test_the_next_change_goes_back_to_the_first_slot_never_a_third_app(gen1):
    _, starting = started(gen1)
    switched = step([model(2, "DEPLOYING", seqs=8)], with_status(starting, "llm-a-b", running=1), rollout_probes={"a": None})
    now = served(step([model(2, applied=2, seqs=8)], served(switched.apply)).apply)
    p = step([model(3, "QUEUED", applied=2, seqs=4)], now)
    assert states(p) == [("a", "DEPLOYING", "ROLLOUT_STARTED")]
    assert apps(p.apply) == {"llm-a": 4, "llm-a-b": 8}
    assert front(p.apply)[ID] == ("llm-a-b", False, None)


def test_a_second_commit_during_a_rollout_replaces_the_candidate(gen1):
    _, starting = started(gen1)
    p = step([model(3, "QUEUED", seqs=16)], starting)
    assert states(p) == [("a", "DEPLOYING", "ROLLOUT_STARTED")]
    assert apps(p.apply) == {"llm-a": None, "llm-a-b": 16}
    assert front(p.apply)[ID] == ("llm-a", False, None)


def test_reverting_during_a_rollout_drops_the_candidate_and_keeps_serving(gen1):
    _, starting = started(gen1)
    p = step([model(3, "QUEUED")], starting)
    assert states(p) == [("a", "DEPLOYING", "APPLIED")]                     # in place: it already runs
    assert apps(p.apply) == {"llm-a": None}
    assert front(p.apply) == {ID: ("llm-a", False, None)}


START_FAILED = "A replica failed to start with exception. Retrying 2 more time(s). Error:\nValueError: max_model_len"


@pytest.mark.parametrize("cause, observe, probes, now, reason", [
    ("deployment failed", dict(dep_status="DEPLOY_FAILED", app_status="DEPLOY_FAILED", message="engine died"),
     None, T0, "DEPLOY_FAILED: engine died"),
    ("unhealthy", dict(dep_status="UNHEALTHY", app_status="RUNNING", message="engine died"),
     None, T0, "UNHEALTHY: engine died"),
    ("probe refused", dict(running=1), {"a": "the new generation answered 400: bad"}, T0, "the new generation answered 400: bad"),
    ("not up in time", dict(dep_status="UPDATING", app_status="DEPLOYING", running=0),
     None, T0 + timedelta(seconds=ROLLOUT_START_TIMEOUT_S + 1), f"not RUNNING within {ROLLOUT_START_TIMEOUT_S} s"),
])
def test_a_failed_candidate_is_rolled_back_and_the_serving_generation_stays(gen1, cause, observe, probes, now, reason):
    _, starting = started(gen1)
    observed = with_status(starting, "llm-a-b", **observe)
    deploying = model(2, "DEPLOYING", seqs=8)
    p = step([deploying], observed, rollout_probes=probes, now=now)
    assert states(p) == [("a", "FAILED", "ROLLED_BACK")]
    assert p.transitions[0].error_summary.startswith(f"generation 2 failed: {reason}")
    assert p.transitions[0].error_summary.endswith("; serving generation 1")
    assert apps(p.apply) == {"llm-a": None}                                  # the candidate's replicas go
    assert front(p.apply) == {ID: ("llm-a", False, None)}
    # FAILED, yet the serving generation stays in every later config.
    failed = model(2, "FAILED", seqs=8)
    assert step([failed], served(p.apply)).noop
    # A commit that fixes the spec rolls out from it as usual.
    fix = step([model(3, "QUEUED", seqs=4)], served(p.apply))
    assert states(fix) == [("a", "DEPLOYING", "ROLLOUT_STARTED")]
    assert apps(fix.apply) == {"llm-a": None, "llm-a-b": 4}


def test_a_replica_start_failure_being_retried_is_told_with_both_generations(gen1):
    _, starting = started(gen1)
    observed = with_status(starting, "llm-a-b", "UPDATING", "DEPLOYING", running=0, message=START_FAILED)
    p = step([model(2, "DEPLOYING", seqs=8)], observed)
    assert states(p) == [("a", "DEPLOYING", "REPLICA_START_FAILED")]
    assert p.transitions[0].error_summary.startswith("generation 2 starting beside generation 1 (serving): A replica")
    again = model(2, "DEPLOYING", seqs=8, last_event=(p.transitions[0].event_type, p.transitions[0].payload))
    assert step([again], observed).noop                                      # recorded once


def test_scaling_stays_in_place(gen1):
    p = step([model(2, "QUEUED", replicas=2)], gen1)
    assert states(p) == [("a", "DEPLOYING", "APPLIED")]
    assert apps(p.apply) == {"llm-a": None}
    assert front(p.apply) == {ID: ("llm-a", False, None)}


def test_recreate_replaces_in_place_and_answers_503_while_nothing_serves(gen1):
    p = step([model(2, "QUEUED", seqs=8, strategy="recreate")], gen1)
    assert states(p) == [("a", "DEPLOYING", "APPLIED")]
    assert apps(p.apply) == {"llm-a": 8}
    assert front(p.apply) == {ID: ("llm-a", False, None)}                   # the old replica still serves
    gone = with_status(served(p.apply), "llm-a", "UPDATING", "DEPLOYING", running=0)
    q = step([model(2, "DEPLOYING", seqs=8, strategy="recreate")], gone)
    assert front(q.apply) == {ID: ("", False, 503)}


def test_a_first_deploy_answers_503_until_it_runs():
    p = step([model(1, "QUEUED", applied=None)], Observed())
    assert front(p.apply) == {ID: ("", False, 503)}
    argus = next(a for a in p.apply.to_json()["applications"] if a["name"] == "argus")
    entry = argus["deployments"][0]["user_config"]["models"][0]["unavailable"]
    assert entry == {"status": 503, "message": f"model {ID} is starting", "retry_after": 10}
    q = step([model(1, "DEPLOYING", applied=None)], served(p.apply))
    assert states(q) == []   # routed now; RUNNING once every front-end replica routes it
    assert front(q.apply) == {ID: ("llm-a", False, None)}
    r = step([model(1, "DEPLOYING", applied=None)], served(q.apply))
    assert states(r) == [("a", "RUNNING", "RUNNING")] and r.apply is None


def test_argusd_killed_mid_rollout_resumes_from_the_store_and_serve(gen1):
    # Killed after the candidate was applied and recorded: the next argusd plans the same.
    first, starting = started(gen1)
    assert step([model(2, "DEPLOYING", seqs=8)], starting).noop
    # Killed after the switch was applied but before it was recorded: Serve routes to the new
    # generation, the store still says DEPLOYING; it is recorded RUNNING and the old app drains.
    ready = with_status(starting, "llm-a-b", running=1)
    switch = step([model(2, "DEPLOYING", seqs=8)], ready, rollout_probes={"a": None})
    p = step([model(2, "DEPLOYING", seqs=8)], served(switch.apply))
    assert states(p) == [("a", "RUNNING", "RUNNING")] and p.transitions[0].applied_generation == 2
    assert apps(p.apply) == {"llm-a-b": 8}
    assert front(p.apply) == {ID: ("llm-a-b", False, None)}


def test_ray_restarted_mid_rollout_deploys_the_wanted_generation_directly(gen1):
    p = step([model(2, "DEPLOYING", seqs=8)], Observed())
    assert apps(p.apply) == {"llm-a": 8}                                     # nothing serves: no surge
    assert front(p.apply) == {ID: ("", False, 503)}
    q = step([model(2, "DEPLOYING", seqs=8)], served(p.apply))
    r = step([model(2, "DEPLOYING", seqs=8)], served(q.apply))
    assert states(q) == [] and states(r) == [("a", "RUNNING", "RUNNING")]


def test_adapters_stay_on_the_serving_generation_are_probed_on_the_new_one_and_follow_the_switch():
    policy = {"max_rank": 8, "max_loaded": 2, "users": ["bob"]}
    base1 = model(adapters=policy)
    observed = settled([base1, adapter()])
    base2 = model(2, "QUEUED", seqs=8, adapters=policy)
    p = step([base2, adapter()], observed)
    assert states(p) == [("a", "DEPLOYING", "ROLLOUT_STARTED")]            # the adapter stays RUNNING
    tables = {a["name"]: a["deployments"][0]["user_config"]["adapters"] for a in p.apply.to_json()["applications"]
              if a["name"].startswith("llm-")}
    assert tables["llm-a"] == tables["llm-a-b"] and list(tables["llm-a"]) == ["bob-202601010010-tutor"]
    assert front(p.apply) == {ID: ("llm-a", False, None), probe_id(ID): ("llm-a-b", True, None),
                              "bob-202601010010-tutor": ("llm-a", False, None),
                              probe_id("bob-202601010010-tutor"): ("llm-a-b", True, None)}
    deploying = model(2, "DEPLOYING", seqs=8, adapters=policy)
    ready = served(p.apply)
    (pair,) = rollouts_to_probe([deploying, adapter()], ready, CPU)
    assert [a.model_key for a in pair[1]] == ["k-ad"]
    q = step([deploying, adapter()], ready, rollout_probes={"a": None})
    assert states(q) == [("a", "RUNNING", "SWITCHED")]
    assert front(q.apply) == {ID: ("llm-a-b", False, None), "bob-202601010010-tutor": ("llm-a-b", False, None)}


@pytest.mark.parametrize("text, expected", [
    ("model_id: m\nmodel_source: $HOME/common/hf/m\nrollout: {strategy: recreate}\n", []),
    ("model_id: m\nmodel_source: $HOME/common/hf/m\nrollout: {}\n", []),
    ("model_id: m\nmodel_source: $HOME/common/hf/m\nrollout:\n  strategy: blue-green\n",
     [(4, 13, "rollout.strategy: Input should be 'surge' or 'recreate'")]),
    ("model_id: m\nmodel_source: $HOME/common/hf/m\nrollout:\n  strategy: 1\n",
     [(4, 13, "rollout.strategy: Input should be 'surge' or 'recreate'")]),
    ("model_id: t\nbase_model: m\nmodel_source: $HOME/a\nrollout: {strategy: surge}\n",
     [(4, 1, "rollout is not taken by an adapter spec (base_model is set): an adapter runs on its base model's "
             "replicas; remove it")]),
])
def test_the_rollout_field_is_checked_with_its_place(text, expected):
    from daemon.core.spec import RolloutStrategy, parse_spec
    from daemon.errors import SpecError
    from helpers import spec_policy
    try:
        parsed = parse_spec("s.yaml", text.encode(), "alice", spec_policy(root="/private"))
    except SpecError as exc:
        assert [(p.line, p.col, p.message) for p in exc.problems] == expected
        return
    assert expected == []
    assert parsed.spec.rollout is None or parsed.spec.rollout.strategy in set(RolloutStrategy)


def test_the_api_shows_the_serving_generation_first_and_the_one_starting_beside_it():
    from daemon.api.service import replica_states
    from daemon.serving.observe import observed_from_status
    _, starting = started(settled([model()]))
    message = "A replica failed to start with exception. Retrying 2 more time(s)."
    apps = {name: {"status": str(app.status), "deployed_app_config": app.deployed,
                   "deployments": {d: {"status": str(o.status), "message": message if name == "llm-a-b" else "",
                                       "replicas": []} for d, o in app.deployments.items()}}
            for name, app in starting.apps.items()}
    found = replica_states(observed_from_status({"applications": apps}), "a", ID)
    assert found["application"] == "llm-a" and found["status"] == "HEALTHY"
    assert found["next_generation"]["application"] == "llm-a-b"
    assert found["next_generation"]["message"] == message


def test_claiming_the_lease_reads_a_model_served_from_its_second_slot_as_running(gen1):
    from daemon.serving.judge import lost_while_claiming
    _, starting = started(gen1)
    switched = step([model(2, "DEPLOYING", seqs=8)], with_status(starting, "llm-a-b", running=1),
                    rollout_probes={"a": None})
    on_b = served(step([model(2, applied=2, seqs=8)], served(switched.apply)).apply)
    assert list(on_b.apps_of("a")) == ["llm-a-b"]
    assert lost_while_claiming([model(2, applied=2, seqs=8)], on_b) == []
    assert [t.event_type for t in lost_while_claiming([model(2, applied=2, seqs=8)], Observed())] == ["REPLICAS_LOST"]


def test_a_new_generation_ray_cannot_place_goes_back_to_queued_and_the_serving_one_serves_on():
    """Admitting by fit, a candidate Serve could not place for 30 s goes back to QUEUED: its
    own app leaves the config, the serving generation stays in it and keeps the public id."""
    from test_reconcile_plan import GPU, STALLED, nodes

    def gpu_step(models, observed, capacity):
        return plan(models, observed, capacity=capacity, settings=GPU, serve=SERVE, now=T0)

    observed = Observed()
    for _ in range(4):
        p = gpu_step([model()], observed, nodes(3))
        if p.apply is None:
            break
        observed = served(p.apply)
    p = gpu_step([model(2, "QUEUED", seqs=8)], observed, nodes(3))
    assert apps(p.apply) == {"llm-a": None, "llm-a-b": 8}
    stuck = with_status(served(p.apply), "llm-a-b", "UPDATING", "DEPLOYING", running=0, message=STALLED)
    q = gpu_step([model(2, "DEPLOYING", seqs=8)], stuck, nodes(0))
    assert [(s, e) for _, s, e in states(q)] == [("QUEUED", "PENDING_RESOURCES")]
    assert apps(q.apply) == {"llm-a": None} and front(q.apply) == {ID: ("llm-a", False, None)}


def test_a_rollback_keeps_the_app_serve_routes_even_when_the_store_missed_its_running_record(gen1):
    """The tick that recorded generation 1 RUNNING was dropped (a commit landed meanwhile): the
    store has no serving generation, Serve routes to llm-a. Generation 2 fails beside it: the
    rollback removes generation 2, not the app that serves."""
    p = step([model(2, "QUEUED", applied=None, seqs=8)], gen1)
    assert states(p) == [("a", "DEPLOYING", "ROLLOUT_STARTED")]
    assert p.transitions[0].error_summary == "generation 2 starting beside the serving generation"
    bad = with_status(served(p.apply), "llm-a-b", "DEPLOY_FAILED", "DEPLOY_FAILED", running=0, message="boom")
    q = step([model(2, "DEPLOYING", applied=None, seqs=8)], bad)
    assert states(q) == [("a", "FAILED", "ROLLED_BACK")]
    assert q.transitions[0].error_summary.endswith("; the serving generation serves on")
    assert apps(q.apply) == {"llm-a": None} and front(q.apply) == {ID: ("llm-a", False, None)}


@pytest.mark.parametrize("dep_status, app_status", [("DEPLOY_FAILED", "DEPLOY_FAILED"), ("UNHEALTHY", "RUNNING")])
def test_a_generation_that_fails_in_place_leaves_serve_as_failed_does(gen1, dep_status, app_status):
    """recreate: the change replaces the serving app in place, and when it fails there is no
    other generation to serve: FAILED takes the app out (no crash-looping engine kept, nothing
    routed to it)."""
    p = step([model(2, "QUEUED", seqs=8, strategy="recreate")], gen1)
    assert apps(p.apply) == {"llm-a": 8}
    bad = with_status(served(p.apply), "llm-a", dep_status, app_status, running=1, message="engine died")
    q = step([model(2, "DEPLOYING", seqs=8, strategy="recreate")], bad)
    assert [(s, e) for _, s, e in states(q)] == [("FAILED", "FAILED")]
    assert ID not in front(q.apply)
    after = step([model(2, "FAILED", seqs=8, strategy="recreate")], served(q.apply))
    assert after.apply is not None and apps(after.apply) == {}

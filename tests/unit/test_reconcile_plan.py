"""plan(desired, observed) as tables: what to apply and which transitions to record. The
desired side is DesiredModel rows; the observed side is what Serve would report once it took a
plan's config (built through the same parsing as Serve's real answer)."""
import pytest

from daemon.core.spec import ResolvedServingSpec
from daemon.replicas.names import deployment_name
from daemon.serving.desired import DesiredModel
from daemon.serving.judge import cluster_event
from daemon.serving.observe import Observed, ObservedApp, ObservedDeployment, observed_from_status
from daemon.serving.placement import AdmissionMode, Capacity, NodeFree
from daemon.serving.plan import plan
from helpers import llm_settings, serve_settings

CPU = llm_settings(accelerator_type="cpu")
GPU = llm_settings(accelerator_type="H20")
PER_MODEL = serve_settings()


@pytest.fixture
def serve():
    return PER_MODEL


def model(key, state="QUEUED", replicas=1, gpus=1, generation=1, source_problem=None, last_event=None, src="m",
          was_running=False, ran_this_generation=False):
    spec = ResolvedServingSpec(user_id="alice", model_id_suffix=key, model_id_prefix="alice-202601010000",
                               model_id=f"alice-202601010000-{key}", model_source=f"/private/hf/{src}",
                               num_replicas=replicas, gpus_per_replica=gpus, engine_kwargs={})
    return DesiredModel(key, spec.model_id, state, generation, spec, source_problem, last_event, was_running,
                        ran_this_generation=ran_this_generation)


def served(config, dep_status="HEALTHY", app_status="RUNNING", message="", running=None, drop=()):
    """What Serve reports once it has taken `config` (a plan's apply)."""
    config = js(config)
    apps = {}
    for app in config["applications"]:
        deps = {}
        for d in app["deployments"]:
            if d["name"] in drop:
                continue
            status = dep_status(d["name"]) if callable(dep_status) else dep_status
            replicas = d.get("num_replicas", 1)
            deps[d["name"]] = ObservedDeployment(status, message, replicas if running is None else running)
        apps[app["name"]] = ObservedApp(app_status, message, app, deps, name=app["name"])
    return Observed(apps)


def js(config):
    """A plan's config as Serve's JSON (tests also pass that JSON itself)."""
    return config.to_json() if hasattr(config, "to_json") else config


def states(p):
    return [(t.model_key, t.state, t.event_type) for t in p.transitions]


def model_deployments(config):
    """LLMServer deployment -> num_replicas, across the applications of either layout."""
    return {d["name"]: d["num_replicas"] for app in js(config)["applications"] for d in app["deployments"]
            if d["name"].startswith("LLMServer:")}


def nodes(*free, total=None, mode=AdmissionMode.FIT):
    """A live cluster: one node per number of free H20 GPUs (8 CPUs free each)."""
    return Capacity(tuple(NodeFree(f"n{i}", float(f), 8.0, float(total or max(f, 4)))
                          for i, f in enumerate(free)), "H20", mode)


def settled(models, serve, settings=None, capacity=None):
    """What Serve reports once argus has applied `models` (all healthy) and nothing is left to do."""
    observed = Observed()
    for _ in range(3):
        p = plan(models, observed, capacity=capacity, settings=settings or CPU, serve=serve)
        if p.noop:
            return observed
        if p.apply is not None:
            observed = served(p.apply)
    raise AssertionError("plan did not settle")


def app_of(config, key):
    return next(a for a in js(config)["applications"] if any(d["name"] == f"LLMServer:{key}" for d in a["deployments"]))


def test_new_model_is_applied_and_deploying(serve):
    p = plan([model("a")], Observed(), capacity=None, settings=CPU, serve=serve)
    assert states(p) == [("a", "DEPLOYING", "APPLIED")]
    assert model_deployments(p.apply) == {"LLMServer:a": 1}
    assert p.apply.to_json()["http_options"] == {"host": "0.0.0.0", "port": 8000}


def test_nothing_changed_applies_nothing_and_records_nothing(serve):
    observed = settled([model("a", "RUNNING")], serve)  # raises unless it settles within a few applies
    p = plan([model("a", "RUNNING")], observed, capacity=None, settings=CPU, serve=serve)
    assert p.noop


@pytest.mark.parametrize("dep_status, app_status, running, expected", [
    ("HEALTHY", "RUNNING", None, [("a", "RUNNING", "RUNNING")]),
    ("UPDATING", "DEPLOYING", None, []),
    ("HEALTHY", "DEPLOYING", None, []),
    ("HEALTHY", "RUNNING", 0, []),                       # not all replicas up yet
    ("DEPLOY_FAILED", "DEPLOY_FAILED", None, [("a", "FAILED", "FAILED")]),
    ("UNHEALTHY", "RUNNING", None, [("a", "FAILED", "FAILED")]),
])
def test_deploying_model_follows_serve(serve, dep_status, app_status, running, expected):
    applied = plan([model("a")], Observed(), capacity=None, settings=CPU, serve=serve).apply
    observed = served(applied, dep_status, app_status, message="engine died", running=running)
    p = plan([model("a", "DEPLOYING")], observed, capacity=None, settings=CPU, serve=serve)
    # The models stay as applied; only the per-model front end learns a model that runs.
    assert p.apply is None or model_deployments(p.apply) == model_deployments(applied)
    if expected and expected[0][1] == "RUNNING":   # recorded once the front end routes it
        assert states(p) == []
        p = plan([model("a", "DEPLOYING")], served(p.apply, dep_status, app_status, running=running),
                 capacity=None, settings=CPU, serve=serve)
    assert states(p) == expected
    if expected and expected[0][1] == "FAILED":
        assert p.transitions[0].error_summary == f"{dep_status}: engine died"


def test_failed_model_is_left_out(serve):
    p = plan([model("a", "RUNNING"), model("b", "FAILED")], Observed(), capacity=None, settings=CPU, serve=serve)
    assert model_deployments(p.apply) == {"LLMServer:a": 1}


def test_deleting_is_removed_then_deleted_when_gone(serve):
    both = plan([model("a", "RUNNING"), model("b", "RUNNING")], Observed(), capacity=None, settings=CPU,
                serve=serve).apply
    p = plan([model("a", "RUNNING"), model("b", "DELETING")], served(both), capacity=None, settings=CPU,
             serve=serve)
    assert model_deployments(p.apply) == {"LLMServer:a": 1}
    assert states(p) == []
    p2 = plan([model("a", "RUNNING"), model("b", "DELETING")], served(p.apply), capacity=None, settings=CPU,
              serve=serve)
    assert p2.apply is None and states(p2) == [("b", "DELETED", "DELETED")]


def test_last_model_deleted_applies_a_config_without_models(serve):
    one = plan([model("a", "RUNNING")], Observed(), capacity=None, settings=CPU, serve=serve).apply
    p = plan([model("a", "DELETING")], served(one), capacity=None, settings=CPU, serve=serve)
    assert model_deployments(p.apply) == {}


def test_gpu_admission_records_pending_once(serve):
    # a runs on n0 (Ray's live view already shows its 2 GPUs as used): 2 free there, none elsewhere.
    only_a = settled([model("a", "RUNNING", gpus=2)], serve, GPU, capacity=nodes(4))
    p = plan([model("a", "RUNNING", gpus=2), model("b", replicas=2, gpus=2)], only_a, capacity=nodes(2),
             settings=GPU, serve=serve)
    # b does not fit: the models stay as they are; the front end answers b's clients 503 meanwhile.
    assert model_deployments(p.apply) == {"LLMServer:a": 1}
    assert apps(p.apply)["argus"]["deployments"][0]["user_config"]["models"][-1]["unavailable"]["status"] == 503
    only_a = served(p.apply)
    (pending,) = p.transitions
    assert (pending.model_key, pending.state, pending.event_type) == ("b", "QUEUED", "PENDING_RESOURCES")
    assert pending.payload["message"] == ("needs 2 H20 GPUs and 1 CPU on one node for each of 2 replicas; "
                                          "the freest node has 2 free now")
    assert pending.error_summary == pending.payload["message"]  # status shows why it waits
    again = plan([model("a", "RUNNING", gpus=2), model("b", replicas=2, gpus=2,
                                                       last_event=("PENDING_RESOURCES", pending.payload))],
                 only_a, capacity=nodes(2), settings=GPU, serve=serve)
    assert again.noop


def test_update_that_does_not_fit_keeps_the_running_version(serve):
    running = plan([model("a", "RUNNING", replicas=1, gpus=2)], Observed(), capacity=nodes(4), settings=GPU,
                   serve=serve).apply
    # a's one replica holds 2 of n0's 4 GPUs; 3 replicas need 2 more of 2 GPUs each.
    p = plan([model("a", "QUEUED", replicas=3, gpus=2, generation=2)], served(running), capacity=nodes(2),
             settings=GPU, serve=serve)
    assert p.apply is None  # the running version stays exactly as it is
    assert states(p) == [("a", "QUEUED", "PENDING_RESOURCES")]
    fits = plan([model("a", "QUEUED", replicas=2, gpus=2, generation=2)], served(running), capacity=nodes(2),
                settings=GPU, serve=serve)
    assert states(fits) == [("a", "DEPLOYING", "APPLIED")]


# (what is queued as (replicas, gpus_per_replica), free GPUs per node, admitted?, the reason's tail)
PLACEMENT = [
    ((1, 4), (2, 2), False, "the freest node has 2 free now"),                       # 2+2 split: TP=4 needs ONE node
    ((1, 8), (4, 4), False, "no alive node has 8 H20 GPUs at all (the largest has 4)"),  # TP=8 on 4-GPU nodes
    ((1, 4), (4, 0), True, None),
    ((2, 2), (2, 2), True, None),                                                    # one replica per node
    ((2, 4), (4, 2), False, "the freest node has 4 free now"),                       # the 2nd replica has no node
    ((1, 2), (), False, "no alive node has H20 GPUs"),                               # only other GPU types
    ((1, 1), (0, 0), False, "the freest node has 0 free now"),                       # training holds them all
]


@pytest.mark.parametrize("want,free,admitted,reason", PLACEMENT)
def test_placement_table(want, free, admitted, reason):
    replicas, gpus = want
    p = plan([model("q", replicas=replicas, gpus=gpus)], Observed(), capacity=nodes(*free), settings=GPU,
             serve=PER_MODEL)
    if admitted:
        assert states(p) == [("q", "DEPLOYING", "APPLIED")]
    else:
        assert states(p) == [("q", "QUEUED", "PENDING_RESOURCES")]
        assert p.transitions[0].payload["message"].endswith(reason)


def test_autoscale_admits_what_does_not_fit_now():
    p = plan([model("q", gpus=8)], Observed(), capacity=nodes(mode=AdmissionMode.AUTOSCALE), settings=GPU,
             serve=PER_MODEL)
    assert states(p) == [("q", "DEPLOYING", "APPLIED")]


def test_queued_models_share_the_free_gpus_and_in_flight_replicas_count():
    # b (4) and c (4) on a node with 4 free and one with 4: both fit, d (4) does not.
    p = plan([model("b", gpus=4), model("c", gpus=4), model("d", gpus=4)], Observed(), capacity=nodes(4, 4),
             settings=GPU, serve=PER_MODEL)
    assert states(p) == [("d", "QUEUED", "PENDING_RESOURCES"), ("b", "DEPLOYING", "APPLIED"),
                         ("c", "DEPLOYING", "APPLIED")]
    # Next tick, before Ray's usage shows b and c: their replicas still count, so d still waits.
    deploying = served(p.apply, dep_status="UPDATING", app_status="DEPLOYING", running=0)
    q = plan([model("b", "DEPLOYING", gpus=4), model("c", "DEPLOYING", gpus=4), model("d", gpus=4)], deploying,
             capacity=nodes(4, 4), settings=GPU, serve=PER_MODEL)
    assert [t.model_key for t in q.transitions if t.event_type == "APPLIED"] == []


STALLED = ("Deployment 'LLMServer:s' in application 'llm-s' has 1 replicas that have taken more than 30s to be "
           "scheduled. This may be due to waiting for the cluster to auto-scale or for a runtime environment to "
           "be installed. Resources required for each replica: [{'GPU': 4.0, 'CPU': 1.0}], total resources "
           "available: {}. Use `ray status` for more details.")


def test_a_model_serve_cannot_place_goes_back_to_queued_with_serves_reason():
    applied = plan([model("s", gpus=4)], Observed(), capacity=nodes(4), settings=GPU, serve=PER_MODEL).apply
    stuck = served(applied, dep_status="UPDATING", app_status="DEPLOYING", running=0, message=STALLED)
    p = plan([model("s", "DEPLOYING", gpus=4)], stuck, capacity=nodes(4), settings=GPU, serve=PER_MODEL)
    (t,) = p.transitions
    assert (t.state, t.event_type) == ("QUEUED", "PENDING_RESOURCES")
    assert t.error_summary.startswith("Serve cannot place a replica yet: Deployment 'LLMServer:s'")
    assert "llm-s" not in {a["name"] for a in p.apply.to_json()["applications"]}  # its pending group is withdrawn
    # Tried again only once more GPUs are free than when it stalled.
    queued = model("s", gpus=4, last_event=("PENDING_RESOURCES", t.payload))
    waits = plan([queued], Observed(), capacity=nodes(4), settings=GPU, serve=PER_MODEL)
    assert states(waits) == [] and "llm-s" not in {a["name"] for a in waits.apply.to_json()["applications"]}
    assert states(plan([queued], Observed(), capacity=nodes(4, 4), settings=GPU, serve=PER_MODEL)) == [
        ("s", "DEPLOYING", "APPLIED")]


def test_a_stalled_model_is_tried_again_when_the_free_gpus_move_between_nodes():
    # It stalled with 4 free on n0; later n0 is busy and n1 has 4 free: the same total, another
    # cluster, so Serve is asked again (the retry compares the per-node view, not a sum).
    applied = plan([model("s", gpus=4)], Observed(), capacity=nodes(4, 0), settings=GPU, serve=PER_MODEL).apply
    stuck = served(applied, dep_status="UPDATING", app_status="DEPLOYING", running=0, message=STALLED)
    (t,) = plan([model("s", "DEPLOYING", gpus=4)], stuck, capacity=nodes(4, 0), settings=GPU,
                serve=PER_MODEL).transitions
    assert t.payload["free_by_node_then"] == {"n0": 4.0}
    queued = model("s", gpus=4, last_event=("PENDING_RESOURCES", t.payload))
    assert states(plan([queued], Observed(), capacity=nodes(4, 0), settings=GPU, serve=PER_MODEL)) == []
    assert states(plan([queued], Observed(), capacity=nodes(0, 4), settings=GPU, serve=PER_MODEL)) == [
        ("s", "DEPLOYING", "APPLIED")]


def test_nodes_ray_reports_no_usage_for_are_not_free_and_the_reason_says_why():
    unknown = Capacity((NodeFree("n0", 0.0, 0.0, 8.0, reported=False),), "H20", AdmissionMode.FIT,
                       usage_problem="the Ray dashboard's /nodes?view=summary reports no per-node usage")
    p = plan([model("q", gpus=4)], Observed(), capacity=unknown, settings=GPU, serve=PER_MODEL)
    assert states(p) == [("q", "QUEUED", "PENDING_RESOURCES")]
    assert p.transitions[0].error_summary == (
        "needs 4 H20 GPUs and 1 CPU on one node; the freest node has 0 free now; Ray reports no usage for 1 "
        "node(s) with H20 GPUs, so argus counts none of them as free (the Ray dashboard's /nodes?view=summary "
        "reports no per-node usage)")


def test_autoscaling_keeps_deploying_with_serves_reason_once():
    cap = nodes(mode=AdmissionMode.AUTOSCALE)
    applied = plan([model("s", gpus=4)], Observed(), capacity=cap, settings=GPU, serve=PER_MODEL).apply
    stuck = served(applied, dep_status="UPDATING", app_status="DEPLOYING", running=0, message=STALLED)
    p = plan([model("s", "DEPLOYING", gpus=4)], stuck, capacity=cap, settings=GPU, serve=PER_MODEL)
    (t,) = p.transitions
    assert (t.state, t.event_type) == ("DEPLOYING", "PENDING_RESOURCES") and p.apply is None
    again = plan([model("s", "DEPLOYING", gpus=4, last_event=(t.event_type, t.payload))], stuck, capacity=cap,
                 settings=GPU, serve=PER_MODEL)
    assert again.noop


def test_other_teams_apps_pass_through_unchanged():
    foreign = {"name": "team-b", "route_prefix": "/team-b", "import_path": "their.module:app",
               "runtime_env": {"pip": ["x"]}, "deployments": [{"name": "D", "num_replicas": 3}]}
    observed = Observed({"team-b": ObservedApp("RUNNING", "", foreign, {"D": ObservedDeployment("HEALTHY")}),
                         "imperative": ObservedApp("RUNNING", "", None, {})})
    p = plan([model("a")], observed, capacity=None, settings=CPU, serve=PER_MODEL)
    assert [a for a in p.apply.to_json()["applications"] if a["name"] == "team-b"] == [foreign]
    assert "imperative" not in {a["name"] for a in p.apply.to_json()["applications"]}  # serve.run apps: Serve keeps them
    # Once argus's own apps are as wanted, the foreign app alone never makes argus apply.
    ours = settled([model("a", "RUNNING")], PER_MODEL)
    assert plan([model("a", "RUNNING")], Observed({**ours.apps, "team-b": observed.apps["team-b"]}), capacity=None,
                settings=CPU, serve=PER_MODEL).noop


def test_missing_model_source_fails_fast(serve):
    problem = "model_source /private/hf/m does not exist; put the model there (or fix model_source in the spec)"
    p = plan([model("a", source_problem=problem)], Observed(), capacity=None, settings=CPU, serve=serve)
    assert p.apply is None or model_deployments(p.apply) == {}
    (t,) = p.transitions
    assert (t.state, t.event_type) == ("FAILED", "FAILED")
    assert t.error_summary == problem


@pytest.mark.parametrize("state", ["DEPLOYING", "RUNNING"])
def test_a_model_whose_folder_is_swapped_out_of_its_owners_roots_fails_and_leaves_the_config(serve, state):
    reason = ("model_source /private/hf/m leads through a symlink to /private/users/eve/m, outside /private/hf/ or "
              "/private/users/alice/; the folder changed after the spec was accepted")
    observed = settled([model("a", "RUNNING"), model("b", "RUNNING")], serve)
    p = plan([model("a", state, source_problem=reason), model("b", "RUNNING")], observed, capacity=None,
             settings=CPU, serve=serve)
    assert states(p) == [("a", "FAILED", "FAILED")] and p.transitions[0].error_summary == reason
    after = plan([model("a", "FAILED"), model("b", "RUNNING")], observed, capacity=None, settings=CPU, serve=serve)
    assert model_deployments(after.apply) == {"LLMServer:b": 1}


def test_drift_is_repaired(serve):
    # Gone from Serve altogether (Ray restarted): not RUNNING, and applied again.
    p = plan([model("a", "RUNNING")], Observed(), capacity=None, settings=CPU, serve=serve)
    assert p.apply is not None and states(p) == [("a", "DEPLOYING", "REPLICAS_LOST")]
    assert p.transitions[0].error_summary == "Serve has no replica of it; redeploying"
    ours = plan([model("a", "RUNNING")], Observed(), capacity=None, settings=CPU, serve=serve).apply
    config = ours.to_json()
    app_of(config, "a")["deployments"][0]["num_replicas"] = 5
    tampered = served(config)
    p = plan([model("a", "RUNNING")], tampered, capacity=None, settings=CPU, serve=serve)
    assert model_deployments(p.apply) == {"LLMServer:a": 1}
    assert states(p) == [("a", "DEPLOYING", "DRIFT_REPAIRED")]


def test_scaling_changes_only_the_override_not_args(serve):
    one = plan([model("a", "RUNNING"), model("b", "RUNNING")], Observed(), capacity=None, settings=CPU,
               serve=serve).apply
    scaled = plan([model("a", "RUNNING"), model("b", "QUEUED", replicas=2, generation=2)], served(one),
                  capacity=None, settings=CPU, serve=serve).apply
    assert app_of(scaled, "b")["args"] == app_of(one, "b")["args"]  # args unchanged: no restart
    assert model_deployments(scaled) == {"LLMServer:a": 1, "LLMServer:b": 2}


def test_configs_are_sorted_and_stable(serve):
    a = plan([model("b"), model("a")], Observed(), capacity=None, settings=CPU, serve=serve).apply
    b = plan([model("a"), model("b")], Observed(), capacity=None, settings=CPU, serve=serve).apply
    assert a == b and a.to_json() == b.to_json()
    assert [app["name"] for app in a.to_json()["applications"]] == ["argus", "llm-a", "llm-b"]


def test_observed_from_dashboard_status():
    status = {"applications": {"argus": {
        "status": "RUNNING", "message": "", "deployed_app_config": {"name": "argus"},
        "deployments": {deployment_name("a"): {"status": "HEALTHY", "message": "", "target_num_replicas": 2,
                                                "replicas": [{"state": "RUNNING"}, {"state": "STARTING"}]}}}}}
    observed = observed_from_status(status)
    app, dep = observed.server("a", "argus")
    assert (app.status, dep.status, dep.running_replicas) == ("RUNNING", "HEALTHY", 1)
    assert observed_from_status(None).apps == {}


def test_failure_summary_keeps_the_first_sentence_and_the_final_exception():
    from daemon.serving.observe import summarize_failure

    message = ("DEPLOY_FAILED: The deployment failed to start 3 times in a row. This may be due to a problem. "
               "Error:\n\x1b[36mray::ServeReplica\x1b[39m (pid=1)\n  File \"x.py\", line 1, in f\n    raise\n"
               "Traceback (most recent call last):\n  File \"y.py\", line 2\n"
               "RuntimeError: Failed to create vLLM engine config: 1 validation error for ModelConfig\n"
               "  Value error, User-specified max_model_len (1000000) is greater than the derived max_model_len "
               "[type=value_error, input_value=ArgsKwargs((), {...})]\n    For further information visit x")
    assert summarize_failure(message) == (
        "DEPLOY_FAILED: The deployment failed to start 3 times in a row. RuntimeError: Failed to create vLLM engine "
        "config: 1 validation error for ModelConfig Value error, User-specified max_model_len (1000000) is greater "
        "than the derived max_model_len")
    assert summarize_failure("UNHEALTHY: health check\nfailed") == "UNHEALTHY: health check failed"
    assert len(summarize_failure("x" * 2000)) == 500




def apps(config):
    return {a["name"]: a for a in js(config)["applications"]}


def routes(config):
    """The public ids the front end sends to a replica (not its own 503 answers, not probes)."""
    return [r["model_id"] for r in apps(config)["argus"]["deployments"][0]["user_config"]["models"]
            if "unavailable" not in r and not r.get("probe")]


def test_per_model_layout_one_app_per_model_and_a_front_end():
    p = plan([model("a")], Observed(), capacity=None, settings=CPU, serve=PER_MODEL)
    assert states(p) == [("a", "DEPLOYING", "APPLIED")]
    assert set(apps(p.apply)) == {"argus", "llm-a"}
    assert apps(p.apply)["llm-a"]["import_path"] == "daemon.replicas.model_server:build_model_app"
    assert apps(p.apply)["llm-a"]["route_prefix"] is None
    assert apps(p.apply)["argus"]["route_prefix"] == "/"
    assert routes(p.apply) == []  # not RUNNING yet: not listed


def test_per_model_running_model_is_added_to_the_front_end_in_place():
    applied = plan([model("a")], Observed(), capacity=None, settings=CPU, serve=PER_MODEL).apply
    p = plan([model("a", "DEPLOYING")], served(applied), capacity=None, settings=CPU, serve=PER_MODEL)
    assert states(p) == []   # RUNNING is recorded once the front end routes it, not before
    assert routes(p.apply) == ["alice-202601010000-a"]
    assert apps(p.apply)["llm-a"] == apps(applied)["llm-a"]  # the model's own app is not touched
    assert apps(p.apply)["argus"]["args"] == apps(applied)["argus"]["args"]  # only user_config changes
    routed = plan([model("a", "DEPLOYING")], served(p.apply), capacity=None, settings=CPU, serve=PER_MODEL)
    assert routed.apply is None and states(routed) == [("a", "RUNNING", "RUNNING")]
    settled = plan([model("a", "RUNNING")], served(p.apply), capacity=None, settings=CPU, serve=PER_MODEL)
    assert settled.noop


def test_per_model_adding_or_failing_another_model_leaves_the_first_untouched():
    first = plan([model("a", "RUNNING")], Observed(), capacity=None, settings=CPU, serve=PER_MODEL).apply
    p = plan([model("a", "RUNNING"), model("b")], served(first), capacity=None, settings=CPU, serve=PER_MODEL)
    assert apps(p.apply)["llm-a"] == apps(first)["llm-a"]
    assert routes(p.apply) == ["alice-202601010000-a"]
    failing = served(p.apply, dep_status=lambda name: "DEPLOY_FAILED" if name == "LLMServer:b" else "HEALTHY",
                     message="boom")
    q = plan([model("a", "RUNNING"), model("b", "DEPLOYING")], failing, capacity=None, settings=CPU,
             serve=PER_MODEL)
    assert states(q) == [("b", "FAILED", "FAILED")]
    r = plan([model("a", "RUNNING"), model("b", "FAILED")], failing, capacity=None, settings=CPU, serve=PER_MODEL)
    assert set(apps(r.apply)) == {"argus", "llm-a"} and apps(r.apply)["llm-a"] == apps(first)["llm-a"]


def test_per_model_a_deploying_model_is_judged_by_its_own_app_only():
    both = plan([model("a"), model("b")], Observed(), capacity=None, settings=CPU, serve=PER_MODEL).apply
    observed = served(both, dep_status=lambda name: "HEALTHY" if name == "LLMServer:a" else "UPDATING",
                      app_status="RUNNING")
    # c is new (so the config will change), yet a is routed in the same tick (and recorded
    # RUNNING once the front end routes it), judged by its own app alone.
    p = plan([model("a", "DEPLOYING"), model("b", "DEPLOYING"), model("c")], observed, capacity=None,
             settings=CPU, serve=PER_MODEL)
    assert ("c", "DEPLOYING", "APPLIED") in states(p) and not [s for s in states(p) if s[0] == "a"]
    assert routes(p.apply) == ["alice-202601010000-a"]
    routed = served(p.apply, dep_status=lambda name: "HEALTHY" if name in ("LLMServer:a", "ArgusIngress")
                    else "UPDATING", app_status="RUNNING")
    q = plan([model("a", "DEPLOYING"), model("b", "DEPLOYING"), model("c", "DEPLOYING")], routed, capacity=None,
             settings=CPU, serve=PER_MODEL)
    assert ("a", "RUNNING", "RUNNING") in states(q)


def test_per_model_front_end_removed_behind_our_back_is_restored_without_touching_models():
    config = plan([model("a", "RUNNING")], Observed(), capacity=None, settings=CPU, serve=PER_MODEL).apply
    without_front = served(config)
    del without_front.apps["argus"]
    p = plan([model("a", "RUNNING")], without_front, capacity=None, settings=CPU, serve=PER_MODEL)
    assert states(p) == [] and routes(p.apply) == ["alice-202601010000-a"]


def test_per_model_a_model_being_scaled_stays_routed_while_a_replica_serves():
    running = plan([model("a", "RUNNING", was_running=True)], Observed(), capacity=None, settings=CPU,
                   serve=PER_MODEL).apply
    p = plan([model("a", "QUEUED", replicas=2, generation=2, was_running=True)], served(running), capacity=None,
             settings=CPU, serve=PER_MODEL)
    assert states(p) == [("a", "DEPLOYING", "APPLIED")]
    assert routes(p.apply) == ["alice-202601010000-a"]
    gone = served(running, running=0)  # no replica left: not routed
    q = plan([model("a", "DEPLOYING", replicas=2, generation=2, was_running=True)], gone, capacity=None,
             settings=CPU, serve=PER_MODEL)
    assert routes(q.apply) == []
    never = plan([model("a", "DEPLOYING")], served(plan([model("a")], Observed(), capacity=None, settings=CPU,
                                                        serve=PER_MODEL).apply, dep_status="UPDATING",
                                                   app_status="DEPLOYING"),
                 capacity=None, settings=CPU, serve=PER_MODEL)
    assert never.apply is None  # a first deployment is not routed before it is RUNNING


def test_the_front_end_runs_the_configured_replicas_each_with_the_whole_table():
    p = plan([model("a", "RUNNING"), model("b", "RUNNING")], Observed(), capacity=None, settings=CPU,
             serve=PER_MODEL)
    (front,) = [a for a in p.apply.to_json()["applications"] if a["name"] == "argus"]
    (deployment,) = front["deployments"]
    assert deployment["num_replicas"] == PER_MODEL.frontend_replicas == 2
    # user_config goes to every replica: one table for all.
    assert "user_config" in deployment and "num_replicas" not in front.get("args", {})


def test_a_running_model_whose_replica_dies_stays_in_and_says_so_once(serve):
    ours = settled([model("a", "RUNNING")], serve)
    applied = {"applications": [a.deployed for a in ours.apps.values()]}
    # One replica still counts as RUNNING in Serve's answer (it fails its health checks).
    sick = served(applied, dep_status=lambda d: "UNHEALTHY" if d.startswith("LLMServer") else "HEALTHY",
                  message="The replica died unexpectedly")
    p = plan([model("a", "RUNNING")], sick, capacity=None, settings=CPU, serve=serve)
    (t,) = p.transitions
    assert (t.state, t.event_type) == ("RUNNING", "DEGRADED") and "replica died" in t.error_summary
    assert p.apply is None  # still in the config: Serve replaces the replica
    again = plan([model("a", "RUNNING", last_event=(t.event_type, t.payload))], sick, capacity=None, settings=CPU,
                 serve=serve)
    assert again.noop
    well = plan([model("a", "RUNNING", last_event=(t.event_type, t.payload))], ours, capacity=None, settings=CPU,
                serve=serve)
    assert states(well) == [("a", "RUNNING", "RECOVERED")] and well.transitions[0].error_summary is None
    gave_up = served(applied, dep_status="DEPLOY_FAILED", message="crash loop")
    assert states(plan([model("a", "RUNNING")], gave_up, capacity=None, settings=CPU, serve=serve)) == [
        ("a", "FAILED", "FAILED")]


def model_key_of(p):
    return [t.model_key for t in p.transitions]


@pytest.mark.parametrize("case, dep_status, running, drop_app, expected_reason", [
    # Ray restarted (or the app was removed): Serve has nothing; argus applies it again.
    ("gone", None, None, True, "Serve has no replica of it; redeploying"),
    # Serve still has the deployment at argus's config, but no replica runs (the only one died).
    ("no replica", "UNHEALTHY", 0, False,
     "Serve has no running replica of it; Serve is starting one (The replica died unexpectedly)"),
    ("no replica, updating", "UPDATING", 0, False,
     "Serve has no running replica of it; Serve is starting one (The replica died unexpectedly)"),
])
def test_a_running_model_serve_does_not_run_is_not_running(serve, case, dep_status, running, drop_app,
                                                           expected_reason):
    ours = settled([model("a", "RUNNING")], serve)
    applied = {"applications": [a.deployed for a in ours.apps.values()]}
    if drop_app:
        observed = Observed()
    else:
        observed = served(applied, dep_status=lambda d: dep_status if d.startswith("LLMServer") else "HEALTHY",
                          message="The replica died unexpectedly", running=running)
    p = plan([model("a", "RUNNING", was_running=True, ran_this_generation=True)], observed, capacity=None,
             settings=CPU, serve=serve)
    (t,) = p.transitions
    assert (t.model_key, t.state, t.event_type) == ("a", "DEPLOYING", "REPLICAS_LOST")
    assert t.error_summary == expected_reason == t.payload["message"]
    if drop_app:
        assert model_deployments(p.apply) == {"LLMServer:a": 1}   # redeployed
    lost = (t.event_type, t.payload)
    # Next tick, nothing changed in Serve: nothing new is recorded (once), and an UNHEALTHY
    # deployment of a generation that ran is waited for, not failed.
    again = observed if not drop_app else served(p.apply, dep_status="UPDATING", app_status="DEPLOYING", running=0)
    q = plan([model("a", "DEPLOYING", last_event=lost, was_running=True, ran_this_generation=True)], again,
             capacity=None, settings=CPU, serve=serve)
    assert q.transitions == []
    if not drop_app:  # Serve restarts its replica: requests wait for it, not a 404
        assert routes(plan([model("a", "DEPLOYING", last_event=lost, was_running=True, ran_this_generation=True)],
                           again, capacity=None, settings=CPU, serve=serve).apply or applied) == [
            "alice-202601010000-a"]
    # Serve runs it again: RUNNING, the reason goes.
    back = settled([model("a", "RUNNING")], serve)
    r = plan([model("a", "DEPLOYING", last_event=lost, was_running=True, ran_this_generation=True)], back,
             capacity=None, settings=CPU, serve=serve)
    assert states(r) == [("a", "RUNNING", "RUNNING")] and r.transitions[0].error_summary is None


def test_a_running_model_is_not_lost_while_serve_reimports_its_app():
    """Serve lists no deployments while it re-imports an app, and its replicas serve on."""
    ours = settled([model("a", "RUNNING")], PER_MODEL)
    app = ours.apps["llm-a"]
    building = Observed({**ours.apps, "llm-a": ObservedApp("DEPLOYING", "", app.deployed, {})})
    assert plan([model("a", "RUNNING")], building, capacity=None, settings=CPU, serve=PER_MODEL).transitions == []


def test_an_unhealthy_new_generation_still_fails():
    """Only a generation that ran before is waited for while UNHEALTHY; a new one fails as before."""
    applied = plan([model("a")], Observed(), capacity=None, settings=CPU, serve=PER_MODEL).apply
    sick = served(applied, "UNHEALTHY", message="engine died")
    p = plan([model("a", "DEPLOYING", was_running=True, ran_this_generation=False)], sick, capacity=None,
             settings=CPU, serve=PER_MODEL)
    assert states(p) == [("a", "FAILED", "FAILED")]


RETRY = ("A replica failed to start with exception. Retrying {n} more time(s). Error:\n"
         "Traceback (most recent call last):\n  File \"llm_server.py\", line 1, in start\n"
         "ValueError: max_model_len (999999) is greater than the derived max_model_len (8192).")
RETRY_OTHER = RETRY.replace("ValueError: max_model_len (999999) is greater than the derived max_model_len (8192).",
                            "RuntimeError: Engine core initialization failed")


@pytest.mark.parametrize("messages, recorded", [
    # The same failure on every retry (the count changes): one event.
    ([RETRY.format(n=2), RETRY.format(n=1), RETRY.format(n=0)],
     ["A replica failed to start with exception. ValueError: max_model_len (999999) is greater than the derived "
      "max_model_len (8192)."]),
    # A new reason: recorded too.
    ([RETRY.format(n=2), RETRY_OTHER.format(n=1)],
     ["A replica failed to start with exception. ValueError: max_model_len (999999) is greater than the derived "
      "max_model_len (8192).",
      "A replica failed to start with exception. RuntimeError: Engine core initialization failed"]),
    # Without a traceback: the count is left out all the same.
    (["A replica failed to start with exception. Retrying 2 more time(s). Error:\nno engine",
      "A replica failed to start with exception. Retrying 1 more time(s). Error:\nno engine"],
     ["A replica failed to start with exception. Retrying. Error: no engine"]),
    # Starting slowly is not a reason to report; nothing is recorded.
    (["Deployment 'x' has 1 replicas that have taken more than 30s to initialize."], []),
])
def test_why_a_deploying_model_is_not_up_is_recorded_once_per_reason(serve, messages, recorded):
    applied = plan([model("a")], Observed(), capacity=None, settings=CPU, serve=serve).apply
    last, seen = None, []
    for message in messages:
        observed = served(applied, dep_status="UPDATING", app_status="DEPLOYING", running=0, message=message)
        p = plan([model("a", "DEPLOYING", last_event=last)], observed, capacity=None, settings=CPU, serve=serve)
        for t in p.transitions:
            assert (t.state, t.event_type) == ("DEPLOYING", "REPLICA_START_FAILED")
            assert t.error_summary == t.payload["message"]
            seen.append(t.error_summary)
            last = (t.event_type, t.payload)
    assert seen == recorded
    # Serve gives up: FAILED with its message, as before.
    gave_up = served(applied, "DEPLOY_FAILED", "DEPLOY_FAILED", message="The deployment failed to start 3 times")
    assert states(plan([model("a", "DEPLOYING", last_event=last)], gave_up, capacity=None, settings=CPU,
                       serve=serve)) == [("a", "FAILED", "FAILED")]


@pytest.mark.parametrize("last, unreachable, expected", [
    (None, None, None),                                         # always reachable: nothing
    (None, "cannot reach", ("CLUSTER_UNREACHABLE", {"message": "cannot reach"})),
    (("CLUSTER_UNREACHABLE", {"message": "cannot reach"}), "cannot reach", None),   # once
    # Another failure while it is still unreachable (a starting dashboard times out, then
    # refuses): still the same outage, "since" stays when it began.
    (("CLUSTER_UNREACHABLE", {"message": "cannot reach"}), "timed out", None),
    (("CLUSTER_UNREACHABLE", {"message": "cannot reach"}), None, ("CLUSTER_REACHABLE", {})),
    (("CLUSTER_REACHABLE", {}), None, None),
])
def test_the_cluster_being_unreachable_is_recorded_once_per_change(last, unreachable, expected):
    assert cluster_event(last, unreachable) == expected


def test_while_claiming_the_lease_a_model_serve_lost_is_not_running(serve):
    """After a Ray restart argusd claims the lease before it applies anything; meanwhile a
    model Serve does not run is not shown as RUNNING (and one it runs is left alone)."""
    from daemon.serving.judge import lost_while_claiming
    ours = settled([model("a", "RUNNING")], serve)
    models = [model("a", "RUNNING"), model("b", "QUEUED"), model("c", "FAILED")]
    assert lost_while_claiming(models[:1], ours) == []
    (t,) = lost_while_claiming(models, Observed())
    assert (t.model_key, t.state, t.event_type, t.error_summary) == (
        "a", "DEPLOYING", "REPLICAS_LOST", "Serve has no replica of it; redeploying")

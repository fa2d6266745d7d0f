"""plan(desired, observed) as tables: what to apply and which transitions to record. Tests
that hold for both layouts run in both (`layout`); the others say which layout they mean."""
import pytest

from daemon.core.spec import ResolvedServingSpec
from daemon.serving.llm_config import deployment_name
from daemon.serving.plan import DesiredModel, Observed, ObservedApp, ObservedDeployment, observed_from_status, plan
from helpers import llm_settings, serve_settings

CPU = llm_settings(accelerator_type="cpu")
GPU = llm_settings(accelerator_type="H20")
SINGLE_APP = serve_settings("single_app")
PER_MODEL = serve_settings("per_model")
LAYOUTS = pytest.mark.parametrize("serve", [PER_MODEL, SINGLE_APP], ids=["per_model", "single_app"])


def model(key, state="QUEUED", replicas=1, gpus=1, generation=1, source_problem=None, last_event=None, src="m",
          was_running=False):
    spec = ResolvedServingSpec(user_id="alice", model_id_suffix=key, model_id_prefix="alice-202601010000",
                               model_id=f"alice-202601010000-{key}", model_source=f"/private/hf/{src}",
                               num_replicas=replicas, gpus_per_replica=gpus, engine_kwargs={})
    return DesiredModel(key, spec.model_id, state, generation, spec, source_problem, last_event, was_running)


def served(config, dep_status="HEALTHY", app_status="RUNNING", message="", running=None, drop=()):
    """What Serve reports once it has taken `config` (a plan's apply)."""
    apps = {}
    for app in config["applications"]:
        deps = {}
        for d in app["deployments"]:
            if d["name"] in drop:
                continue
            status = dep_status(d["name"]) if callable(dep_status) else dep_status
            replicas = d.get("num_replicas", 1)
            deps[d["name"]] = ObservedDeployment(status, message, replicas if running is None else running)
        apps[app["name"]] = ObservedApp(app_status, message, app, deps)
    return Observed(apps)


def states(p):
    return [(t.model_key, t.state, t.event_type) for t in p.transitions]


def model_deployments(config):
    """LLMServer deployment -> num_replicas, across the applications of either layout."""
    return {d["name"]: d["num_replicas"] for app in config["applications"] for d in app["deployments"]
            if d["name"].startswith("LLMServer:")}


def settled(models, serve, settings=None, gpus_total=None):
    """What Serve reports once argus has applied `models` (all healthy) and nothing is left to do."""
    observed = Observed()
    for _ in range(3):
        p = plan(models, observed, gpus_total=gpus_total, settings=settings or CPU, serve=serve)
        if p.noop:
            return observed
        if p.apply is not None:
            observed = served(p.apply)
    raise AssertionError("plan did not settle")


def app_of(config, key):
    return next(a for a in config["applications"] if any(d["name"] == f"LLMServer:{key}" for d in a["deployments"]))


@LAYOUTS
def test_new_model_is_applied_and_deploying(serve):
    p = plan([model("a")], Observed(), gpus_total=None, settings=CPU, serve=serve)
    assert states(p) == [("a", "DEPLOYING", "APPLIED")]
    assert model_deployments(p.apply) == {"LLMServer:a": 1}
    assert p.apply["http_options"] == {"host": "0.0.0.0", "port": 8000}


def test_single_app_holds_every_model_in_ray_serve_llm_s_own_app():
    p = plan([model("a")], Observed(), gpus_total=None, settings=CPU, serve=SINGLE_APP)
    (app,) = p.apply["applications"]
    assert app["import_path"] == "ray.serve.llm:build_openai_app"
    assert app["deployments"] == [{"name": "LLMServer:a", "num_replicas": 1}]


@LAYOUTS
def test_nothing_changed_applies_nothing_and_records_nothing(serve):
    observed = settled([model("a", "RUNNING")], serve)  # raises unless it settles within a few applies
    p = plan([model("a", "RUNNING")], observed, gpus_total=None, settings=CPU, serve=serve)
    assert p.noop


@LAYOUTS
@pytest.mark.parametrize("dep_status, app_status, running, expected", [
    ("HEALTHY", "RUNNING", None, [("a", "RUNNING", "RUNNING")]),
    ("UPDATING", "DEPLOYING", None, []),
    ("HEALTHY", "DEPLOYING", None, []),
    ("HEALTHY", "RUNNING", 0, []),                       # not all replicas up yet
    ("DEPLOY_FAILED", "DEPLOY_FAILED", None, [("a", "FAILED", "FAILED")]),
    ("UNHEALTHY", "RUNNING", None, [("a", "FAILED", "FAILED")]),
])
def test_deploying_model_follows_serve(serve, dep_status, app_status, running, expected):
    applied = plan([model("a")], Observed(), gpus_total=None, settings=CPU, serve=serve).apply
    observed = served(applied, dep_status, app_status, message="engine died", running=running)
    p = plan([model("a", "DEPLOYING")], observed, gpus_total=None, settings=CPU, serve=serve)
    assert states(p) == expected
    # The models stay as applied; only the per-model front end learns a model that runs.
    assert p.apply is None or model_deployments(p.apply) == model_deployments(applied)
    if expected and expected[0][1] == "FAILED":
        assert p.transitions[0].error_summary == f"{dep_status}: engine died"


def test_single_app_that_does_not_build_fails_the_new_model_only():
    applied = plan([model("a", "RUNNING"), model("b")], Observed(), gpus_total=None, settings=CPU,
                   serve=SINGLE_APP).apply
    observed = served(applied, app_status="DEPLOY_FAILED", message="bad engine arg", drop=("LLMServer:b",))
    p = plan([model("a", "RUNNING"), model("b", "DEPLOYING")], observed, gpus_total=None, settings=CPU,
             serve=SINGLE_APP)
    assert states(p) == [("b", "FAILED", "FAILED")]
    # Next tick: b is FAILED and left out, so a is applied on its own again.
    p = plan([model("a", "RUNNING"), model("b", "FAILED")], observed, gpus_total=None, settings=CPU, serve=SINGLE_APP)
    assert model_deployments(p.apply) == {"LLMServer:a": 1}


@LAYOUTS
def test_failed_model_is_left_out(serve):
    p = plan([model("a", "RUNNING"), model("b", "FAILED")], Observed(), gpus_total=None, settings=CPU, serve=serve)
    assert model_deployments(p.apply) == {"LLMServer:a": 1}


@LAYOUTS
def test_deleting_is_removed_then_deleted_when_gone(serve):
    both = plan([model("a", "RUNNING"), model("b", "RUNNING")], Observed(), gpus_total=None, settings=CPU,
                serve=serve).apply
    p = plan([model("a", "RUNNING"), model("b", "DELETING")], served(both), gpus_total=None, settings=CPU,
             serve=serve)
    assert model_deployments(p.apply) == {"LLMServer:a": 1}
    assert states(p) == []
    p2 = plan([model("a", "RUNNING"), model("b", "DELETING")], served(p.apply), gpus_total=None, settings=CPU,
              serve=serve)
    assert p2.apply is None and states(p2) == [("b", "DELETED", "DELETED")]


@LAYOUTS
def test_last_model_deleted_applies_a_config_without_models(serve):
    one = plan([model("a", "RUNNING")], Observed(), gpus_total=None, settings=CPU, serve=serve).apply
    p = plan([model("a", "DELETING")], served(one), gpus_total=None, settings=CPU, serve=serve)
    assert model_deployments(p.apply) == {}
    if serve is SINGLE_APP:
        assert p.apply["applications"] == []


@LAYOUTS
def test_gpu_admission_records_pending_once(serve):
    only_a = settled([model("a", "RUNNING", gpus=2)], serve, GPU, gpus_total=4)
    p = plan([model("a", "RUNNING", gpus=2), model("b", replicas=2, gpus=2)], only_a, gpus_total=4,
             settings=GPU, serve=serve)
    assert p.apply is None  # b does not fit: the config stays as it is
    (pending,) = p.transitions
    assert (pending.model_key, pending.state, pending.event_type) == ("b", None, "PENDING_RESOURCES")
    assert pending.payload == {"needed_gpus": 4, "free_gpus": 2, "total_gpus": 4}
    again = plan([model("a", "RUNNING", gpus=2), model("b", replicas=2, gpus=2,
                                                       last_event=("PENDING_RESOURCES", pending.payload))],
                 only_a, gpus_total=4, settings=GPU, serve=serve)
    assert again.noop


@LAYOUTS
def test_update_that_does_not_fit_keeps_the_running_version(serve):
    running = plan([model("a", "RUNNING", replicas=1, gpus=2)], Observed(), gpus_total=4, settings=GPU,
                   serve=serve).apply
    p = plan([model("a", "QUEUED", replicas=3, gpus=2, generation=2)], served(running), gpus_total=4,
             settings=GPU, serve=serve)
    assert p.apply is None  # the running version stays exactly as it is
    assert states(p) == [("a", None, "PENDING_RESOURCES")]
    fits = plan([model("a", "QUEUED", replicas=2, gpus=2, generation=2)], served(running), gpus_total=4,
                settings=GPU, serve=serve)
    assert states(fits) == [("a", "DEPLOYING", "APPLIED")]


@LAYOUTS
def test_missing_model_source_fails_fast(serve):
    problem = "model_source /private/hf/m does not exist; put the model there (or fix model_source in the spec)"
    p = plan([model("a", source_problem=problem)], Observed(), gpus_total=None, settings=CPU, serve=serve)
    assert p.apply is None or model_deployments(p.apply) == {}
    (t,) = p.transitions
    assert (t.state, t.event_type) == ("FAILED", "FAILED")
    assert t.error_summary == problem


@LAYOUTS
def test_drift_is_repaired(serve):
    p = plan([model("a", "RUNNING")], Observed(), gpus_total=None, settings=CPU, serve=serve)
    assert p.apply is not None and states(p) == [("a", "DEPLOYING", "DRIFT_REPAIRED")]
    ours = plan([model("a", "RUNNING")], Observed(), gpus_total=None, settings=CPU, serve=serve).apply
    tampered = served(ours)
    name = app_of(ours, "a")["name"]
    tampered.apps[name].deployed_config["deployments"][0]["num_replicas"] = 5
    p = plan([model("a", "RUNNING")], tampered, gpus_total=None, settings=CPU, serve=serve)
    assert model_deployments(p.apply) == {"LLMServer:a": 1}
    assert states(p) == [("a", "DEPLOYING", "DRIFT_REPAIRED")]


@LAYOUTS
def test_scaling_changes_only_the_override_not_args(serve):
    one = plan([model("a", "RUNNING"), model("b", "RUNNING")], Observed(), gpus_total=None, settings=CPU,
               serve=serve).apply
    scaled = plan([model("a", "RUNNING"), model("b", "QUEUED", replicas=2, generation=2)], served(one),
                  gpus_total=None, settings=CPU, serve=serve).apply
    assert app_of(scaled, "b")["args"] == app_of(one, "b")["args"]  # args unchanged: no restart
    assert model_deployments(scaled) == {"LLMServer:a": 1, "LLMServer:b": 2}


@LAYOUTS
def test_configs_are_sorted_and_stable(serve):
    a = plan([model("b"), model("a")], Observed(), gpus_total=None, settings=CPU, serve=serve).apply
    b = plan([model("a"), model("b")], Observed(), gpus_total=None, settings=CPU, serve=serve).apply
    assert a == b
    if serve is SINGLE_APP:
        assert [c["deployment_config"]["name"] for c in a["applications"][0]["args"]["llm_configs"]] == ["a", "b"]


def test_observed_from_dashboard_status():
    status = {"applications": {"argus": {
        "status": "RUNNING", "message": "", "deployed_app_config": {"name": "argus"},
        "deployments": {deployment_name("a"): {"status": "HEALTHY", "message": "", "target_num_replicas": 2,
                                                "replicas": [{"state": "RUNNING"}, {"state": "STARTING"}]}}}}}
    observed = observed_from_status(status)
    app, dep = observed.deployment("LLMServer:a")
    assert (app.status, dep.status, dep.running_replicas) == ("RUNNING", "HEALTHY", 1)
    assert observed_from_status(None).apps == {}


def test_failure_summary_keeps_the_first_sentence_and_the_final_exception():
    from daemon.serving.plan import summarize_failure

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


def test_single_app_an_app_serve_is_deleting_is_not_deleted_again_but_its_model_waits():
    one = plan([model("a", "RUNNING")], Observed(), gpus_total=None, settings=CPU, serve=SINGLE_APP).apply
    deleting = served(one, app_status="DELETING")
    p = plan([model("a", "DELETING")], deleting, gpus_total=None, settings=CPU, serve=SINGLE_APP)
    assert p.noop  # no second PUT of the empty config, and not DELETED while Serve still has it




def apps(config):
    return {a["name"]: a for a in config["applications"]}


def routes(config):
    return [r["model_id"] for r in apps(config)["argus"]["deployments"][0]["user_config"]["models"]]


def test_per_model_layout_one_app_per_model_and_a_front_end():
    p = plan([model("a")], Observed(), gpus_total=None, settings=CPU, serve=PER_MODEL)
    assert states(p) == [("a", "DEPLOYING", "APPLIED")]
    assert set(apps(p.apply)) == {"argus", "llm-a"}
    assert apps(p.apply)["llm-a"]["import_path"] == "daemon.frontend:build_model_app"
    assert apps(p.apply)["llm-a"]["route_prefix"] is None
    assert apps(p.apply)["argus"]["route_prefix"] == "/"
    assert routes(p.apply) == []  # not RUNNING yet: not listed


def test_per_model_running_model_is_added_to_the_front_end_in_place():
    applied = plan([model("a")], Observed(), gpus_total=None, settings=CPU, serve=PER_MODEL).apply
    p = plan([model("a", "DEPLOYING")], served(applied), gpus_total=None, settings=CPU, serve=PER_MODEL)
    assert states(p) == [("a", "RUNNING", "RUNNING")]
    assert routes(p.apply) == ["alice-202601010000-a"]
    assert apps(p.apply)["llm-a"] == apps(applied)["llm-a"]  # the model's own app is not touched
    assert apps(p.apply)["argus"]["args"] == apps(applied)["argus"]["args"]  # only user_config changes
    settled = plan([model("a", "RUNNING")], served(p.apply), gpus_total=None, settings=CPU, serve=PER_MODEL)
    assert settled.noop


def test_per_model_adding_or_failing_another_model_leaves_the_first_untouched():
    first = plan([model("a", "RUNNING")], Observed(), gpus_total=None, settings=CPU, serve=PER_MODEL).apply
    p = plan([model("a", "RUNNING"), model("b")], served(first), gpus_total=None, settings=CPU, serve=PER_MODEL)
    assert apps(p.apply)["llm-a"] == apps(first)["llm-a"]
    assert routes(p.apply) == ["alice-202601010000-a"]
    failing = served(p.apply, dep_status=lambda name: "DEPLOY_FAILED" if name == "LLMServer:b" else "HEALTHY",
                     message="boom")
    q = plan([model("a", "RUNNING"), model("b", "DEPLOYING")], failing, gpus_total=None, settings=CPU,
             serve=PER_MODEL)
    assert states(q) == [("b", "FAILED", "FAILED")]
    r = plan([model("a", "RUNNING"), model("b", "FAILED")], failing, gpus_total=None, settings=CPU, serve=PER_MODEL)
    assert set(apps(r.apply)) == {"argus", "llm-a"} and apps(r.apply)["llm-a"] == apps(first)["llm-a"]


def test_per_model_a_deploying_model_is_judged_by_its_own_app_only():
    both = plan([model("a"), model("b")], Observed(), gpus_total=None, settings=CPU, serve=PER_MODEL).apply
    observed = served(both, dep_status=lambda name: "HEALTHY" if name == "LLMServer:a" else "UPDATING",
                      app_status="RUNNING")
    # c is new (so the config will change), yet a is recognised as RUNNING in the same tick.
    p = plan([model("a", "DEPLOYING"), model("b", "DEPLOYING"), model("c")], observed, gpus_total=None,
             settings=CPU, serve=PER_MODEL)
    assert ("a", "RUNNING", "RUNNING") in states(p) and ("c", "DEPLOYING", "APPLIED") in states(p)
    assert routes(p.apply) == ["alice-202601010000-a"]


def test_per_model_front_end_removed_behind_our_back_is_restored_without_touching_models():
    config = plan([model("a", "RUNNING")], Observed(), gpus_total=None, settings=CPU, serve=PER_MODEL).apply
    without_front = served(config)
    del without_front.apps["argus"]
    p = plan([model("a", "RUNNING")], without_front, gpus_total=None, settings=CPU, serve=PER_MODEL)
    assert states(p) == [] and routes(p.apply) == ["alice-202601010000-a"]


def test_per_model_a_model_being_scaled_stays_routed_while_a_replica_serves():
    running = plan([model("a", "RUNNING", was_running=True)], Observed(), gpus_total=None, settings=CPU,
                   serve=PER_MODEL).apply
    p = plan([model("a", "QUEUED", replicas=2, generation=2, was_running=True)], served(running), gpus_total=None,
             settings=CPU, serve=PER_MODEL)
    assert states(p) == [("a", "DEPLOYING", "APPLIED")]
    assert routes(p.apply) == ["alice-202601010000-a"]
    gone = served(running, running=0)  # no replica left: not routed
    q = plan([model("a", "DEPLOYING", replicas=2, generation=2, was_running=True)], gone, gpus_total=None,
             settings=CPU, serve=PER_MODEL)
    assert routes(q.apply) == []
    never = plan([model("a", "DEPLOYING")], served(plan([model("a")], Observed(), gpus_total=None, settings=CPU,
                                                        serve=PER_MODEL).apply, dep_status="UPDATING",
                                                   app_status="DEPLOYING"),
                 gpus_total=None, settings=CPU, serve=PER_MODEL)
    assert never.apply is None  # a first deployment is not routed before it is RUNNING

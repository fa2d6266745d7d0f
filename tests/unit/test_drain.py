"""The drain bound (serving.serve.drain_timeout_s): how long a replica Serve stops lets its
in-flight requests finish. As tables: every model deployment and the front end carry it as
Serve's graceful_shutdown_* options, it reads back as written, and a changed bound is applied
in place (the same args, no transition: not a rollout, not a drift). Ray's own schema and
DeploymentConfig check the rendered options in tests/integration/test_ray_contract.py; a real
Serve draining a stream through a scale-down and a rollout is tests/integration/test_frontend_serve.py."""
import copy

import pytest

from daemon.config import Config, load_config
from daemon.core.spec import ResolvedServingSpec
from daemon.errors import ConfigError
from daemon.serving.desired import DesiredModel
from daemon.serving.llm_config import DRAIN_POLL_S, LlmSettings, ModelDeployment
from daemon.serving.observe import Observed, ObservedApp, ObservedDeployment
from daemon.serving.plan import plan
from daemon.serving.serve_config import FrontendApp, ModelApp, parse_app, render_app
from helpers import llm_settings, serve_settings

CPU = llm_settings(accelerator_type="cpu")
SERVE = serve_settings()
SPEC = ResolvedServingSpec("alice", "a", "alice-1", "alice-1-a", "/private/hf/m", 2, 1, {})
AUTO = ResolvedServingSpec("alice", "z", "alice-1", "alice-1-z", "/private/hf/m", 0, 1, {},
                           autoscaling={"min_replicas": 0, "max_replicas": 2, "target_ongoing_requests": 2,
                                        "scale_down_delay_s": 60})


def drain(timeout):
    return {"graceful_shutdown_timeout_s": timeout, "graceful_shutdown_wait_loop_s": DRAIN_POLL_S}


def test_the_default_bound_is_ray_serve_llms_own_request_bound_and_the_config_sets_another():
    assert Config().serving.serve.drain_timeout_s == 600.0
    assert LlmSettings.from_config(Config.model_validate({"serving": {"serve": {"drain_timeout_s": 900}}})
                                   ).drain_timeout_s == 900.0


@pytest.mark.parametrize("value", [0, 1, 3601, "soon"])
def test_a_bound_out_of_range_is_refused_at_its_key(value, tmp_path):
    path = tmp_path / "argus.yaml"
    path.write_text(f"serving:\n  serve:\n    drain_timeout_s: {value}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    assert f"{path}:3:22: serving.serve.drain_timeout_s" in str(error.value), str(error.value)
    assert "Traceback" not in str(error.value)


@pytest.mark.parametrize("spec", [SPEC, AUTO], ids=["fixed", "autoscaled"])
def test_every_model_deployment_carries_the_bound_and_reads_back_as_written(spec):
    app = ModelApp.of(ModelDeployment.of("k", spec, CPU), "llm-k")
    raw = render_app(app)
    assert {k: raw["deployments"][0][k] for k in drain(0)} == drain(600.0)
    assert "graceful_shutdown_timeout_s" not in str(raw["args"])   # the args (what restarts replicas) never say it
    assert parse_app(copy.deepcopy(raw)) == app


def test_the_front_end_carries_the_bound_too_and_reads_back_as_written():
    front = FrontendApp.of([], 2, 600.0)
    raw = render_app(front)
    assert {k: raw["deployments"][0][k] for k in drain(0)} == drain(600.0)
    assert parse_app(copy.deepcopy(raw)) == front
    assert "graceful_shutdown_timeout_s" not in render_app(FrontendApp.of([], 2))["deployments"][0]


def test_a_poll_changed_behind_argus_s_back_is_not_what_argus_wants():
    app = ModelApp.of(ModelDeployment.of("k", SPEC, CPU), "llm-k")
    raw = copy.deepcopy(render_app(app))
    raw["deployments"][0]["graceful_shutdown_wait_loop_s"] = 30.0
    assert type(parse_app(raw)).__name__ == "OtherApp"


def _serving(settings: LlmSettings, spec: ResolvedServingSpec = SPEC) -> tuple[DesiredModel, Observed]:
    """A RUNNING model and what Serve reports once it took the config argus wrote with `settings`."""
    model = DesiredModel("k", spec.model_id, "RUNNING", 1, spec, was_running=True, ran_this_generation=True,
                         applied_generation=1)
    observed = Observed()
    for _ in range(3):
        step = plan([model], observed, capacity=None, settings=settings, serve=SERVE)
        if step.apply is None:
            return model, observed
        apps = {}
        for raw in step.apply.to_json()["applications"]:
            deps = {d["name"]: ObservedDeployment("HEALTHY", "", 2, 2) for d in raw["deployments"]}
            apps[raw["name"]] = ObservedApp("RUNNING", "", raw, deps, name=raw["name"])
        observed = Observed(apps)
    raise AssertionError("the plan never settled")


@pytest.mark.parametrize("before", [600.0, None], ids=["another bound", "an older argus's app (Ray's default)"])
@pytest.mark.parametrize("spec", [SPEC, AUTO], ids=["fixed", "autoscaled"])
def test_a_changed_bound_is_applied_in_place_with_no_transition(before, spec):
    model, observed = _serving(llm_settings(accelerator_type="cpu", drain_timeout_s=before), spec)
    step = plan([model], observed, capacity=None, settings=llm_settings(accelerator_type="cpu", drain_timeout_s=90.0),
                serve=SERVE)
    assert step.transitions == []            # no rollout, no DRIFT_REPAIRED: the same replicas run on
    assert step.apply is not None
    written = {a["name"]: a for a in step.apply.to_json()["applications"]}
    had = {a.name: render_app(a.config) for a in observed.apps.values()}
    assert written["llm-k"]["args"] == had["llm-k"]["args"]   # byte-stable: Serve restarts no replica
    assert {k: written["llm-k"]["deployments"][0][k] for k in drain(0)} == drain(90.0)
    assert {k: written["argus"]["deployments"][0][k] for k in drain(0)} == drain(90.0)

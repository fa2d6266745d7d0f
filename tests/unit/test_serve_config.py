"""serve_config: the typed Serve config renders to Serve's JSON and reads back from it as the
same object; anything argus-named that does not read back exactly is not taken for argus's
(so the plan replaces it). Ray's own schema checks the rendered JSON in
tests/integration/test_ray_contract.py."""
import copy

import pytest

from daemon.core.spec import ResolvedServingSpec
from daemon.replicas.names import BUILD_MODEL_APP, deployment_name, is_argus_app, model_app_name, probe_id, probed_model
from daemon.serving.llm_config import ModelDeployment
from daemon.serving.observe import AppStatus, DeploymentStatus, Observed, ObservedApp, observed_from_status
from daemon.serving.serve_config import (AdapterEntry, FrontendApp, HttpOptions, LeaseApp, ModelApp, OtherApp,
                                         Route, ServeConfig, Unavailable, parse_app, render_app)
from helpers import llm_settings

CPU = llm_settings(accelerator_type="cpu")


def deployment(key="k-a", replicas=1, adapters=False, max_model_len=None):
    spec = ResolvedServingSpec("alice", key, "alice-1", f"alice-1-{key}", f"/private/hf/{key}", replicas, 1,
                               {"max_model_len": max_model_len} if max_model_len else {},
                               adapters={"max_rank": 8, "max_loaded": 2, "users": ["bob"]} if adapters else None)
    return ModelDeployment.of(key, spec, CPU)


BASE = ModelApp.of(deployment("k-base", adapters=True, max_model_len=2048), model_app_name("k-base"),
                   {"bob-1-t": AdapterEntry("/private/users/bob/t", 3, "bob")})
PLAIN = ModelApp.of(deployment("k-plain", replicas=2), model_app_name("k-plain"))
FRONT = FrontendApp.of([PLAIN.route(), BASE.route(),
                        Route("bob-1-t", BASE.name, BASE.deployment_name, 2048, base_model=BASE.deployment.model_id),
                        Route(probe_id(PLAIN.deployment.model_id), "llm-k-plain-next", PLAIN.deployment_name, probe=True),
                        Route("carol-1-starting", "", "", unavailable=Unavailable(503, "model x is starting", 10))], 2)
LEASE = LeaseApp({"holder": "h", "epoch": 2, "beat": 5})


@pytest.mark.parametrize("app", [BASE, PLAIN, FRONT, LEASE], ids=["model+adapters", "model", "front end", "lease"])
def test_every_app_reads_back_as_the_object_it_was_rendered_from(app):
    assert parse_app(copy.deepcopy(render_app(app))) == app


def test_a_probe_id_names_its_model_and_no_public_id_is_a_probe_id():
    assert probed_model(probe_id("alice-202612010000-m")) == "alice-202612010000-m"
    assert probed_model("alice-202612010000-m") is None
    assert probed_model(None) is None and probed_model(probe_id("")) is None


def test_a_model_that_takes_adapters_has_a_table_and_one_that_does_not_has_none():
    assert ModelApp.of(deployment("k-a", adapters=True), "llm-k-a").adapters == {}
    assert ModelApp.of(deployment("k-a"), "llm-k-a", {"x": AdapterEntry("/p", 1, "bob")}).adapters is None
    assert "user_config" not in render_app(PLAIN)["deployments"][0]


def _edited(app, edit):
    raw = copy.deepcopy(render_app(app))
    edit(raw)
    return raw


@pytest.mark.parametrize("name, edit, expected", [
    # An older argus's import path: still the model's app (what runs now), but not what argus wants.
    ("old import path", lambda r: r.update(import_path="daemon.frontend:build_model_app"), "ModelApp"),
    ("a route of its own", lambda r: r.update(route_prefix="/mine"), "OtherApp"),
    ("a runtime_env set by hand", lambda r: r.update(runtime_env={"pip": ["x"]}), "OtherApp"),
    ("no llm_config", lambda r: r.update(args={}), "OtherApp"),
    ("another deployment", lambda r: r["deployments"][0].update(name="LLMServer:other"), "OtherApp"),
    ("scaled by hand", lambda r: r["deployments"][0].update(num_replicas=5), "ModelApp"),
    ("an adapter entry without its owner", lambda r: r["deployments"][0]["user_config"]["adapters"]["bob-1-t"].pop(
        "user_id"), "OtherApp"),
])
def test_an_app_changed_behind_argus_s_back_never_equals_what_argus_wants(name, edit, expected):
    parsed = parse_app(_edited(BASE, edit))
    assert type(parsed).__name__ == expected
    assert parsed != BASE


def test_the_seed_s_single_app_reads_as_another_app_and_is_replaced_by_the_front_end():
    seed = {"name": "argus", "route_prefix": "/", "import_path": "ray.serve.llm:build_openai_app",
            "args": {"llm_configs": [BASE.deployment.llm_config]},
            "deployments": [{"name": deployment_name("k-base"), "num_replicas": 1}]}
    assert isinstance(parse_app(seed), OtherApp) and parse_app(seed) != FRONT


def test_a_front_end_of_an_older_argus_reads_as_another_app_and_is_replaced():
    """Its route table goes to its replicas in place; an older front end's code would misread a
    newer table, so one without this table version is replaced (restarted with the new code)."""
    older = _edited(FRONT, lambda r: r.update(args={}))
    assert isinstance(parse_app(older), OtherApp) and parse_app(older) != FRONT
    assert parse_app(render_app(FRONT)) == FRONT


def test_other_teams_apps_go_back_exactly_as_serve_reports_them():
    foreign = {"name": "team-b", "route_prefix": "/b", "import_path": "their:app", "runtime_env": {"pip": ["x"]},
               "deployments": [{"name": "D", "num_replicas": 3, "max_ongoing_requests": 7}]}
    assert not is_argus_app("team-b")
    assert parse_app(foreign) == OtherApp("team-b", foreign)
    observed = Observed({"team-b": ObservedApp("RUNNING", "", foreign, {}, name="team-b")})
    config = ServeConfig(HttpOptions("127.0.0.1", 8000, "HeadOnly"), (FRONT, *observed.foreign()))
    assert config.to_json()["applications"][1] == foreign


def test_two_generations_of_one_model_are_two_apps_and_the_route_says_which_serves():
    """What the route table allows (rollouts build on it): the same model in two apps, each read
    back as that model, and the public id routed to one of them."""
    new = ModelApp.of(deployment("k-plain", replicas=2, max_model_len=4096), "llm-k-plain-g2")
    status = {"applications": {a.name: {"status": "RUNNING", "deployed_app_config": render_app(a), "deployments": {
        a.deployment_name: {"status": "HEALTHY", "replicas": [{"state": "RUNNING"}]}}} for a in (PLAIN, new)}}
    observed = observed_from_status(status)
    assert observed.apps["llm-k-plain-g2"].config == new and observed.apps["llm-k-plain"].config == PLAIN
    assert observed.server("k-plain", "llm-k-plain-g2")[1].running_replicas == 1
    switched = FrontendApp.of([new.route()], 2)
    assert parse_app(render_app(switched)).route(PLAIN.deployment.model_id).app == "llm-k-plain-g2"


def test_config_json_is_sorted_and_names_its_http_options():
    config = ServeConfig(HttpOptions("0.0.0.0", 8000, "HeadOnly"), (PLAIN, LEASE, FRONT, BASE))
    out = config.to_json()
    assert [a["name"] for a in out["applications"]] == ["argus", "argus-lease", "llm-k-base", "llm-k-plain"]
    assert out["http_options"] == {"host": "0.0.0.0", "port": 8000} and out["proxy_location"] == "HeadOnly"
    assert out["applications"][2]["import_path"] == BUILD_MODEL_APP


@pytest.mark.parametrize("raw, app, deployment", [
    ({"status": "RUNNING", "deployments": {"D": {"status": "HEALTHY"}}}, AppStatus.RUNNING, DeploymentStatus.HEALTHY),
    ({"status": "DEPLOY_FAILED", "deployments": {"D": {"status": "DEPLOY_FAILED"}}}, AppStatus.DEPLOY_FAILED,
     DeploymentStatus.DEPLOY_FAILED),
    # A status a later Ray adds: UNKNOWN, acted on as nothing, never a crash of the tick.
    ({"status": "PAUSED", "deployments": {"D": {"status": "RESTARTING"}}}, AppStatus.UNKNOWN,
     DeploymentStatus.UNKNOWN),
])
def test_statuses_are_ray_s_names_as_enums(raw, app, deployment):
    observed = observed_from_status({"applications": {"x": raw}})
    assert observed.apps["x"].status is app and observed.apps["x"].deployments["D"].status is deployment

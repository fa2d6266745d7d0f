"""Suspended models in the reconcile decision, as tables: their apps leave the config, they are
SUSPENDED (once) when Serve no longer has them, their public id answers 503 with who suspended
them in which commit, their adapters wait, they take no GPU in admission, and resuming is an
ordinary deploy."""
import dataclasses

import pytest

from daemon.core.spec import ResolvedServingSpec
from daemon.serving.desired import DesiredModel
from daemon.serving.observe import Observed, ObservedApp, ObservedDeployment
from daemon.serving.placement import AdmissionMode, Capacity, NodeFree
from daemon.serving.plan import plan
from helpers import llm_settings, serve_settings

CPU = llm_settings(accelerator_type="cpu")
GPU = llm_settings(accelerator_type="H20")
SERVE = serve_settings()
SHA = "0123456789abcdef0123456789abcdef01234567"
MESSAGE = "model alice-1-a is suspended by Alice in 0123456; set suspended: false to resume"


def base(state="RUNNING", suspended=False, generation=1, gpus=1, key="a", **kw):
    spec = ResolvedServingSpec("alice", key, "alice-1", f"alice-1-{key}", "/private/hf/m", 1, gpus, {},
                               adapters={"max_rank": 8, "max_loaded": 2, "users": ["bob"]}, suspended=suspended)
    return DesiredModel(key, spec.model_id, state, generation, spec, was_running=True,
                        ran_this_generation=state == "RUNNING", applied_generation=1,
                        author="Alice <alice@example.com>", commit=SHA, **kw)


def adapter(state="RUNNING"):
    spec = ResolvedServingSpec("bob", "tutor", "bob-1", "bob-1-tutor", "/private/users/bob/t", 0, 0, {},
                               base_model="alice-1-a")
    return DesiredModel("t", spec.model_id, state, 1, spec)


def answer(config):
    """What Serve reports once it took `config`, every deployment healthy."""
    apps = {}
    for app in config.to_json()["applications"]:
        deps = {d["name"]: ObservedDeployment("HEALTHY", "", d.get("num_replicas", 1), d.get("num_replicas", 1))
                for d in app["deployments"]}
        apps[app["name"]] = ObservedApp("RUNNING", "", app, deps, name=app["name"])
    return Observed(apps)


def settle(models, observed=None, **kw):
    observed = observed or Observed()
    for _ in range(4):
        p = plan(models, observed, capacity=None, settings=CPU, serve=SERVE, **kw)
        if p.apply is None:
            return observed
        observed = answer(p.apply)
    raise AssertionError("did not settle")


def routes(config):
    front = next(a for a in config.to_json()["applications"] if a["name"] == "argus")
    return {r["model_id"]: r for r in front["deployments"][0]["user_config"]["models"]}


def states(p):
    return [(t.model_key, t.state, t.event_type) for t in p.transitions]


def test_a_suspended_model_leaves_serve_then_is_suspended_once_and_answers_503_with_who_and_where():
    running = settle([base()])
    assert "llm-a" in running.apps
    # Sync queued the spec that says suspended: true (generation 2).
    queued = base("QUEUED", suspended=True, generation=2)
    p = plan([queued], running, capacity=None, settings=CPU, serve=SERVE)
    assert "llm-a" not in {a["name"] for a in p.apply.to_json()["applications"]}
    assert states(p) == []                                   # Serve still has it: not SUSPENDED yet
    assert routes(p.apply)["alice-1-a"]["unavailable"] == {"status": 503, "message": MESSAGE, "retry_after": None}
    gone = answer(p.apply)
    p2 = plan([queued], gone, capacity=None, settings=CPU, serve=SERVE)
    assert p2.apply is None
    (t,) = p2.transitions
    assert (t.state, t.event_type, t.payload) == ("SUSPENDED", "SUSPENDED", {"generation": 2, "message": MESSAGE})
    assert t.error_summary == MESSAGE                        # status's reason says who and where
    assert plan([dataclasses.replace(queued, state="SUSPENDED")], gone, capacity=None, settings=CPU,
                serve=SERVE).noop                            # once


def test_the_adapters_of_a_suspended_base_wait_queued():
    running = settle([base(), adapter()])
    assert "bob-1-tutor" in routes_of(running)
    p = plan([base("QUEUED", suspended=True, generation=2), adapter()], running, capacity=None, settings=CPU,
             serve=SERVE)
    (t,) = [t for t in p.transitions if t.model_key == "t"]
    assert (t.state, t.event_type, t.payload) == ("QUEUED", "WAITING_FOR_BASE",
                                                   {"message": "base alice-1-a is suspended"})
    # Not a 404: the adapter is declared and comes back with its base.
    assert routes(p.apply)["bob-1-tutor"]["unavailable"] == {
        "status": 503, "retry_after": None, "message": "adapter bob-1-tutor runs on model alice-1-a, which is "
        "suspended by Alice in 0123456; set suspended: false to resume"}
    assert routes(p.apply)["bob-1-tutor"]["app"] == ""   # no replica is asked


def routes_of(observed):
    return {r.model_id for r in observed.frontend().routes}


def test_a_suspended_model_takes_no_gpu_and_is_never_admitted():
    nothing_free = Capacity((NodeFree("n0", 0.0, 8.0, 4.0),), "H20", AdmissionMode.FIT)
    p = plan([base("QUEUED", suspended=True, gpus=4)], Observed(), capacity=nothing_free, settings=GPU, serve=SERVE)
    assert states(p) == [("a", "SUSPENDED", "SUSPENDED")]   # no PENDING_RESOURCES, no APPLIED
    assert [a["name"] for a in p.apply.to_json()["applications"]] == ["argus"]


def test_resuming_is_an_ordinary_deploy():
    suspended = plan([base("QUEUED", suspended=True)], Observed(), capacity=None, settings=CPU, serve=SERVE)
    p = plan([base("QUEUED", suspended=False, generation=3)], answer(suspended.apply), capacity=None, settings=CPU,
             serve=SERVE)
    assert states(p) == [("a", "DEPLOYING", "APPLIED")]
    assert "llm-a" in {a["name"] for a in p.apply.to_json()["applications"]}
    assert routes(p.apply)["alice-1-a"]["unavailable"]["message"] == "model alice-1-a is starting"


# ---- quotas -----------------------------------------------------------------------------------

from daemon.core.quota import GpuQuota  # noqa: E402

QUOTA = {"alice": GpuQuota(4, "users.alice.max_gpus")}


def scaled(key, state="QUEUED", min_replicas=1, max_replicas=4, gpus=2, **kw):
    spec = ResolvedServingSpec("alice", key, "alice-1", f"alice-1-{key}", "/private/hf/m", min_replicas, gpus, {},
                               autoscaling={"min_replicas": min_replicas, "max_replicas": max_replicas,
                                            "target_ongoing_requests": 16, "scale_down_delay_s": 300})
    return DesiredModel(key, spec.model_id, state, 1, spec, **kw)


# (alice's other models, the queued one, admitted?, the message's numbers)
QUOTA_TABLE = [
    ([base("RUNNING", key="a", gpus=3)], base("QUEUED", key="b", gpus=2), False, "reserve 3, this one needs 2"),
    ([base("RUNNING", key="a", gpus=2)], base("QUEUED", key="b", gpus=2), True, None),        # exactly the quota
    ([base("RUNNING", key="a", gpus=3)], scaled("b", min_replicas=0), True, None),            # min 0 reserves none
    ([base("RUNNING", key="a", gpus=3)], scaled("b", min_replicas=1, gpus=1), True, None),    # max is not counted
    ([base("QUEUED", key="a", gpus=4, suspended=True)], base("QUEUED", key="b", gpus=4), True, None),  # suspended
    ([base("FAILED", key="a", gpus=4)], base("QUEUED", key="b", gpus=4), True, None),         # out of the config
]


def test_quota_table():
    for others, queued, admitted, numbers in QUOTA_TABLE:
        p = plan(others + [queued], Observed(), capacity=None, settings=CPU, serve=SERVE, quotas=QUOTA.get)
        mine = [(t.state, t.event_type) for t in p.transitions if t.model_key == queued.model_key]
        if admitted:
            assert mine == [("DEPLOYING", "APPLIED")], (queued.model_key, mine)
        else:
            assert mine == [("QUEUED", "QUOTA_EXCEEDED")]
            (t,) = [t for t in p.transitions if t.model_key == queued.model_key]
            assert "users.alice.max_gpus" in t.payload["message"] and numbers in t.payload["message"]
            assert t.error_summary == t.payload["message"]
            again = plan(others + [dataclasses.replace(queued, last_event=("QUOTA_EXCEEDED", t.payload))],
                         Observed(), capacity=None, settings=CPU, serve=SERVE, quotas=QUOTA.get)
            assert [t for t in again.transitions if t.model_key == queued.model_key] == []   # once


def test_an_update_over_quota_keeps_the_running_version_and_other_users_are_not_counted():
    running = settle([base(gpus=2)], quotas=QUOTA.get)
    bigger = dataclasses.replace(base("QUEUED", generation=2, gpus=2), spec=dataclasses.replace(
        base(gpus=2).spec, num_replicas=3))
    bob = DesiredModel("z", "bob-1-z", "RUNNING", 1, ResolvedServingSpec("bob", "z", "bob-1", "bob-1-z",
                                                                         "/private/hf/m", 1, 4, {}))
    p = plan([bigger, bob], running, capacity=None, settings=CPU, serve=SERVE, quotas=QUOTA.get)
    assert [(t.model_key, t.event_type) for t in p.transitions if t.model_key == "a"] == [("a", "QUOTA_EXCEEDED")]
    assert routes(p.apply)["alice-1-a"]["app"] == "llm-a"    # still served by what runs


@pytest.mark.parametrize("gpus_after, refused", [(3, False), (4, False), (5, True)])
def test_after_a_quota_was_lowered_only_growth_waits(gpus_after, refused):
    """alice's a (4 GPUs) and b (2) run; her quota is then lowered to 4. Shrinking a, or changing
    it without reserving more (a fix), goes out; growing it waits QUEUED (as the hook judges)."""
    running = settle([base(gpus=4), base(key="b", gpus=2)])
    changed = dataclasses.replace(base("QUEUED", generation=2, gpus=gpus_after),
                                  spec=dataclasses.replace(base(gpus=gpus_after).spec, engine_kwargs={"seed": 1}))
    p = plan([changed, base(key="b", gpus=2)], running, capacity=None, settings=CPU, serve=SERVE, quotas=QUOTA.get)
    mine = [t.event_type for t in p.transitions if t.model_key == "a"]
    assert mine == (["QUOTA_EXCEEDED"] if refused else ["ROLLOUT_STARTED"]), mine   # surge: beside the serving one

"""GPU admission of a change that only adds replicas to a generation Serve still starts: the
starting replicas are Ray's already (their placement groups are in Ray's usage), so only the
new ones are placed; and a change that waits for room keeps that generation as Serve holds it
(it is not taken out and started again later). Tables of the pure plan, Serve's side as it
would report each config (test_reconcile_plan.served), its statuses set per row."""
import pytest

from daemon.serving.observe import Observed
from daemon.serving.plan import plan
from helpers import serve_settings
from test_reconcile_plan import GPU, nodes, served
from test_rollout_plan import ID, T0, apps, front, model, states, with_status

SERVE = serve_settings()


def gpu_step(models, observed, free):
    return plan(models, observed, capacity=nodes(*free), settings=GPU, serve=SERVE, now=T0)


def held(config, observed):
    """Model app name -> (max_num_seqs, num_replicas) in the next config (None: Serve's stays as it is)."""
    apps = ([a for a in config.to_json()["applications"]] if config is not None
            else [app.deployed for app in observed.apps.values()])
    return {a["name"]: (a["args"]["llm_config"]["engine_kwargs"].get("max_num_seqs"), a["deployments"][0]["num_replicas"])
            for a in apps if a["name"].startswith("llm-")}


def first_deploy_starting():
    """Generation 1 (one replica of 1 GPU) applied and starting: Serve runs none of it yet."""
    p = gpu_step([model(1, "QUEUED", applied=None)], Observed(), (4,))
    return with_status(served(p.apply), "llm-a", "UPDATING", "DEPLOYING", running=0)


def candidate_starting():
    """Generation 1 serves from llm-a; generation 2 (max_num_seqs 8) starts beside it in llm-a-b."""
    observed = Observed()
    for _ in range(4):
        p = gpu_step([model()], observed, (4,))
        if p.apply is None:
            break
        observed = served(p.apply)
    p = gpu_step([model(2, "QUEUED", seqs=8)], observed, (4,))
    assert apps(p.apply) == {"llm-a": None, "llm-a-b": 8}
    return with_status(served(p.apply), "llm-a-b", "UPDATING", "DEPLOYING", running=0)


# (generation Serve starts, generation 3's spec, free GPUs Ray reports (the starting replica's
#  group already counted as used), what happens, the model apps after: name -> (max_num_seqs, replicas))
TABLE = [
    ("first deploy", dict(replicas=2, applied=None), (1,), ("DEPLOYING", "APPLIED"), {"llm-a": (None, 2)}),
    ("first deploy", dict(replicas=2, applied=None), (0,), ("QUEUED", "PENDING_RESOURCES"), {"llm-a": (None, 1)}),
    ("candidate", dict(replicas=2, seqs=8), (1,), ("DEPLOYING", "ROLLOUT_STARTED"),
     {"llm-a": (None, 1), "llm-a-b": (8, 2)}),
    # No room: the change waits, and the candidate keeps starting as Serve has it (not restarted).
    ("candidate", dict(replicas=2, seqs=8), (0,), ("QUEUED", "PENDING_RESOURCES"),
     {"llm-a": (None, 1), "llm-a-b": (8, 1)}),
    # A new engine is placed whole; the candidate it supersedes goes while it waits.
    ("candidate", dict(seqs=16), (1,), ("DEPLOYING", "ROLLOUT_STARTED"), {"llm-a": (None, 1), "llm-a-b": (16, 1)}),
    ("candidate", dict(seqs=16), (0,), ("QUEUED", "PENDING_RESOURCES"), {"llm-a": (None, 1)}),
]


@pytest.mark.parametrize("starting, change, free, outcome, after", TABLE)
def test_adding_replicas_to_a_starting_generation_places_only_the_new_ones(starting, change, free, outcome, after):
    observed = first_deploy_starting() if starting == "first deploy" else candidate_starting()
    p = gpu_step([model(3, "QUEUED", **change)], observed, free)
    assert [(s, e) for _, s, e in states(p)] == [outcome]
    if outcome[1] == "PENDING_RESOURCES":
        assert p.transitions[0].payload["message"].startswith("needs 1 H20 GPU")   # one replica, not two
    assert held(p.apply, observed) == after
    if starting == "candidate" and p.apply is not None:
        assert front(p.apply)[ID] == ("llm-a", False, None)      # the serving generation keeps the public id
    if after.get("llm-a-b") == (8, 1):
        # The candidate goes back exactly as Serve runs it: Serve restarts nothing of it.
        kept = next(a for a in p.apply.to_json()["applications"] if a["name"] == "llm-a-b")
        assert kept == observed.apps["llm-a-b"].deployed


def serving_recreate(free):
    """Generation 1 (one replica of 1 GPU, strategy recreate) serves from llm-a."""
    observed = Observed()
    for _ in range(4):
        p = gpu_step([model(strategy="recreate")], observed, free)
        if p.apply is None:
            return observed
        observed = served(p.apply)
    raise AssertionError("did not settle")


AUTO = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16, "scale_down_delay_s": 300}


@pytest.mark.parametrize("change, free, outcome", [
    # The cluster's one GPU is the serving replica's: recreate replaces it in place (Serve stops
    # it first), so the new engine needs no GPU more. Before, admission asked for room for both
    # and the change waited forever.
    (dict(seqs=8), (0,), ("DEPLOYING", "APPLIED")),
    (dict(autoscaling=AUTO), (0,), ("DEPLOYING", "APPLIED")),       # fixed -> autoscaled, recreate
    (dict(seqs=8, replicas=2), (0,), ("QUEUED", "PENDING_RESOURCES")),   # one replica more: it needs room
    (dict(seqs=8, replicas=2), (1,), ("DEPLOYING", "APPLIED")),
])
def test_a_recreate_replaces_in_place_on_the_gpus_its_serving_replicas_hold(change, free, outcome):
    import dataclasses
    observed = serving_recreate((1,))
    auto = change.pop("autoscaling", None)
    wanted = model(2, "QUEUED", strategy="recreate", **change)
    if auto is not None:
        wanted = dataclasses.replace(wanted, spec=dataclasses.replace(wanted.spec, autoscaling=auto))
    p = gpu_step([wanted], observed, free)
    assert [(s, e) for _, s, e in states(p)] == [outcome]
    names = [a["name"] for a in (p.apply.to_json()["applications"] if p.apply is not None
                                 else [app.deployed for app in observed.apps.values()])]
    assert [n for n in names if n.startswith("llm-")] == ["llm-a"]   # in place: never a second app

"""Canary rollouts (docs/serving.md, "Canary"): the spec's rollout.canary_percent/canary_seconds
as the one verdict checks them, the canary decision as a table, and the plan that splits a
model's requests between its serving and its new generation, then switches or rolls back."""
import pytest

from daemon.core.spec import MAX_CANARY_SECONDS, MIN_CANARY_SECONDS, parse_spec, spec_json_schema
from daemon.errors import SpecError
from helpers import spec_policy

HEAD = "model_id: m\nmodel_source: $HOME/common/hf/m\n"


@pytest.mark.parametrize("text, expected", [
    (HEAD + "rollout: {canary_percent: 10, canary_seconds: 300}\n", []),
    (HEAD + "rollout: {strategy: surge, canary_percent: 99, canary_seconds: 86400}\n", []),
    (HEAD + "rollout: {canary_percent: 1, canary_seconds: 60}\n", []),
    (HEAD + "rollout:\n  canary_percent: 0\n  canary_seconds: 300\n",
     [(4, 19, "rollout.canary_percent input should be greater than or equal to 1, got 0")]),
    (HEAD + "rollout:\n  canary_percent: 100\n  canary_seconds: 300\n",
     [(4, 19, "rollout.canary_percent input should be less than or equal to 99, got 100")]),
    (HEAD + "rollout:\n  canary_percent: 10\n  canary_seconds: 30\n",
     [(5, 19, f"rollout.canary_seconds input should be greater than or equal to {MIN_CANARY_SECONDS}, got 30")]),
    (HEAD + "rollout:\n  canary_percent: 10\n  canary_seconds: 90000\n",
     [(5, 19, f"rollout.canary_seconds input should be less than or equal to {MAX_CANARY_SECONDS}, got 90000")]),
    (HEAD + "rollout:\n  canary_percent: 10.5\n  canary_seconds: 300\n",
     [(4, 19, "rollout.canary_percent must be a whole number, got 10.5 (a decimal)")]),
    (HEAD + "rollout:\n  canary_percent: 10\n",
     [(4, 3, "rollout.canary_percent needs rollout.canary_seconds (how long the canary lasts, 60 to 86400); add it")]),
    (HEAD + "rollout:\n  canary_seconds: 300\n",
     [(4, 3, "rollout.canary_seconds needs rollout.canary_percent (the share of requests the new generation "
             "takes, 1 to 99); add it")]),
    (HEAD + "rollout:\n  strategy: recreate\n  canary_percent: 10\n  canary_seconds: 300\n",
     [(5, 3, "rollout.canary_percent needs strategy surge: with recreate no generation serves beside the new one "
             "to share requests with; remove the canary fields or the strategy")]),
    (HEAD + "rollout:\n  canary_percent: 10\n  canary_seconds: 300\n  canary_share: 5\n",
     [(6, 3, "unknown field 'rollout.canary_share'; did you mean 'canary_seconds'?")]),
    ("model_id: t\nbase_model: m\nmodel_source: $HOME/a\nrollout: {canary_percent: 10, canary_seconds: 300}\n",
     [(4, 1, "rollout is not taken by an adapter spec (base_model is set): an adapter runs on its base model's "
             "replicas; remove it")]),
])
def test_the_canary_fields_are_checked_with_their_place_and_a_fix(text, expected):
    try:
        parsed = parse_spec("s.yaml", text.encode(), "alice", spec_policy(root="/private"))
    except SpecError as exc:
        assert [(p.line, p.col, p.message) for p in exc.problems] == expected
        return
    assert expected == []
    assert 1 <= parsed.spec.rollout.canary_percent <= 99


def test_the_resolved_spec_names_its_canary_and_keeps_other_models_stored_forms():
    from datetime import datetime, timezone

    from daemon.core.spec import resolve_spec
    policy = spec_policy(root="/private")
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def resolved(text):
        parsed = parse_spec("s.yaml", text.encode(), "alice", policy)
        return resolve_spec(parsed.spec, "alice", at, policy, parsed.model_source)

    assert resolved(HEAD + "rollout: {canary_percent: 10, canary_seconds: 300}\n").canary == (10, 300)
    recreate = resolved(HEAD + "rollout: {strategy: recreate}\n")
    assert recreate.canary is None and recreate.to_dict()["rollout"] == {"strategy": "recreate"}
    assert resolved(HEAD).canary is None


def test_the_schema_lists_the_canary_fields_with_their_bounds():
    rollout = spec_json_schema()["$defs"]["RolloutPolicy"]["properties"]
    percent = rollout["canary_percent"]["anyOf"][0]
    seconds = rollout["canary_seconds"]["anyOf"][0]
    assert (percent["minimum"], percent["maximum"]) == (1, 99)
    assert (seconds["minimum"], seconds["maximum"]) == (MIN_CANARY_SECONDS, MAX_CANARY_SECONDS)


# --- the decision, as a table ---------------------------------------------------------------
from dataclasses import replace  # noqa: E402
from datetime import timedelta  # noqa: E402

from daemon.core.spec import ResolvedServingSpec  # noqa: E402
from daemon.core.traffic import Counts  # noqa: E402
from daemon.serving.desired import DesiredModel  # noqa: E402
from daemon.serving.rollout import (MIN_CANARY_REQUESTS, ROLLOUT_START_TIMEOUT_S, CanaryEvidence,  # noqa: E402
                                    CanaryStep, canary_verdict)
from test_rollout_plan import ID, T0, adapter, served, states, step, with_status  # noqa: E402

START = T0 + timedelta(minutes=5)
END = START + timedelta(seconds=300)


def evidence(new=None, old=None, at=START, read_from=START + timedelta(seconds=10), read_seconds=290.0):
    """What the watch gives: counts per app, read from 10 s into the canary (its first scrape
    follows its start by a tick), unless a row says otherwise (a restarted argusd)."""
    counts = {}
    if new is not None:
        counts["llm-a-b"] = Counts(*new)
    if old is not None:
        counts["llm-a"] = Counts(*old)
    return CanaryEvidence(at, counts, read_from, read_seconds)


def late(seconds):
    return START + timedelta(seconds=seconds)


ROLLED = "its failure rate in the canary was significantly above the serving one's"
PARTIAL = "; over only 100 s of the canary read (argusd restarted or could not read Ray's metrics)"


@pytest.mark.parametrize("ev, now, step_, why", [
    (evidence((100, 50), (900, 0)), END - timedelta(seconds=1), CanaryStep.WAIT, ""),
    (evidence((100, 0), (900, 0)), END, CanaryStep.SWITCH,
     "canary passed (generation 2: 0 of 100 requests failed (0.0 %); generation 1: 0 of 900 requests failed (0.0 %))"),
    (evidence((100, 1), (900, 9)), END, CanaryStep.SWITCH,      # equal rates: not above
     "canary passed (generation 2: 1 of 100 requests failed (1.0 %); generation 1: 9 of 900 requests failed (1.0 %))"),
    # One or two failures more than the serving rate are chance, not evidence (this row rolled back
    # while any excess did; z = 0.9 and 1.7 here): the reviewer's n=100 at 1 % and n=300 at 2 %.
    (evidence((100, 2), (900, 9)), END, CanaryStep.SWITCH,
     "canary passed (generation 2: 2 of 100 requests failed (2.0 %); generation 1: 9 of 900 requests failed (1.0 %))"),
    (evidence((100, 3), (900, 9)), END, CanaryStep.SWITCH,
     "canary passed (generation 2: 3 of 100 requests failed (3.0 %); generation 1: 9 of 900 requests failed (1.0 %))"),
    (evidence((300, 9), (2700, 54)), END, CanaryStep.SWITCH,
     "canary passed (generation 2: 9 of 300 requests failed (3.0 %); generation 1: 54 of 2700 requests failed (2.0 %))"),
    (evidence((80, 12), (700, 3)), END, CanaryStep.ROLL_BACK,   # a clear excess
     f"{ROLLED} (z = 9.0 > 2; generation 2: 12 of 80 requests failed (15.0 %); "
     "generation 1: 3 of 700 requests failed (0.4 %))"),
    (evidence((100, 6), (900, 9)), END, CanaryStep.ROLL_BACK,   # 6 % against 1 %
     f"{ROLLED} (z = 3.9 > 2; generation 2: 6 of 100 requests failed (6.0 %); "
     "generation 1: 9 of 900 requests failed (1.0 %))"),
    (evidence((MIN_CANARY_REQUESTS, 1), None), END, CanaryStep.SWITCH,   # the serving one had no request
     "failure rates not compared: generation 1 got no request in the canary"),
    (evidence((MIN_CANARY_REQUESTS - 1, MIN_CANARY_REQUESTS - 1), (900, 0)), END, CanaryStep.SWITCH,
     "failure rates not compared: generation 2 got 19 requests in its canary, fewer than 20"),
    (evidence(None, (900, 0)), END, CanaryStep.SWITCH,
     "failure rates not compared: generation 2 got 0 requests in its canary, fewer than 20"),
    # Metrics read from the start but with gaps (Ray's metrics down a while): the window covers it.
    (evidence((100, 0), (900, 0), read_seconds=100), END, CanaryStep.SWITCH,
     "canary passed (generation 2: 0 of 100 requests failed (0.0 %); generation 1: 0 of 900 requests failed (0.0 %))"),
    # argusd restarted: nothing read yet at the end, it waits (it switched "not compared" here);
    # at the cap (the end plus canary_seconds) it decides on what there is, saying so.
    (CanaryEvidence(START, None), END, CanaryStep.WAIT,
     "waiting for 300 s of Ray metrics over the canary (read 0 s: argusd restarted or could not read them)"),
    (CanaryEvidence(START, None), late(600), CanaryStep.SWITCH,
     "failure rates not compared: argusd read no Ray metrics over the canary (waited 600 s)"),
    # Restarted long after the end (argusd was down): it waits a canary's length from its start.
    (CanaryEvidence(START, None, watched_from=late(1000)), late(1000), CanaryStep.WAIT,
     "waiting for 300 s of Ray metrics over the canary (read 0 s: argusd restarted or could not read them)"),
    (CanaryEvidence(START, None, watched_from=late(1000)), late(1300), CanaryStep.SWITCH,
     "failure rates not compared: argusd read no Ray metrics over the canary (waited 1300 s)"),
    # Restarted 250 s in: 50 s read at the end (5 requests on the new generation: it switched
    # "not compared" here), so it waits until 300 s were read, then decides over them.
    (evidence((5, 3), (45, 0), read_from=late(250), read_seconds=50), END, CanaryStep.WAIT,
     "waiting for 300 s of Ray metrics over the canary (read 50 s: argusd restarted or could not read them)"),
    (evidence((30, 18), (270, 3), read_from=late(250), read_seconds=300), late(550), CanaryStep.ROLL_BACK,
     f"{ROLLED} (z = 12.0 > 2; generation 2: 18 of 30 requests failed (60.0 %); "
     "generation 1: 3 of 270 requests failed (1.1 %))"),
    (evidence((30, 18), (270, 3), read_from=late(500), read_seconds=100), late(600), CanaryStep.ROLL_BACK,
     f"{ROLLED} (z = 12.0 > 2; generation 2: 18 of 30 requests failed (60.0 %); "
     f"generation 1: 3 of 270 requests failed (1.1 %){PARTIAL})"),
    (evidence((10, 0), (90, 0), read_from=late(500), read_seconds=100), late(600), CanaryStep.SWITCH,
     f"failure rates not compared: generation 2 got 10 requests in its canary, fewer than 20{PARTIAL}"),
])
def test_the_canary_ends_in_a_switch_unless_the_new_generation_failed_significantly_more(ev, now, step_, why):
    assert canary_verdict(300, ev, "llm-a-b", "llm-a", 2, 1, now) == (step_, why)


def _binomial(n, p):
    """P(k failures of n) for every k that is not negligible."""
    from math import exp, lgamma, log
    out = []
    for k in range(n + 1):
        pk = exp(lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1) + k * log(p) + (n - k) * log(1 - p))
        if pk > 1e-12:
            out.append((k, pk))
    return out


@pytest.mark.parametrize("n, p", [(100, 0.01), (300, 0.02), (1000, 0.05), (20, 0.1)])
def test_a_healthy_canary_of_the_same_failure_rate_is_rarely_rolled_back(n, p):
    """Exactly (both binomial, a 10 % canary: the serving generation gets 9 times the requests):
    how often the rule rolls back a new generation that fails exactly as often as the serving
    one. The old rule ("any excess") did so 43-49 % of the time in these cases; z > 2 does 2.6-4.0 %
    (4.0 % at n=100, p=1 %: with few failures the normal approximation is coarse)."""
    from daemon.serving.rollout import ROLLBACK_Z, excess_z
    old_n = 9 * n
    new_dist, old_dist = _binomial(n, p), _binomial(old_n, p)
    by_z = sum(pn * po for kn, pn in new_dist for ko, po in old_dist
               if excess_z(Counts(n, kn), Counts(old_n, ko)) > ROLLBACK_Z)
    by_excess = sum(pn * po for kn, pn in new_dist for ko, po in old_dist if kn / n > ko / old_n)
    assert by_z < 0.05 and by_excess > 0.2, (by_z, by_excess)


@pytest.mark.parametrize("new, old, z", [
    (Counts(0, 0), Counts(100, 1), None), (Counts(100, 1), Counts(0, 0), None),
    (Counts(100, 0), Counts(900, 0), 0.0), (Counts(100, 100), Counts(900, 900), 0.0),
    (Counts(100, 0), Counts(900, 90), -3.3),
])
def test_the_excess_is_measured_in_standard_errors(new, old, z):
    from daemon.serving.rollout import excess_z
    got = excess_z(new, old)
    assert got == z if z is None else round(got, 1) == z


# --- the plan: split, then switch or roll back ----------------------------------------------

POLICY = {"max_rank": 8, "max_loaded": 2, "users": ["bob"]}


def cmodel(generation=1, state="RUNNING", applied=1, seqs=None, canary=(10, 300), adapters=None):
    rollout = {"canary_percent": canary[0], "canary_seconds": canary[1]} if canary else None
    spec = ResolvedServingSpec(user_id="alice", model_id_suffix="a", model_id_prefix="alice-202601010000",
                               model_id=ID, model_source="/private/hf/m", num_replicas=1, gpus_per_replica=1,
                               engine_kwargs={"max_num_seqs": seqs} if seqs else {}, rollout=rollout,
                               adapters=adapters)
    return DesiredModel("a", ID, state, generation, spec, None, None, was_running=applied is not None,
                        ran_this_generation=applied == generation, applied_generation=applied, applied_at=T0)


def front(config):
    """Front-end entries: model id -> (app, probe, canary as (app, percent) or None)."""
    argus = next(a for a in config.to_json()["applications"] if a["name"] == "argus")
    return {r["model_id"]: (r["app"], r.get("probe", False),
                            (r["canary"]["app"], r["canary"]["percent"]) if "canary" in r else None)
            for r in argus["deployments"][0]["user_config"]["models"]}


def model_apps(config):
    return sorted(a["name"] for a in config.to_json()["applications"] if a["name"].startswith("llm-"))


@pytest.fixture
def ready():
    """Generation 1 serves; generation 2 (with a canary of 10 % for 300 s) is up beside it, its
    probe route in the front end."""
    from test_rollout_plan import settled
    gen1 = settled([cmodel()])
    p = step([cmodel(2, "QUEUED", seqs=8)], gen1)
    assert states(p) == [("a", "DEPLOYING", "ROLLOUT_STARTED")]
    return with_status(served(p.apply), "llm-a-b", running=1)


def test_a_probed_candidate_takes_its_canary_share_of_the_model_and_its_adapters():
    from test_rollout_plan import settled
    gen1 = settled([cmodel(adapters=POLICY), adapter()])
    started = step([cmodel(2, "QUEUED", seqs=8, adapters=POLICY), adapter()], gen1)
    ready = served(started.apply)
    deploying = cmodel(2, "DEPLOYING", seqs=8, adapters=POLICY)
    p = step([deploying, adapter()], ready, rollout_probes={"a": None}, now=START)
    assert states(p) == [("a", "DEPLOYING", "CANARY_STARTED")]
    t = p.transitions[0]
    assert t.error_summary == "generation 2 takes 10 % beside generation 1 (serving) for 300 s (canary)"
    assert (t.payload["percent"], t.payload["seconds"]) == (10, 300)
    assert model_apps(p.apply) == ["llm-a", "llm-a-b"]
    # No probe route any more: the candidate is asked by clients now, 10 % of them.
    assert front(p.apply) == {ID: ("llm-a", False, ("llm-a-b", 10)),
                              "bob-202601010010-tutor": ("llm-a", False, ("llm-a-b", 10))}
    # While it lasts, nothing changes (the store says the canary began; Serve runs the split).
    during = served(p.apply)
    assert step([deploying, adapter()], during, canaries={"a": evidence((5, 0), (50, 0))},
                now=END - timedelta(seconds=1)).noop


def test_a_canary_with_fewer_failures_switches_at_its_end_and_the_old_generation_drains(ready):
    deploying = cmodel(2, "DEPLOYING", seqs=8)
    during = served(step([deploying], ready, rollout_probes={"a": None}, now=START).apply)
    p = step([deploying], during, canaries={"a": evidence((100, 0), (900, 3))}, now=END)
    assert states(p) == [("a", "RUNNING", "SWITCHED")]
    assert p.transitions[0].payload["message"] == (
        "switched from generation 1 to 2: canary passed (generation 2: 0 of 100 requests failed (0.0 %); "
        "generation 1: 3 of 900 requests failed (0.3 %))")
    assert front(p.apply) == {ID: ("llm-a-b", False, None)}
    q = step([cmodel(2, "RUNNING", applied=2, seqs=8)], served(p.apply), now=END)
    assert model_apps(q.apply) == ["llm-a-b"]


def test_a_canary_that_failed_more_rolls_back_naming_both_rates(ready):
    deploying = cmodel(2, "DEPLOYING", seqs=8)
    during = served(step([deploying], ready, rollout_probes={"a": None}, now=START).apply)
    p = step([deploying], during, canaries={"a": evidence((100, 30), (900, 3))}, now=END)
    assert states(p) == [("a", "FAILED", "ROLLED_BACK")]
    assert p.transitions[0].error_summary.startswith("generation 2 failed: its failure rate in the canary was "
                                                     "significantly above the serving one's (z = 15.8 > 2; "
                                                     "generation 2: 30 of 100 requests failed")
    assert p.transitions[0].error_summary.endswith("; serving generation 1")
    assert front(p.apply) == {ID: ("llm-a", False, None)}
    assert model_apps(p.apply) == ["llm-a"]


def test_a_candidate_that_breaks_during_its_canary_rolls_back_at_once(ready):
    deploying = cmodel(2, "DEPLOYING", seqs=8)
    during = served(step([deploying], ready, rollout_probes={"a": None}, now=START).apply)
    broken = with_status(during, "llm-a-b", "DEPLOY_FAILED", "DEPLOY_FAILED", running=0, message="engine died")
    p = step([deploying], broken, canaries={"a": evidence((3, 3), (30, 0))}, now=START + timedelta(seconds=10))
    assert states(p) == [("a", "FAILED", "ROLLED_BACK")]
    assert front(p.apply) == {ID: ("llm-a", False, None)}


def test_argusd_restarted_mid_canary_splits_the_same_way_and_a_long_canary_outlives_the_start_bound(ready):
    deploying = cmodel(2, "DEPLOYING", seqs=8, canary=(25, 3600))
    p = step([deploying], ready, rollout_probes={"a": None}, now=START)
    during = served(p.apply)
    late = START + timedelta(seconds=ROLLOUT_START_TIMEOUT_S)   # past the start bound, inside the canary
    # A restarted argusd: no counts read yet; the store's CANARY_STARTED says since when.
    assert step([deploying], during, canaries={"a": CanaryEvidence(START, None)}, now=late).noop
    # Serve lost the split (a front end replaced by hand): the same split goes back.
    again = step([deploying], ready, canaries={"a": CanaryEvidence(START, None)}, now=late)
    assert states(again) == [] and front(again.apply) == {ID: ("llm-a", False, ("llm-a-b", 25))}


@pytest.mark.parametrize("candidate, split", [
    ("running", True),
    ("restarting", False),     # its replica is starting again: no share of clients may wait on it
    ("lost", False),           # Serve lost its app (argusd puts it back): no share may go nowhere
])
def test_the_split_is_written_only_while_the_candidate_runs(ready, candidate, split):
    from daemon.serving.observe import Observed
    deploying = cmodel(2, "DEPLOYING", seqs=8)
    began = step([deploying], ready, rollout_probes={"a": None}, now=START)
    assert front(began.apply) == {ID: ("llm-a", False, ("llm-a-b", 10))}
    during = served(began.apply)
    if candidate == "restarting":
        during = with_status(during, "llm-a-b", "UPDATING", "DEPLOYING", running=0)
    elif candidate == "lost":
        during = Observed({name: app for name, app in during.apps.items() if name != "llm-a-b"})
    p = step([deploying], during, canaries={"a": evidence((5, 0), (50, 0))}, now=START + timedelta(seconds=30))
    assert states(p) == []
    if split:
        assert p.apply is None     # the split as written stays
    else:   # arranged as while probing: every client on the serving generation, the candidate put back
        assert model_apps(p.apply) == ["llm-a", "llm-a-b"]
        assert front(p.apply) == {ID: ("llm-a", False, None), f"{ID}@next": ("llm-a-b", True, None)}


def test_an_autoscaled_candidate_at_zero_keeps_its_split(ready):
    """min_replicas 0: Serve scaled the candidate to zero by its own decision; a request wakes it."""
    auto = {"min_replicas": 0, "max_replicas": 2, "target_ongoing_requests": 16, "scale_down_delay_s": 300}
    gen1 = __import__("test_rollout_plan").settled([cmodel()])
    deploying = cmodel(2, "DEPLOYING", seqs=8)
    deploying = replace(deploying, spec=replace(deploying.spec, num_replicas=0, autoscaling=auto))
    started = step([replace(deploying, state="QUEUED")], gen1)
    up = with_status(served(started.apply), "llm-a-b", running=0)
    began = step([deploying], up, rollout_probes={"a": None}, now=START)
    assert states(began) == [("a", "DEPLOYING", "CANARY_STARTED")]
    p = step([deploying], with_status(served(began.apply), "llm-a-b", running=0),
             canaries={"a": evidence((5, 0), (50, 0))}, now=START + timedelta(seconds=30))
    assert states(p) == [] and p.apply is None    # the split as written stays


def test_a_model_without_a_canary_switches_on_its_probe_as_before(ready):
    p = step([cmodel(2, "DEPLOYING", seqs=8, canary=None)], ready, rollout_probes={"a": None}, now=START)
    assert states(p) == [("a", "RUNNING", "SWITCHED")]


# --- the counts: per generation, over the canary's intervals only -----------------------------
from daemon.core.traffic import Scrape, TrafficPoint, app_counts, counts_since, parse_export  # noqa: E402
from daemon.traffic import ARGUS_NAMING, CanaryWatch  # noqa: E402


def export(ok_a, bad_a, ok_b, bad_b):
    """One node's export: model a's two generations (apps llm-a and llm-a-b), one replica each."""
    line = 'ray_serve_deployment_{}_counter_total{{application="{}",deployment="LLMServer:a",replica="{}",route="/"}} {}'
    return "\n".join([
        "# TYPE ray_serve_deployment_request_counter_total counter",
        line.format("request", "llm-a", "r1", ok_a), line.format("request", "llm-a-b", "r2", ok_b),
        "# TYPE ray_serve_deployment_error_counter_total counter",
        line.format("error", "llm-a", "r1", bad_a), line.format("error", "llm-a-b", "r2", bad_b)]) + "\n"


def scrape(at, *counts):
    return Scrape(at, {"n1": parse_export(export(*counts), ARGUS_NAMING)})


def test_each_generation_is_counted_apart():
    assert app_counts(scrape(0, 100, 1, 0, 0), scrape(30, 190, 2, 9, 3)) == {
        ("a", "llm-a"): Counts(91, 1), ("a", "llm-a-b"): Counts(12, 3)}
    # A replica restarted (its counter went down): it counted what it shows since.
    assert app_counts(scrape(0, 100, 1, 50, 5), scrape(30, 190, 2, 4, 1))[("a", "llm-a-b")] == Counts(5, 1)


def test_only_intervals_that_began_in_the_canary_count():
    points = [TrafficPoint(30, 30, {}, apps={("a", "llm-a"): Counts(10, 1)}),
              TrafficPoint(60, 30, {}, apps={("a", "llm-a"): Counts(20, 0), ("a", "llm-a-b"): Counts(4, 1)}),
              TrafficPoint(90, 30, {}, problem="down"),
              TrafficPoint(120, 30, {}, apps={("a", "llm-a-b"): Counts(6, 0), ("b", "llm-b"): Counts(9, 9)})]
    assert counts_since(points, "a", 30) == {"llm-a": Counts(20, 0), "llm-a-b": Counts(10, 1)}
    assert counts_since(points, "a", 31) == {"llm-a-b": Counts(6, 0)}


class ScriptedSampler:
    """The sampler's side (HTTP to every Ray node) replaced by scrapes in turn."""

    def __init__(self, scrapes):
        self.scrapes = list(scrapes)
        self.calls = 0

    def scrape(self):
        self.calls += 1
        return self.scrapes.pop(0)


def test_the_watch_reads_metrics_only_while_a_canary_runs_and_gives_its_counts(tmp_path):
    from daemon.core.states import EventType
    from daemon.store import Store, iso
    store = Store.open(tmp_path / "state.db")
    began = 1_767_268_800.0          # 2026-01-01T12:00:00Z
    sampler = ScriptedSampler([scrape(began + 5, 100, 0, 0, 0), scrape(began + 35, 160, 1, 8, 4),
                               scrape(began + 65, 220, 1, 30, 4)])
    clock = [0.0]
    watch = CanaryWatch(sampler, 30, monotonic=lambda: clock[0], clock=lambda: began + 5)
    deploying = cmodel(2, "DEPLOYING", seqs=8)
    assert watch.evidence(store, [deploying]) == {} and sampler.calls == 0     # no canary: no scrape
    from datetime import datetime, timezone
    at = datetime.fromtimestamp(began, timezone.utc)
    with store.transaction():
        store.append_event(EventType.CANARY_STARTED, {"generation": 1}, now=iso(at), model_key="a")
    assert watch.evidence(store, [deploying]) == {}                             # another generation's canary
    with store.transaction():
        store.append_event(EventType.CANARY_STARTED, {"generation": 2}, now=iso(at), model_key="a")
    assert watch.evidence(store, [deploying]) == {   # one scrape: no interval yet; watched from now on
        "a": CanaryEvidence(at, None, watched_from=at + timedelta(seconds=5))}
    clock[0] = 10
    assert watch.evidence(store, [deploying])["a"].counts is None and sampler.calls == 1   # not due yet
    clock[0] = 30
    assert watch.evidence(store, [deploying])["a"].counts == {"llm-a": Counts(61, 1), "llm-a-b": Counts(12, 4)}
    clock[0] = 60
    read = watch.evidence(store, [deploying])["a"]
    assert read.counts == {"llm-a": Counts(121, 1), "llm-a-b": Counts(34, 4)}
    # Since when and how long it read: what canary_verdict needs to tell a restart's partial window.
    assert (read.read_from, read.read_seconds, read.interval_seconds) == (at + timedelta(seconds=5), 60, 30)
    assert watch.evidence(store, [cmodel(2, "RUNNING", applied=2, seqs=8)]) == {}   # switched: the watch stops
    store.close()


def test_argusctl_logs_shows_the_canarys_events_in_their_own_words(ready):
    from daemon.core.describe import describe_event
    from daemon.core.records import Event
    deploying = cmodel(2, "DEPLOYING", seqs=8)
    began = step([deploying], ready, rollout_probes={"a": None}, now=START).transitions[0]
    during = served(step([deploying], ready, rollout_probes={"a": None}, now=START).apply)
    ended = step([deploying], during, canaries={"a": evidence((100, 0), (900, 0))}, now=END).transitions[0]
    lines = [describe_event(Event(1, "a", "alice", None, "2026-01-01T12:05:00Z", t.event_type, t.payload))
             for t in (began, ended)]
    assert lines == ["generation 2 takes 10 % beside generation 1 (serving) for 300 s (canary)",
                     "switched from generation 1 to 2: canary passed (generation 2: 0 of 100 requests failed "
                     "(0.0 %); generation 1: 0 of 900 requests failed (0.0 %))"]


def test_two_generations_in_a_real_ray_capture_are_counted_apart():
    """tests/fixtures/ray_metrics: a real Ray 2.60's export before and after llm-k1 answered 3 and
    raised 1, llm-k1-g2 (the next generation of the same deployment) answered 2 and raised 2."""
    from pathlib import Path
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "ray_metrics"

    def read(name, at):
        return Scrape(at, {"n1": parse_export((fixtures / name).read_text(), ARGUS_NAMING)})
    assert app_counts(read("before.prom", 0), read("after.prom", 10)) == {
        ("k1", "llm-k1"): Counts(4, 1), ("k1", "llm-k1-g2"): Counts(4, 2), ("k2", "llm-k2"): Counts(1, 0)}


def test_a_commit_during_a_canary_ends_the_split_and_starts_its_own_generation(ready):
    """The shell gives evidence only for the canary of the model's current generation: a third
    generation committed mid-canary replaces the candidate, and its public id goes back to the
    serving generation alone until the new candidate answered (and has its own canary)."""
    during = served(step([cmodel(2, "DEPLOYING", seqs=8)], ready, rollout_probes={"a": None}, now=START).apply)
    p = step([cmodel(3, "QUEUED", seqs=4)], during, canaries={}, now=START + timedelta(seconds=30))
    assert states(p) == [("a", "DEPLOYING", "ROLLOUT_STARTED")]
    assert front(p.apply) == {ID: ("llm-a", False, None), f"{ID}@next": ("llm-a-b", True, None)}


def test_where_the_front_end_counted_a_generation_its_count_is_the_one_compared():
    """The replicas count a request that raised; the front end also one the model server answered
    with an error (an ErrorResponse): its count wins for the apps it counted."""
    front = ('ray_argus_frontend_requests_total{{application="{}",deployment="LLMServer:a",outcome="{}",'
             'WorkerId="w"}} {}')

    def with_front(at, counts, front_counts):
        text = export(*counts) + "# TYPE ray_argus_frontend_requests_total counter\n" + "\n".join(
            front.format(app, outcome, value) for app, outcome, value in front_counts) + "\n"
        return Scrape(at, {"n1": parse_export(text, ARGUS_NAMING)})
    before = with_front(0, (100, 1, 0, 0), [("llm-a-b", "ok", 0)])
    after = with_front(30, (190, 2, 9, 0), [("llm-a-b", "ok", 6), ("llm-a-b", "failed", 3)])
    assert app_counts(before, after) == {("a", "llm-a"): Counts(91, 1),        # no front-end count: the replicas'
                                         ("a", "llm-a-b"): Counts(9, 3)}       # 3 errors its replicas did not see

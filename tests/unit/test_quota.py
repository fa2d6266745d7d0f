"""Per-user GPU quotas as tables: what a spec reserves (core/quota.py), which quota a user has
(Config.gpu_quota), the judge's rule 7 (core/verdict.py: a change that grows a user's
reservation over the quota is refused at its replicas line, nothing else is), and a users:
section of quotas only, which must not decide who may push (Config.owners)."""
from datetime import datetime, timezone

import pytest

from daemon.config import Config
from daemon.core.quota import GpuQuota, quota_message, quota_problem, reserved_gpus
from daemon.core.records import RejectionKind
from daemon.core.spec import ServingSpec, parse_spec, resolve_spec
from daemon.core.verdict import TreeEntry, UserFacts, judge, judge_quota, over_quota, read_user
from daemon.errors import ProblemKind
from helpers import spec_policy

POLICY = spec_policy(root="/private")
A, B, C = "models.d/alice/a.yaml", "models.d/alice/b.yaml", "models.d/alice/c.yaml"
FOUR = GpuQuota(4, "users.alice.max_gpus")


def model(model_id="m", **fields) -> ServingSpec:
    return ServingSpec(model_id=model_id, model_source="$HOME/common/hf/m", **fields)


SCALING = {"min_replicas": 1, "max_replicas": 8}


@pytest.mark.parametrize("spec, gpus", [
    (model(), 1),
    (model(num_replicas=3, gpus_per_replica=2), 6),
    (model(gpus_per_replica=2, autoscaling=SCALING), 2),                       # min_replicas, not max
    (model(gpus_per_replica=2, autoscaling={**SCALING, "min_replicas": 0}), 0),  # idle at zero: nothing
    (model(num_replicas=3, gpus_per_replica=2, suspended=True), 0),
    (model(gpus_per_replica=2, autoscaling=SCALING, suspended=True), 0),
    (ServingSpec(model_id="t", model_source="$HOME/a", base_model="m"), 0),    # an adapter: its base's replicas
])
def test_what_a_spec_reserves_written_and_resolved(spec, gpus):
    assert reserved_gpus(spec) == gpus
    resolved = resolve_spec(spec, "alice", datetime(2026, 12, 1, tzinfo=timezone.utc), POLICY, "/private/hf/m")
    assert reserved_gpus(resolved) == gpus   # admission (resolved) and the judge (written) count alike


@pytest.mark.parametrize("spec, others, quota, expected", [
    (model(num_replicas=2), [model(num_replicas=3)], FOUR, (3, 2)),
    (model(num_replicas=2), [model(num_replicas=2)], FOUR, None),                   # exactly the quota: fits
    (model(num_replicas=2), [model(num_replicas=3)], None, None),                   # no quota
    (model(num_replicas=5), [], FOUR, (0, 5)),                                      # alone over it
    (model(suspended=True), [model(num_replicas=9)], FOUR, None),                   # reserves nothing
    (model(autoscaling={**SCALING, "min_replicas": 0}), [model(num_replicas=9)], FOUR, None),
    (model(num_replicas=2), [model(num_replicas=3, suspended=True)], FOUR, None),   # suspended others count 0
    (model(), [], GpuQuota(0, "limits.max_gpus_per_user"), (0, 1)),                 # a quota of 0: nothing runs
])
def test_quota_problem(spec, others, quota, expected):
    found = quota_problem("alice", spec, others, quota)
    assert found == (None if expected is None else quota_message("alice", quota, *expected))


def test_the_quota_message_names_the_quota_what_is_held_and_the_fixes():
    assert quota_message("alice", FOUR, 3, 2) == (
        "over alice's GPU quota: 4 GPUs (users.alice.max_gpus), alice's other models reserve 3, this one needs 2; "
        "lower num_replicas or gpus_per_replica (with autoscaling, min_replicas: 0 reserves none while idle), "
        "suspend or delete another of alice's models, or ask an admin to raise users.alice.max_gpus")
    assert "quota: 1 GPU (" in quota_message("alice", GpuQuota(1, "x"), 0, 2)


@pytest.mark.parametrize("config, user, expected", [
    ({}, "alice", None),
    ({"users": {"alice": {"max_gpus": 4}}}, "alice", FOUR),
    ({"users": {"alice": {"max_gpus": 4}}}, "bob", None),
    ({"users": {"alice": {"max_gpus": 0}}}, "alice", GpuQuota(0, "users.alice.max_gpus")),
    ({"limits": {"max_gpus_per_user": 2}}, "bob", GpuQuota(2, "limits.max_gpus_per_user")),
    ({"limits": {"max_gpus_per_user": 2}, "users": {"alice": {"max_gpus": 4}}}, "alice", FOUR),  # her own wins
    ({"limits": {"max_gpus_per_user": 2}, "users": {"alice": {"git_identities": ["a@x"]}}}, "alice",
     GpuQuota(2, "limits.max_gpus_per_user")),                                   # listed, without a quota of her own
])
def test_which_quota_a_user_has(config, user, expected):
    assert Config.model_validate(config).gpu_quota(user) == expected


@pytest.mark.parametrize("users, owners", [
    ({}, {}),
    # quotas only: no ownership map, so every user may have models and anyone may push them
    ({"alice": {"max_gpus": 4}}, {}),
    # an entry with no identities says "nobody may change them", as before quotas existed
    ({"alice": {"max_gpus": 4}, "bob": {}}, {"alice": (), "bob": ()}),
    ({"alice": {}, "bob": {}}, {"alice": (), "bob": ()}),
    ({"alice": {"git_identities": []}}, {"alice": ()}),
    # one user with identities (or keys) makes it an ownership map: every listed user is in it
    ({"alice": {"git_identities": ["a@x"], "max_gpus": 4}, "bob": {"max_gpus": 2}},
     {"alice": ("a@x",), "bob": ()}),
    ({"alice": {"git_identities": ["a@x"]}}, {"alice": ("a@x",)}),
    ({"alice": {"signing_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a"]}},
     {"alice": ()}),
])
def test_a_users_section_of_quotas_only_is_no_ownership_map(users, owners):
    assert Config.model_validate({"users": users}).owners() == owners


def entry(path, text):
    return TreeEntry(path, f"blob-{path}", "100644", text.encode())


def spec(model_id, extra=""):
    return f"model_id: {model_id}\nmodel_source: $HOME/common/hf/m\n{extra}"


def judged(entries, quota=FOUR, before=None):
    facts = UserFacts("alice", tuple(entry(p, t) for p, t in entries), quota=quota)
    found = judge(facts, read_user(facts, POLICY), {}, POLICY)
    return {v.path: [(p.line, p.col, p.message) for p in v.problems]
            for v in judge_quota(facts, found, before or {})}, over_quota(facts, found)


MSG = quota_message


@pytest.mark.parametrize("name, entries, before, expected, over", [
    ("within the quota", [(A, spec("a", "num_replicas: 2\n")), (B, spec("b", "num_replicas: 2\n"))], {},
     {A: [], B: []}, False),
    ("no quota: never checked", [(A, spec("a", "num_replicas: 8\n"))], None, {A: []}, False),
    ("a new file over it: refused at num_replicas", [(A, spec("a", "num_replicas: 3\n")),
                                                     (B, spec("b", "num_replicas: 2\n"))], {A: 3},
     {A: [], B: [(3, 15, MSG("alice", FOUR, 3, 2))]}, True),
    ("at autoscaling.min_replicas", [(A, spec("a", "num_replicas: 3\n")),
                                     (B, spec("b", "gpus_per_replica: 2\nautoscaling:\n  min_replicas: 1\n"
                                                   "  max_replicas: 4\n"))], {A: 3},
     {A: [], B: [(5, 17, MSG("alice", FOUR, 3, 2))]}, True),
    ("at gpus_per_replica without num_replicas", [(A, spec("a", "num_replicas: 3\n")),
                                                  (B, spec("b", "gpus_per_replica: 2\n"))], {A: 3},
     {A: [], B: [(3, 19, MSG("alice", FOUR, 3, 2))]}, True),
    ("at model_id with neither", [(A, spec("a", "num_replicas: 4\n")), (B, spec("b"))], {A: 4},
     {A: [], B: [(1, 11, MSG("alice", FOUR, 4, 1))]}, True),
    ("a scale-up over it", [(A, spec("a", "num_replicas: 3\n")), (B, spec("b", "num_replicas: 2\n"))], {A: 3, B: 1},
     {A: [], B: [(3, 15, MSG("alice", FOUR, 3, 2))]}, True),
    ("two new files: both refused, each counting the other", [(A, spec("a", "num_replicas: 2\n")),
                                                              (B, spec("b", "num_replicas: 3\n"))], {},
     {A: [(3, 15, MSG("alice", FOUR, 3, 2))], B: [(3, 15, MSG("alice", FOUR, 2, 3))]}, True),
    # the quota was lowered since: changes that do not grow a reservation still apply
    ("over already, a scale-down applies", [(A, spec("a", "num_replicas: 5\n"))], {A: 6}, {A: []}, True),
    ("over already, an unchanged reservation applies", [(A, spec("a", "num_replicas: 5\n"))], {A: 5}, {A: []}, True),
    ("over already, a new suspended file applies", [(A, spec("a", "num_replicas: 5\n")),
                                                    (B, spec("b", "num_replicas: 2\nsuspended: true\n"))], {A: 5},
     {A: [], B: []}, True),
    ("a resume over it is refused", [(A, spec("a", "num_replicas: 3\n")),
                                     (B, spec("b", "num_replicas: 2\nsuspended: false\n"))], {A: 3, B: 0},
     {A: [], B: [(3, 15, MSG("alice", FOUR, 3, 2))]}, True),
    ("an invalid file counts nothing", [(A, spec("a", "num_replicas: 3\n")), (B, spec("b", "num_replicas: 0\n"))],
     {}, {A: [], B: [(3, 15, "num_replicas input should be greater than or equal to 1, got 0")]}, False),
])
def test_the_judge_refuses_growth_over_the_quota(name, entries, before, expected, over):
    found, is_over = judged(entries, quota=None if before is None else FOUR, before=before)
    assert (found, is_over) == (expected, over), name


def test_a_quota_refusal_is_a_spec_refusal_with_its_kind():
    facts = UserFacts("alice", (entry(A, spec("a", "num_replicas: 5\n")),), quota=FOUR)
    (verdict,) = judge_quota(facts, judge(facts, read_user(facts, POLICY), {}, POLICY), {})
    assert (verdict.applied, verdict.kind, verdict.problems[0].kind) == (False, RejectionKind.SPEC,
                                                                         ProblemKind.INVALID)
    assert verdict.text == spec("a", "num_replicas: 5\n")


def test_the_judge_and_parse_agree_on_what_is_reserved():
    """rule 7 counts the written spec (reserved_gpus of ServingSpec) as admission counts it resolved."""
    parsed = parse_spec("s.yaml", spec("a", "gpus_per_replica: 2\nautoscaling: {min_replicas: 2, max_replicas: 3}\n")
                        .encode(), "alice", POLICY)
    assert reserved_gpus(parsed.spec) == 4


@pytest.mark.parametrize("text, expected", [
    ("users:\n  alice:\n    max_gpus: -1\n",
     "c.yaml:3:15: users.alice.max_gpus input should be greater than or equal to 0, got -1"),
    ("users:\n  alice:\n    max_gpus: '4'\n", "c.yaml:3:15: users.alice.max_gpus must be a whole number, got '4'"),
    ("limits:\n  max_gpus_per_user: 1.5\n",
     "c.yaml:2:22: limits.max_gpus_per_user must be a whole number, got 1.5 (a decimal)"),
])
def test_a_bad_quota_is_one_error_at_its_line(tmp_path, text, expected):
    from daemon.config import load_config
    from daemon.errors import ConfigError

    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path / "c.yaml", env={})
    assert expected in str(raised.value)


def test_a_write_can_be_judged_against_the_quota_before_it_is_pushed():
    """judged_spec (the API's and apply's check) with the user's pushed files: rule 7 as the hook
    will judge the push; without them, as before (the file alone)."""
    from daemon.errors import SpecError
    from daemon.verdicts import judged_spec

    pushed = {A: spec("a", "num_replicas: 3\n").encode(), B: spec("b", "num_replicas: 1\n").encode()}
    new = spec("c", "num_replicas: 2\n").encode()
    with pytest.raises(SpecError) as refused:
        judged_spec(C, new, "alice", POLICY, quota=FOUR, pushed=pushed)
    assert [str(p) for p in refused.value.problems] == [f"{C}:3:15: {MSG('alice', FOUR, 4, 2)}"]
    assert judged_spec(C, new, "alice", POLICY).spec.model_id == "c"                 # no quota given
    assert judged_spec(B, spec("b", "num_replicas: 1\nsuspended: true\n").encode(), "alice", POLICY,
                       quota=FOUR, pushed=pushed).spec.suspended                      # reserves less: fine
    assert judged_spec(A, spec("a", "num_replicas: 3\nengine_kwargs: {max_model_len: 512}\n").encode(), "alice",
                       POLICY, quota=GpuQuota(2, "users.alice.max_gpus"), pushed=pushed)  # over, not growing

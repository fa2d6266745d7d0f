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

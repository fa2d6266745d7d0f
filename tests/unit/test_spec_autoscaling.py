"""The spec's autoscaling and suspended fields: each rule with its `line:col` and message, as
lint, the hook, argusd and the API all get it (core/spec.py check_spec, through the one verdict)."""
import pytest

from daemon.core.spec import (DEFAULT_SCALE_DOWN_DELAY_S, DEFAULT_TARGET_ONGOING_REQUESTS, MAX_SCALE_DOWN_DELAY_S,
                              MAX_TARGET_ONGOING_REQUESTS, AutoscalingPolicy, parse_spec, resolve_spec,
                              spec_json_schema)
from daemon.errors import SpecError
from helpers import spec_policy

POLICY = spec_policy(root="/private", max_replicas=8, max_gpus_per_replica=8)
HEAD = "model_id: m\nmodel_source: $HOME/common/hf/m\n"
ADAPTER = "model_id: t\nbase_model: m\nmodel_source: $HOME/a\n"


def problems(text: str) -> list[tuple[int, int, str]]:
    try:
        parse_spec("s.yaml", text.encode(), "alice", POLICY)
    except SpecError as exc:
        return [(p.line, p.col, p.message) for p in exc.problems]
    return []


@pytest.mark.parametrize("text, expected", [
    # valid: the bounds themselves, the defaults, zero
    (HEAD + "autoscaling: {min_replicas: 0, max_replicas: 1}\n", []),
    (HEAD + "autoscaling: {min_replicas: 8, max_replicas: 8}\n", []),
    (HEAD + f"autoscaling: {{min_replicas: 1, max_replicas: 2, target_ongoing_requests: {MAX_TARGET_ONGOING_REQUESTS}, "
            f"scale_down_delay_s: {MAX_SCALE_DOWN_DELAY_S}}}\n", []),
    (HEAD + "autoscaling: {min_replicas: 0, max_replicas: 2, target_ongoing_requests: 1, scale_down_delay_s: 0}\n", []),
    (HEAD + "suspended: true\n", []),
    (HEAD + "suspended: false\n", []),
    (HEAD + "autoscaling: {min_replicas: 0, max_replicas: 2}\nsuspended: true\n", []),
    # mutually exclusive with num_replicas: one problem, at num_replicas' key, wherever it is
    (HEAD + "num_replicas: 2\nautoscaling: {min_replicas: 0, max_replicas: 2}\n",
     [(3, 1, "remove num_replicas: autoscaling sets the replicas (from autoscaling.min_replicas up to "
             "autoscaling.max_replicas, following the load)")]),
    (HEAD + "num_replicas: 9\nautoscaling: {min_replicas: 0, max_replicas: 2}\n",   # not also "over the limit"
     [(3, 1, "remove num_replicas: autoscaling sets the replicas (from autoscaling.min_replicas up to "
             "autoscaling.max_replicas, following the load)")]),
    (HEAD + "autoscaling:\n  min_replicas: 1\n  max_replicas: 2\nnum_replicas: 1\n",
     [(6, 1, "remove num_replicas: autoscaling sets the replicas (from autoscaling.min_replicas up to "
             "autoscaling.max_replicas, following the load)")]),
    # min over max, at min_replicas' value
    (HEAD + "autoscaling:\n  min_replicas: 3\n  max_replicas: 2\n",
     [(4, 17, "autoscaling.min_replicas (3) is over autoscaling.max_replicas (2); lower min_replicas or raise "
              "max_replicas")]),
    # the platform's replica limit holds for max_replicas too
    (HEAD + "autoscaling:\n  min_replicas: 0\n  max_replicas: 9\n",
     [(5, 17, "autoscaling.max_replicas is 9, over this platform's limit of 8")]),
    (HEAD + "autoscaling:\n  min_replicas: 9\n  max_replicas: 9\n",
     [(5, 17, "autoscaling.max_replicas is 9, over this platform's limit of 8")]),
    (HEAD + "autoscaling:\n  min_replicas: 0\n  max_replicas: 2\n  target_ongoing_requests: 1025\n",
     [(6, 28, "autoscaling.target_ongoing_requests is 1025, over 1024: a replica never runs that many requests at "
              "once (vLLM queues them), so Serve would never add one; use a number near what one replica serves "
              "well at once (the default is 16)")]),
    (HEAD + "autoscaling:\n  min_replicas: 0\n  max_replicas: 2\n  scale_down_delay_s: 86401\n",
     [(6, 23, "autoscaling.scale_down_delay_s is 86401, over a day (86400); use at most 86400, or a fixed "
              "num_replicas (without autoscaling) for a model that should keep its replicas")]),
    # the model's own types and bounds (pydantic), with the field's place
    (HEAD + "autoscaling:\n  min_replicas: -1\n  max_replicas: 2\n",
     [(4, 17, "autoscaling.min_replicas input should be greater than or equal to 0, got -1")]),
    (HEAD + "autoscaling:\n  min_replicas: 0\n  max_replicas: 0\n",
     [(5, 17, "autoscaling.max_replicas input should be greater than or equal to 1, got 0")]),
    (HEAD + "autoscaling:\n  min_replicas: 0\n  max_replicas: '2'\n",
     [(5, 17, "autoscaling.max_replicas must be a whole number, got '2' (a string)")]),
    (HEAD + "autoscaling:\n  max_replicas: 2\n", [(4, 3, "missing required field 'autoscaling.min_replicas'")]),
    (HEAD + "autoscaling:\n  min_replicas: 0\n  max_replicas: 2\n  max_replica: 3\n",
     [(6, 3, "unknown field 'autoscaling.max_replica'; did you mean 'max_replicas'?")]),
    (HEAD + "rollout: {strategie: surge}\n",  # the same did-you-mean in every optional section
     [(3, 11, "unknown field 'rollout.strategie'; did you mean 'strategy'?")]),
    (HEAD + "suspended: yes please\n", [(3, 12, "suspended must be true or false, got 'yes please' (a string)")]),
    # an adapter takes neither: it runs on its base model's replicas
    (ADAPTER + "autoscaling: {min_replicas: 0, max_replicas: 2}\n",
     [(4, 1, "autoscaling is not taken by an adapter spec (base_model is set): an adapter runs on its base model's "
             "replicas; remove it: it scales with its base model (autoscaling goes in the base model's spec)")]),
    (ADAPTER + "suspended: true\n",
     [(4, 1, "suspended is not taken by an adapter spec (base_model is set): an adapter runs on its base model's "
             "replicas; remove it: suspend its base model instead, or delete this file to remove the adapter")]),
])
def test_autoscaling_and_suspended_rules(text, expected):
    assert problems(text) == expected


def test_every_autoscaling_problem_in_one_pass():
    found = problems(HEAD + "num_replicas: 2\nautoscaling: {min_replicas: 9, max_replicas: 9, "
                            "target_ongoing_requests: 2000, scale_down_delay_s: 100000}\n")
    assert [(line, message.split(" ")[0]) for line, _, message in found] == [
        (3, "remove"), (4, "autoscaling.max_replicas"), (4, "autoscaling.target_ongoing_requests"),
        (4, "autoscaling.scale_down_delay_s")]


def test_resolved_autoscaling_reserves_min_replicas_and_suspend_reserves_nothing():
    from datetime import datetime, timezone

    created = datetime(2026, 12, 1, tzinfo=timezone.utc)
    parsed = parse_spec("s.yaml", (HEAD + "gpus_per_replica: 2\nautoscaling: {min_replicas: 1, max_replicas: 4}\n")
                        .encode(), "alice", POLICY)
    resolved = resolve_spec(parsed.spec, "alice", created, POLICY, parsed.model_source)
    assert (resolved.num_replicas, resolved.max_replicas, resolved.reserved_gpus) == (1, 4, 2)
    assert resolved.autoscaling == {"min_replicas": 1, "max_replicas": 4,
                                    "target_ongoing_requests": DEFAULT_TARGET_ONGOING_REQUESTS,
                                    "scale_down_delay_s": DEFAULT_SCALE_DOWN_DELAY_S}
    parsed = parse_spec("s.yaml", (HEAD + "num_replicas: 3\nsuspended: true\n").encode(), "alice", POLICY)
    resolved = resolve_spec(parsed.spec, "alice", created, POLICY, parsed.model_source)
    assert (resolved.suspended, resolved.reserved_gpus, resolved.max_replicas) == (True, 0, 3)


def test_schema_has_the_fields_and_this_platforms_limits():
    schema = spec_json_schema(spec_policy(root="/private", max_replicas=5, max_gpus_per_replica=8))
    scaling = schema["$defs"]["AutoscalingPolicy"]["properties"]
    assert scaling["max_replicas"]["maximum"] == 5 and scaling["min_replicas"]["maximum"] == 5
    assert scaling["target_ongoing_requests"] == {**scaling["target_ongoing_requests"], "minimum": 1,
                                                  "maximum": MAX_TARGET_ONGOING_REQUESTS, "default": 16}
    assert scaling["scale_down_delay_s"]["maximum"] == MAX_SCALE_DOWN_DELAY_S
    assert schema["$defs"]["AutoscalingPolicy"]["required"] == ["min_replicas", "max_replicas"]
    assert schema["properties"]["suspended"] == {**schema["properties"]["suspended"], "type": "boolean",
                                                 "default": False}
    assert schema["not"] == {"required": ["num_replicas", "autoscaling"]}
    # without a platform, no replica limit is made up
    assert "maximum" not in spec_json_schema()["$defs"]["AutoscalingPolicy"]["properties"]["max_replicas"]


def test_the_model_and_the_checks_agree_on_the_names():
    """check_spec reads the raw mapping by field name: a renamed field must break this test."""
    assert set(AutoscalingPolicy.model_fields) == {"min_replicas", "max_replicas", "target_ongoing_requests",
                                                    "scale_down_delay_s"}

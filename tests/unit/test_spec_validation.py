"""Spec validation: suffix rules, replicas/gpus boundaries, types, unknown fields, whole-file problems."""
import pytest

from daemon.errors import SpecError
from daemon.core.spec import SpecPolicy, ServingSpec, parse_spec, validate_model_id_suffix
from helpers import spec_policy

POLICY = spec_policy(root="/private", max_replicas=8, max_gpus_per_replica=8)
SOURCE = "model_source: $HOME/common/hf/m\n"


def problems(text: str, user: str = "alice", policy: SpecPolicy = POLICY) -> list[str]:
    try:
        parse_spec("s.yaml", text.encode(), user, policy)
    except SpecError as exc:
        return [f"{p.line}:{p.col}: {p.message}" for p in exc.problems]
    return []


@pytest.mark.parametrize("suffix", ["a", "A", "0", "qwen2-7b-instruct", "m.v2_final", "x" * 64, "9.9"])
def test_valid_suffixes(suffix):
    assert validate_model_id_suffix(suffix) == suffix
    assert problems(f"model_id: '{suffix}'\n{SOURCE}") == []


@pytest.mark.parametrize("suffix", ["", "-a", ".a", "_a", "x" * 65, "a b", "a/b", "a:b", "ü", "a\u200bb", "a$"])
def test_invalid_suffixes(suffix):
    with pytest.raises(ValueError, match="not valid"):
        validate_model_id_suffix(suffix)
    (problem,) = problems(f"model_id: '{suffix}'\n{SOURCE}")
    assert problem.startswith("1:11: model_id") and "not valid" in problem


@pytest.mark.parametrize("field", ["num_replicas", "gpus_per_replica"])
@pytest.mark.parametrize("value, message", [
    ("0", "greater than or equal to 1, got 0"),
    ("-1", "greater than or equal to 1, got -1"),
    ("1.5", "must be a whole number, got 1.5 (a decimal)"),
    ("1.0", "must be a whole number, got 1.0 (a decimal)"),
    ("'2'", "must be a whole number, got '2' (a string)"),
    ("true", "must be a whole number, got true (a boolean)"),
    ("null", "must be a whole number, got null"),
    ("9", "9, over this platform's limit of 8"),
    ("100000000000000000000", "over this platform's limit of 8"),
])
def test_counts_out_of_range_or_wrong_type(field, value, message):
    (problem,) = problems(f"model_id: m\n{SOURCE}{field}: {value}\n")
    assert problem.startswith("3:")
    assert field in problem and message in problem


@pytest.mark.parametrize("field", ["num_replicas", "gpus_per_replica"])
@pytest.mark.parametrize("value", [1, 2, 8])
def test_counts_in_range(field, value):
    assert problems(f"model_id: m\n{SOURCE}{field}: {value}\n") == []


def test_defaults():
    parsed = parse_spec("s.yaml", f"model_id: m\n{SOURCE}".encode(), "alice", POLICY)
    assert parsed.spec == ServingSpec(model_id="m", model_source="$HOME/common/hf/m")
    assert (parsed.spec.num_replicas, parsed.spec.gpus_per_replica, parsed.spec.engine_kwargs) == (1, 1, {})


def test_unknown_field_points_at_the_key_with_a_suggestion():
    assert problems(f"model_id: m\n{SOURCE}num_replica: 2\n") == [
        "3:1: unknown field 'num_replica'; did you mean 'num_replicas'?"]


def test_missing_fields():
    assert problems("num_replicas: 1\n") == ["1:1: missing required field 'model_id'",
                                             "1:1: missing required field 'model_source'"]


def test_wrong_types_for_strings_and_mappings():
    found = problems("model_id: 12\nmodel_source: [a]\nengine_kwargs: 3\n")
    assert found == ["1:11: model_id must be a string, got 12",
                     "2:15: model_source must be a string, got a list",
                     "3:16: engine_kwargs must be a mapping, got 3"]


def test_every_problem_is_reported_in_one_pass():
    text = ("model_id: '-x'\nmodel_source: /etc\nnum_replicas: '2'\ngpus_per_replica: 99\n"
            "engine_kwargs:\n  model: x\n")
    found = problems(text)
    assert [p.split(":")[0] for p in found] == ["1", "2", "3", "4", "6"]


def test_user_id_rules():
    assert problems(f"model_id: m\n{SOURCE}", user="Alice")[0].startswith("1:1: user id 'Alice' is not valid")
    assert problems(f"model_id: m\n{SOURCE}", user="a" * 33)[0].startswith("1:1: user id")
    assert problems("model_id: m\nmodel_source: $HOME/x\n", user="a_b-9") == []

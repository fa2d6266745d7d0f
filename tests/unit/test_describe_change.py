"""gitwrite.describe_change: a commit message names every field that changed."""
import pytest

from daemon.core.spec import ServingSpec
from daemon.gitwrite import describe_change

BASE = {"model_id": "m", "model_source": "$HOME/common/hf/a"}

# One row per ServingSpec field at least: (field, old spec, new spec, the commit's description).
CASES = [
    ("model_id", BASE, {**BASE, "model_id": "n"}, "model_id m -> n"),
    ("model_source", BASE, {**BASE, "model_source": "$HOME/common/hf/b"},
     "model_source $HOME/common/hf/a -> $HOME/common/hf/b"),
    ("num_replicas", BASE, {**BASE, "num_replicas": 2}, "num_replicas 1 -> 2"),
    ("num_replicas", {**BASE, "num_replicas": 3}, BASE, "num_replicas 3 -> 1"),   # unwritten = default
    ("num_replicas", BASE, {**BASE, "num_replicas": 1}, "comments or layout"),     # default written out
    ("gpus_per_replica", BASE, {**BASE, "gpus_per_replica": 2}, "gpus_per_replica 1 -> 2"),
    ("engine_kwargs", BASE, {**BASE, "engine_kwargs": {"max_model_len": 2048}},
     "engine_kwargs.max_model_len added: 2048"),
    ("engine_kwargs", {**BASE, "engine_kwargs": {"max_model_len": 2048, "dtype": "float32"}},
     {**BASE, "engine_kwargs": {"max_model_len": 4096}},
     "engine_kwargs.dtype removed (was float32), engine_kwargs.max_model_len 2048 -> 4096"),
    ("adapters", BASE, {**BASE, "adapters": {"max_rank": 8}}, 'adapters added: {"max_rank": 8}'),
    ("adapters", {**BASE, "adapters": {"max_rank": 8, "users": ["bob"]}},
     {**BASE, "adapters": {"max_rank": 8, "users": ["bob", "carol"]}},
     'adapters.users ["bob"] -> ["bob", "carol"]'),
    ("adapters", {**BASE, "adapters": {"max_rank": 8}}, BASE, 'adapters removed (was {"max_rank": 8})'),
    ("base_model", BASE, {**BASE, "base_model": "alice-202601010000-b"}, "base_model added: alice-202601010000-b"),
    ("base_model", {**BASE, "base_model": "b"}, {**BASE, "base_model": "c"}, "base_model b -> c"),
    ("rollout", BASE, {**BASE, "rollout": {"strategy": "recreate"}}, 'rollout added: {"strategy": "recreate"}'),
    ("autoscaling", BASE, {**BASE, "autoscaling": {"min_replicas": 0, "max_replicas": 2}},
     'autoscaling added: {"min_replicas": 0, "max_replicas": 2}'),
    ("suspended", BASE, {**BASE, "suspended": True}, "suspended false -> true"),
    ("a key no spec has (yet)", BASE, {**BASE, "future_field": True}, "future_field added: true"),
    ("several", BASE, {**BASE, "num_replicas": 2, "gpus_per_replica": 2},
     "gpus_per_replica 1 -> 2, num_replicas 1 -> 2"),
    ("a long value", BASE, {**BASE, "model_source": "$HOME/common/hf/" + "x" * 80},
     "model_source $HOME/common/hf/a -> $HOME/common/hf/" + "x" * 29 + "..."),   # clipped at 48
    ("nothing", BASE, dict(BASE), "comments or layout"),
    ("a line break stays out of the subject", {**BASE, "engine_kwargs": {"chat_template": "a"}},
     {**BASE, "engine_kwargs": {"chat_template": "a\nb\x85"}}, 'engine_kwargs.chat_template a -> "a\\nb\\u0085"'),
]


@pytest.mark.parametrize("field,old,new,described", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_the_commit_message_names_what_changed(field, old, new, described):
    assert describe_change(old, new) == described


def test_every_spec_field_has_a_row():
    # A field added to ServingSpec fails here until a row shows its change is described.
    assert set(ServingSpec.model_fields) <= {c[0] for c in CASES}
    for name in ServingSpec.model_fields:
        assert all(name in described or described == "comments or layout"
                   for field, _, _, described in CASES if field == name)

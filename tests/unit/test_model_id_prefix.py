from datetime import datetime, timedelta, timezone

import pytest

from daemon.core.spec import ServingSpec, make_model_id_prefix, resolve_spec
from helpers import spec_policy


@pytest.mark.parametrize("moment, expected", [
    (datetime(2026, 11, 24, 9, 5, 59, tzinfo=timezone.utc), "alice-202611240905"),
    (datetime(2026, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=8))), "alice-202512311600"),
    (datetime(2026, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-5))), "alice-202701010459"),
])
def test_prefix_is_utc_minutes(moment, expected):
    assert make_model_id_prefix("alice", moment) == expected


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        make_model_id_prefix("alice", datetime(2026, 1, 1))


def test_invalid_user_is_refused():
    with pytest.raises(ValueError, match="user id"):
        make_model_id_prefix("Alice", datetime(2026, 1, 1, tzinfo=timezone.utc))


def test_resolved_spec():
    spec = ServingSpec(model_id="qwen", model_source="$HOME/common/hf/Qwen", num_replicas=2,
                       gpus_per_replica=4, engine_kwargs={"max_model_len": 8192})
    resolved = resolve_spec(spec, "alice", datetime(2026, 3, 4, 5, 6, tzinfo=timezone.utc), spec_policy())
    assert resolved.model_id == "alice-202603040506-qwen"
    assert resolved.model_id_prefix == "alice-202603040506"
    assert resolved.model_source == "/private/hf/Qwen"
    assert (resolved.num_replicas, resolved.gpus_per_replica) == (2, 4)
    assert type(resolved).from_dict(resolved.to_dict()) == resolved

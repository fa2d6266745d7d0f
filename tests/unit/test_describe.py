"""Events as a person reads them (one wording for `argusctl logs`, the API and the UI): a table
of (event type, payload as argusd records it) -> text. No Python reprs: no None, {, [ or quotes."""
import re

import pytest

from daemon.core.describe import AdapterLoad, adapter_load, change_texts, describe_event
from daemon.core.states import ModelState
from daemon.core.records import Event

WHO = {"author": "alice <alice@argus.local>", "commit": "0123456789abcdef0123"}
BY = " by alice <alice@argus.local> (0123456789ab)"
POLICY = {"max_rank": 16, "max_loaded": 4, "users": ["bob", "carol"]}


def event(event_type, payload):
    return Event(1, "m-1", "alice", None, "2026-12-01T00:00:00Z", event_type, payload)


@pytest.mark.parametrize("event_type, payload, text", [
    ("SCALED", {**WHO, "generation": 2, "changes": {"num_replicas": [1, 2]}}, "generation 2: num_replicas 1 -> 2" + BY),
    ("UPDATED", {**WHO, "generation": 3, "changes": {"adapters": [None, POLICY]}},
     "generation 3: adapters set: max_rank 16, max_loaded 4, users bob, carol" + BY),
    ("UPDATED", {**WHO, "generation": 4, "changes": {"adapters": [POLICY, {**POLICY, "max_loaded": 8, "users": []}]}},
     "generation 4: adapters.max_loaded 4 -> 8; adapters.users bob, carol -> none" + BY),
    ("UPDATED", {**WHO, "generation": 5, "changes": {"adapters": [POLICY, None]}},
     "generation 5: adapters removed (was max_rank 16, max_loaded 4, users bob, carol)" + BY),
    ("UPDATED", {**WHO, "generation": 2, "changes": {"engine_kwargs": [{}, {"max_model_len": 2048}],
                                                      "model_source": ["/a", "/b"]}},
     "generation 2: engine_kwargs.max_model_len set to 2048; model_source /a -> /b" + BY),
    ("UPDATED", {**WHO, "generation": 2, "changes": {"engine_kwargs": [{"dtype": "bfloat16", "enforce_eager": True},
                                                                       {"dtype": "float32"}]}},
     "generation 2: engine_kwargs.dtype bfloat16 -> float32; engine_kwargs.enforce_eager removed (was true)" + BY),
    ("CREATED", {**WHO, "model_id": "alice-202612010000-chat", "spec_path": "models.d/alice/chat.yaml",
                 "num_replicas": 2, "gpus_per_replica": 1},
     "alice-202612010000-chat from models.d/alice/chat.yaml, 2 replicas x 1 GPU" + BY),
    ("CREATED", {**WHO, "model_id": "alice-202612010000-tone", "spec_path": "models.d/alice/tone.yaml",
                 "num_replicas": 0, "gpus_per_replica": 0},
     "alice-202612010000-tone from models.d/alice/tone.yaml" + BY),
    ("QUEUED", {"generation": 1}, "generation 1 waits for argusd to apply it"),
    ("APPLIED", {"generation": 2, "num_replicas": 1}, "generation 2 sent to Ray Serve with 1 replica"),
    ("APPLIED", {"generation": 1, "base_model": "alice-202612010000-chat"},
     "generation 1 added to the adapters of base model alice-202612010000-chat, loading on its replicas"),
    ("RUNNING", {"generation": 1}, "generation 1 serves"),
    ("RUNNING", {"generation": 1, "base_model": "alice-202612010000-chat"},
     "generation 1 loaded on base model alice-202612010000-chat; it answers by its id"),
    ("WAITING_FOR_BASE", {"message": "waits for base model b, which is QUEUED"}, "waits for base model b, which is QUEUED"),
    ("PENDING_RESOURCES", {"message": "needs 2 GPUs", "free_gpus_then": 1.0}, "needs 2 GPUs (1.0 GPUs free then)"),
    ("RECOVERED", {"running_replicas": 2}, "healthy again, 2 replicas running"),
    ("DELETE_REQUESTED", {**WHO, "spec_path": "models.d/alice/chat.yaml"}, "models.d/alice/chat.yaml removed" + BY),
    ("MOVED", {**WHO, "spec_path": "models.d/alice/x.yaml"}, "spec now at models.d/alice/x.yaml" + BY),
    ("REJECTED", {**WHO, "problems": [{"path": "models.d/alice/c.yaml", "line": 3, "col": 15, "message": "too small"}],
                  "kept_last_good_spec": True},
     "models.d/alice/c.yaml:3:15: too small (the last good spec keeps serving)" + BY),
    ("REJECTION_CLEARED", WHO, "the spec is valid again" + BY),
    ("DELETED", {}, "gone from Ray Serve"),
    ("HISTORY_REWRITTEN", {"previous": "a" * 40, "head": "b" * 40}, "the branch was rewritten: aaaaaaaaaaaa -> bbbbbbbbbbbb"),
    ("SOMETHING_NEW", {"count": 2, "flags": {"x": True}}, "count 2, flags x true"),  # a type this code does not know yet
])
def test_events_read_as_text(event_type, payload, text):
    out = describe_event(event(event_type, payload))
    assert out == text
    assert not re.search(r"None|[{}\[\]'\"]", out)


def test_a_value_that_appears_or_goes_is_said_so():
    assert change_texts("gpus_per_replica", None, 1) == ["gpus_per_replica set to 1"]
    assert change_texts("base_model", "chat", None) == ["base_model removed (was chat)"]


@pytest.mark.parametrize("state, load", [
    ("QUEUED", AdapterLoad.WAITING), ("DEPLOYING", AdapterLoad.LOADING), ("RUNNING", AdapterLoad.LOADED),
    ("FAILED", AdapterLoad.FAILED), ("DELETING", AdapterLoad.UNLOADING), ("DELETED", AdapterLoad.REMOVED)])
def test_every_state_is_a_load_state_of_an_adapter(state, load):
    assert adapter_load(ModelState(state)) is load


def test_no_state_is_left_without_a_load_state():
    assert {adapter_load(s) for s in ModelState} == set(AdapterLoad)

"""The id ledger's pure part (daemon/sync/ids.py): what it accepts, and who takes back which id."""
import json

import pytest

from daemon.sync import ids
from daemon.sync.ids import Identity, LiveModel

A = Identity("m-" + "a" * 16, "alice-202601010000-a", "2026-01-01T00:00:00.000000Z")


def row(**over):
    return {"user_id": "alice", "model_id_suffix": "a", "model_key": A.model_key, "model_id": A.model_id,
            "created_at": A.created_at, **over}


def test_render_and_parse_round_trip_byte_stable():
    entries = {("bob", "b"): Identity("m-" + "b" * 16, "bob-202601010005-b", "2026-01-01T00:05:00.000000Z"),
               ("alice", "a"): A}
    text = ids.render(entries)
    assert ids.parse(text).entries == entries and not ids.parse(text).problems
    assert text == ids.render(dict(reversed(list(entries.items()))))


@pytest.mark.parametrize("bad, problem", [
    (row(model_id="bob-202601010000-a"), "is not alice-202601010000-a"),      # another user's prefix
    (row(model_id="alice-202001010000-a"), "is not alice-202601010000-a"),    # a time its created_at does not give
    (row(model_id="alice-202601010000-b"), "is not alice-202601010000-a"),    # another suffix
    (row(user_id="Alice"), "not a user id"),
    (row(model_key="m-../../x"), "is not one argus makes"),
    (row(created_at="2026-01-01T00:00:00"), "is not a UTC time"),            # naive
    (row(created_at="yesterday"), "is not a UTC time"),
    (row(model_key=5), "five strings"),
    ("text", "five strings"),
])
def test_an_entry_argusd_would_not_write_is_left_out_with_the_reason(bad, problem):
    ledger = ids.parse(json.dumps({"version": 1, "models": [bad, row(user_id="bob", model_id="bob-202601010000-a")]}).encode())
    assert list(ledger.entries) == [("bob", "a")]
    assert len(ledger.problems) == 1 and problem in ledger.problems[0]


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b'{"version": 2, "models": []}', b'{"version": 1}'])
def test_a_file_that_is_no_ledger_is_an_empty_one_with_a_problem(data):
    ledger = ids.parse(data)
    assert ledger.entries == {} and ledger.problems


def test_no_ledger_at_all_is_empty_without_problems():
    assert ids.parse(None) == ids.Ledger()


def test_a_second_entry_for_the_same_model_is_left_out():
    ledger = ids.parse(json.dumps({"version": 1, "models": [row(), row(model_key="m-" + "c" * 16)]}).encode())
    assert ledger.entries == {("alice", "a"): A} and "second entry" in ledger.problems[0]


def live(user, suffix, key, model_id="x"):
    return LiveModel(user, suffix, Identity(key, model_id, "t"))


@pytest.mark.parametrize("models, in_store, expected", [
    # the rebuilt model takes back its key and id
    ([live("alice", "a", "m-new", "alice-202601020000-a")], set(), [("m-new", A.model_key)]),
    # already the same: nothing to do
    ([live("alice", "a", A.model_key)], set(), []),
    # the ledger's key names another model of the store (e.g. a DELETED one): a key is never reused
    ([live("alice", "a", "m-new")], {A.model_key}, []),
    # a model the ledger does not know keeps what the history gives
    ([live("carol", "c", "m-c")], set(), []),
])
def test_adoptions(models, in_store, expected):
    found = ids.adoptions(models, {("alice", "a"): A}, lambda key: key in in_store)
    assert [(a.current, a.kept.model_key) for a in found] == expected


def test_two_models_never_take_the_same_key():
    ledger = {("alice", "a"): A, ("alice", "b"): A}   # only a hand-made ledger can say this
    found = ids.adoptions([live("alice", "a", "m-1"), live("alice", "b", "m-2")], ledger, lambda key: False)
    assert [a.current for a in found] == ["m-1"]


def test_a_key_on_two_entries_is_left_out_of_both():
    bob = row(user_id="bob", model_id="bob-202601010000-a")   # alice's key on bob's model too
    carol = row(user_id="carol", model_id="carol-202601010000-a", model_key="m-" + "c" * 16)
    ledger = ids.parse(json.dumps({"version": 1, "models": [row(), bob, carol]}).encode())
    assert list(ledger.entries) == [("carol", "a")]
    assert len(ledger.problems) == 2 and all(f"model_key {A.model_key!r} is on 2 entries" in p for p in ledger.problems)
    assert [p.split(":")[0] for p in ledger.problems] == ["entry 0", "entry 1"]

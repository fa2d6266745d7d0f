"""The store on a real SQLite file: upsert policy, state flow + events, list filters/order."""
import sqlite3
import threading

import pytest

from daemon.errors import NotFoundError, StoreError
from daemon.errors import Problem
from daemon.core.records import Rejection
from daemon.core.states import ModelState
from daemon.store import MIGRATIONS, Store


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "s" / "argus.db")
    yield s
    s.close()


def add(store, key, user="alice", suffix="m", now="2026-01-01T00:00:00.000000Z", state=None):
    store.insert_model(model_key=key, user_id=user, model_id_suffix=suffix, model_id=f"{user}-202601010000-{suffix}",
                       spec_path=f"models.d/{user}/{suffix}.yaml", spec_yaml="y", resolved={"num_replicas": 1},
                       commit_sha="c1", commit_author="A <a@x>", created_at=now, now=now)
    if state:
        store.set_state(key, state, now=now)


def test_wal_and_schema_version(store):
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_reopen_does_not_migrate_twice(tmp_path):
    Store.open(tmp_path / "a.db").close()
    assert Store.open(tmp_path / "a.db").conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_newer_schema_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "a.db")
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this argus"):
        Store.open(tmp_path / "a.db")


def test_garbage_file_is_a_clear_error(tmp_path):
    (tmp_path / "a.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not usable"):
        Store.open(tmp_path / "a.db")


def test_readonly_needs_an_existing_store(tmp_path):
    with pytest.raises(StoreError, match="start the daemon"):
        Store.open_readonly(tmp_path / "none.db")
    assert not (tmp_path / "none.db").exists()


def test_live_suffix_is_unique_per_user_but_reusable_after_deleted(store):
    add(store, "k1")
    add(store, "k2", user="bob")
    with pytest.raises(sqlite3.IntegrityError):
        add(store, "k3")
    store.set_state("k1", ModelState.DELETED, now="2026-01-01T00:00:01.000000Z")
    add(store, "k3", now="2026-01-01T00:00:02.000000Z")
    assert store.find_model("alice-202601010000-m").model_key == "k3"  # the live one wins


def test_state_flow_and_events(store):
    add(store, "k1")
    store.set_state("k1", ModelState.FAILED, error_summary="boom", now="2026-01-01T00:00:05.000000Z")
    row = store.get_model("k1")
    assert (row.state, row.error_summary) == ("FAILED", "boom")
    store.update_model_spec("k1", spec_path="p", spec_yaml="y2", resolved={"num_replicas": 2}, commit_sha="c2",
                            commit_author="B", now="2026-01-01T00:00:06.000000Z")
    row = store.get_model("k1")
    assert (row.state, row.error_summary, row.generation, row.resolved) == ("QUEUED", None, 2, {"num_replicas": 2})
    with pytest.raises(ValueError):
        store.set_state("k1", "SLEEPING", now="x")
    store.append_event("A", {"n": 1}, now="t1", model_key="k1")
    store.append_event("B", None, now="t2", model_key="k1")
    store.append_event("C", None, now="t3", model_key="k2")
    assert [e.event_type for e in store.events(model_key="k1")] == ["A", "B"]
    assert [e.event_type for e in store.events(model_key="k1", limit=1)] == ["B"]
    first = store.events(model_key="k1")[0]
    assert [e.event_type for e in store.events(model_key="k1", after_id=first.id)] == ["B"]
    store.append_event("D", None, now="t4")   # the cluster's own: no model's newest
    assert {k: e.event_type for k, e in store.last_events().items()} == {"k1": "B", "k2": "C"}
    assert store.last_events()["k1"] == store.last_event("k1")


def test_list_filters_and_orders_by_updated_at(store):
    add(store, "k1", suffix="a", now="2026-01-01T00:00:03.000000Z")
    add(store, "k2", suffix="b", now="2026-01-01T00:00:01.000000Z")
    add(store, "k3", user="bob", suffix="c", now="2026-01-01T00:00:02.000000Z")
    store.set_state("k3", ModelState.DELETED, now="2026-01-01T00:00:04.000000Z")
    assert [m.model_key for m in store.list_models()] == ["k2", "k1"]
    assert [m.model_key for m in store.list_models(include_deleted=True)] == ["k2", "k1", "k3"]
    assert [m.model_key for m in store.list_models(user_id="bob")] == []
    assert [m.model_key for m in store.list_models(states=("DELETED",))] == ["k3"]
    assert [m.model_key for m in store.list_models(limit=1, offset=1)] == ["k1"]


def test_find_model_by_suffix_key_or_id(store):
    add(store, "k1", suffix="m")
    add(store, "k2", user="bob", suffix="m")
    with pytest.raises(NotFoundError, match="ambiguous"):
        store.find_model("m")
    assert store.find_model("m", user_id="bob").model_key == "k2"
    assert store.find_model("k1").model_key == "k1"
    with pytest.raises(NotFoundError, match="argusctl status"):
        store.find_model("zzz")


def test_transaction_is_all_or_nothing(store):
    with pytest.raises(RuntimeError):
        with store.transaction():
            add(store, "k1")
            store.set_cursor("main", "abc", "t")
            raise RuntimeError("crash")
    assert store.list_models() == [] and store.cursor() is None


def test_rejections_roundtrip(store):
    store.set_rejection(Rejection("p", "alice", "b1", "c1", "A", [Problem("p", 1, 1, "x")], "t"))
    assert store.rejections("alice")[0].problems == [Problem("p", 1, 1, "x")]
    assert store.clear_rejection("p") and not store.clear_rejection("p")


def test_reader_is_not_blocked_by_a_writer(tmp_path):
    writer = Store.open(tmp_path / "a.db")
    add(writer, "k1")
    reader = Store.open_readonly(tmp_path / "a.db")
    writer.conn.execute("BEGIN IMMEDIATE")
    add(writer, "k2", suffix="n")
    # The writer holds its write lock; the reader still sees the last committed state at once.
    done = []
    t = threading.Thread(target=lambda: done.append([m.model_key for m in Store.open_readonly(tmp_path / "a.db").list_models()]))
    t.start()
    t.join(timeout=5)
    assert done == [["k1"]]
    assert [m.model_key for m in reader.list_models()] == ["k1"]
    writer.conn.execute("COMMIT")
    assert len(reader.list_models()) == 2


def test_a_store_from_before_structured_problems_is_migrated_and_readable(tmp_path):
    """Schema 2 kept problems as "path:line:col: message" text; schema 3 keeps them as data."""
    import json
    import sqlite3

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:2], start=1):
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={number};\nCOMMIT;")
    conn.execute("INSERT INTO spec_rejections (spec_path, user_id, blob_sha, commit_sha, commit_author, problems, time)"
                 " VALUES ('models.d/a/x.yaml', 'a', 'b', 'c', 'A', ?, 't')",
                 (json.dumps(["models.d/a/x.yaml:3:15: num_replicas must be a whole number", "odd text"]),))
    conn.execute("INSERT INTO serve_events (spec_path, time, event_type, payload) VALUES ('models.d/a/x.yaml', 't', "
                 "'REJECTED', ?)", (json.dumps({"problems": ["models.d/a/x.yaml:1:1: bad"], "author": "A"}),))
    conn.close()
    store = Store.open(db)
    assert store.rejections()[0].problems == [Problem("models.d/a/x.yaml", 3, 15, "num_replicas must be a whole number"),
                                             Problem("models.d/a/x.yaml", 1, 1, "odd text")]
    (event,) = store.events()
    assert event.payload == {"problems": [{"path": "models.d/a/x.yaml", "line": 1, "col": 1, "message": "bad"}],
                             "author": "A"}


def test_the_instance_table_is_a_migration_and_a_store_that_made_it_on_first_use_keeps_its_id(tmp_path):
    """Schema 6 makes daemon_instance; argus before it made the same table on first use
    (at schema 5). Such a store migrates cleanly and keeps its instance id (its lease)."""
    from daemon.store import daemon_instance

    assert len(MIGRATIONS) >= 6
    store = Store.open(tmp_path / "new.db")
    assert store.conn.execute("SELECT name FROM sqlite_master WHERE name='daemon_instance'").fetchone() is not None
    store.close()
    db = str(tmp_path / "today.db")
    store = Store.open(db)
    assert daemon_instance(store, "h", db, "kept") == "kept"
    store.conn.execute("PRAGMA user_version=5")         # as argus at schema 5 left it: table and row
    store.close()
    store = Store.open(db)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert daemon_instance(store, "h", db, "fresh") == "kept"
    store.close()
    assert Store.open_readonly(db).conn.execute("SELECT instance FROM daemon_instance").fetchone()[0] == "kept"


def test_a_store_of_schema_6_is_migrated_to_take_suspended_models_and_keeps_every_row(tmp_path, monkeypatch):
    """Schema 7 rebuilds serve_models with SUSPENDED in its state CHECK (SQLite cannot alter a
    CHECK): a store made by the schema before it keeps every model row, its events and the
    one-live-model-per-name index, and takes SUSPENDED, which it refused before."""
    import sqlite3

    import daemon.store as store_module

    db = str(tmp_path / "six.db")
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS[:6])
    old = Store.open(db)
    states = ["QUEUED", "DEPLOYING", "RUNNING", "FAILED", "DELETING", "DELETED"]
    with old.transaction():
        for i, state in enumerate(states):
            old.insert_model(model_key=f"k{i}", user_id="alice", model_id_suffix=f"m{i}", model_id=f"alice-1-m{i}",
                             spec_path=f"models.d/alice/m{i}.yaml", spec_yaml=f"model_id: m{i}\n",
                             resolved={"n": i}, commit_sha="c" * 40, commit_author="Alice <a@x>",
                             created_at="2026-01-01T00:00:00Z", now="2026-01-01T00:00:00Z")
            old.set_state(f"k{i}", state, error_summary=f"why {i}", now="2026-01-02T00:00:00Z")
            old.append_event("QUEUED", {"generation": 1}, now="2026-01-01T00:00:00Z", model_key=f"k{i}")
    with pytest.raises(sqlite3.IntegrityError):
        old.conn.execute("UPDATE serve_models SET state='SUSPENDED' WHERE model_key='k0'")
    before = old.conn.execute("SELECT * FROM serve_models ORDER BY model_key").fetchall()
    old.close()
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS[:7])   # later ones add columns

    store = Store.open(db)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == 7
    assert store.conn.execute("SELECT * FROM serve_models ORDER BY model_key").fetchall() == before
    assert len(store.events()) == len(states)
    with store.transaction():
        store.set_state("k2", "SUSPENDED", now="2026-01-03T00:00:00Z")
    assert store.get_model("k2").state == "SUSPENDED"
    indexes = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"serve_models_live", "serve_models_model_id", "serve_models_updated"} <= indexes
    with pytest.raises(sqlite3.IntegrityError):   # still one live model per (user, name)
        store.insert_model(model_key="k9", user_id="alice", model_id_suffix="m0", model_id="alice-1-m0",
                           spec_path="models.d/alice/m0.yaml", spec_yaml="", resolved={}, commit_sha="c",
                           commit_author="A", created_at="t", now="t")


def test_a_store_of_schema_7_keeps_its_rows_and_keeps_what_serves_a_failed_model(tmp_path, monkeypatch):
    """Schema 8 adds the generation that serves a FAILED model beside its failed change (none in
    an older store); it is written with the failure, read back with the row, and goes with a
    rekey (its deployment is named by the old key)."""
    import daemon.store as store_module

    db = str(tmp_path / "seven.db")
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS[:7])
    old = Store.open(db)
    with old.transaction():
        old.insert_model(model_key="k", user_id="alice", model_id_suffix="m", model_id="alice-1-m",
                         spec_path="models.d/alice/m.yaml", spec_yaml="model_id: m\n", resolved={"n": 1},
                         commit_sha="c" * 40, commit_author="Alice <a@x>", created_at="2026-01-01T00:00:00Z",
                         now="2026-01-01T00:00:00Z")
        old.set_state("k", "FAILED", error_summary="generation 2 failed: x; serving generation 1",
                      now="2026-01-02T00:00:00Z")
    old.close()
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS)
    store = Store.open(db)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 8
    row = store.get_model("k")
    assert (row.state, row.error_summary, row.serving) == ("FAILED", "generation 2 failed: x; serving generation 1",
                                                           None)
    serving = {"model_id": "alice-1-m", "llm_config": {"engine_kwargs": {"tensor_parallel_size": 1}},
               "num_replicas": 2, "autoscaling": None, "failure": "generation 2 failed: x; serving generation 1"}
    with store.transaction():
        store.set_serving("k", serving)
    assert store.get_model("k").serving == serving
    with store.transaction():
        store.set_serving("k", None)
    assert store.get_model("k").serving is None
    with store.transaction():
        store.set_serving("k", serving)
        store.rekey_model("k", new_key="k2", model_id="alice-2-m", created_at="2026-01-01T00:00:00Z",
                          now="2026-01-03T00:00:00Z")
    assert store.get_model("k2").serving is None


def test_two_threads_opening_one_new_store_at_once_both_get_it(tmp_path):
    """argusd's sync and reconcile threads both reopen a store deleted under them: two set-ups
    of one fresh file collided ("table already exists" in 29 rounds of 40, then WAL's switch's
    "database is locked", each an "unusable" store) before opening took a lock."""
    import threading

    for round_ in range(20):
        path = tmp_path / f"s{round_}.db"
        errors: list[Exception] = []

        def open_it() -> None:
            try:
                Store.open(path).close()
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [], (round_, errors)

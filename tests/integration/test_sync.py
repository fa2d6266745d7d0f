"""Git sync on real repos (bare + clone + push) into a real SQLite file."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from daemon.gitrepo import GitRepo
from daemon.store import Store
from daemon.sync.syncer import Syncer
from helpers import GitOps, spec, write_config, spec_policy

POLICY = spec_policy(root="/private", max_replicas=4, max_gpus_per_replica=2)


@pytest.fixture
def gitops(tmp_path):
    return GitOps(tmp_path / "g")


def syncer(gitops, db):
    return Syncer(Store.open(db), GitRepo(gitops.bare), "main", POLICY)


def events(store, model_key=None):
    return [e.event_type for e in store.events(model_key=model_key)]


def snapshot(store):
    """What must be identical between two stores built from one history (times aside)."""
    models = [(m.model_key, m.model_id, m.state, m.generation, m.spec_path, m.resolved, m.commit_sha)
              for m in store.list_models(include_deleted=True)]
    evs = [(e.model_key, e.spec_path, e.event_type, e.payload) for e in store.events()]
    return sorted(models), evs, store.cursor(), [(r.spec_path, r.problems) for r in store.rejections()]


def test_empty_repo_is_not_an_error(gitops, tmp_path):
    s = syncer(gitops, tmp_path / "a.db")
    assert s.sync_once().outcome == "empty"


def test_commits_are_recorded_in_order(gitops, tmp_path):
    gitops.write("models.d/alice/a.yaml", spec("a"))
    c1 = gitops.commit("add a", when="2026-03-04T05:06:07Z")
    gitops.write("models.d/alice/a.yaml", spec("a", replicas=2))
    c2 = gitops.commit("scale a")
    gitops.rm("models.d/alice/a.yaml")
    c3 = gitops.commit("delete a", author="Alice Again")
    gitops.push()
    s = syncer(gitops, tmp_path / "a.db")
    result = s.sync_once()
    assert (result.commits, result.outcome, result.head) == (3, "synced", c3)
    (model,) = s.store.list_models()
    assert model.model_id == "alice-202603040506-a"
    assert (model.state, model.generation, model.commit_sha, model.commit_author) == (
        "DELETING", 2, c3, "Alice Again <alice@example.com>")
    evs = s.store.events(model_key=model.model_key)
    assert [e.event_type for e in evs] == ["CREATED", "QUEUED", "SCALED", "QUEUED", "DELETE_REQUESTED"]
    assert [e.payload.get("commit") for e in evs if "commit" in e.payload] == [c1, c2, c3]
    assert s.store.cursor() == ("main", c3)
    assert s.sync_once().outcome == "noop"
    assert len(s.store.events()) == 5  # a no-op writes nothing


def test_one_broken_spec_does_not_block_the_others(gitops, tmp_path):
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.write("models.d/bob/b.yaml", spec("b"))
    gitops.commit("start")
    gitops.write("models.d/alice/a.yaml", "model_id: a\nmodel_source: $HOME/common/hf/m\nnum_replicas: '3'\n")
    gitops.write("models.d/alice/c.yaml", spec("c"))
    gitops.write("models.d/bob/b.yaml", spec("b", replicas=2))
    gitops.write("models.d/bob/new.yaml", "model_source: /etc\n")
    gitops.commit("mixed")
    gitops.push()
    s = syncer(gitops, tmp_path / "a.db")
    s.sync_once()
    by_suffix = {m.model_id_suffix: m for m in s.store.list_models()}
    assert set(by_suffix) == {"a", "b", "c"}
    assert by_suffix["a"].resolved["num_replicas"] == 1 and by_suffix["a"].generation == 1  # last good spec
    assert by_suffix["b"].resolved["num_replicas"] == 2
    rejected = {r.spec_path: [str(p) for p in r.problems] for r in s.store.rejections()}
    assert rejected["models.d/alice/a.yaml"] == [
        "models.d/alice/a.yaml:3:15: num_replicas must be a whole number, got '3' (a string)"]
    assert rejected["models.d/bob/new.yaml"][0].startswith("models.d/bob/new.yaml:1:1: missing required field")
    assert events(s.store, by_suffix["a"].model_key)[-1] == "REJECTED"
    # The broken file stays broken through later commits: recorded once, not again.
    gitops.write("models.d/alice/d.yaml", spec("d"))
    gitops.commit("another")
    gitops.push()
    s.sync_once()
    assert [e.event_type for e in s.store.events()].count("REJECTED") == 2
    # Fixing it applies it and clears the rejection.
    gitops.write("models.d/alice/a.yaml", spec("a", replicas=3))
    gitops.commit("fix")
    gitops.push()
    s.sync_once()
    assert "models.d/alice/a.yaml" not in {r.spec_path for r in s.store.rejections()}
    assert s.store.get_model(by_suffix["a"].model_key).resolved["num_replicas"] == 3
    assert events(s.store, by_suffix["a"].model_key)[-3:] == ["SCALED", "QUEUED", "REJECTION_CLEARED"]


def test_restart_resumes_from_the_cursor(gitops, tmp_path):
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("a")
    gitops.push()
    first = syncer(gitops, tmp_path / "a.db")
    first.sync_once()
    first.store.close()
    gitops.write("models.d/alice/b.yaml", spec("b"))
    c2 = gitops.commit("b")
    gitops.push()
    second = syncer(gitops, tmp_path / "a.db")
    result = second.sync_once()
    assert result.commits == 1
    assert events(second.store).count("CREATED") == 2
    assert second.store.cursor() == ("main", c2)


def test_rebuilding_from_history_gives_the_same_ids(gitops, tmp_path):
    for i in range(5):
        gitops.write(f"models.d/u{i % 2}x/m{i}.yaml", spec(f"m{i}", replicas=1 + i % 2))
        gitops.commit(f"c{i}", when=f"2026-0{i + 1}-01T10:0{i}:00Z")
    gitops.rm("models.d/u0x/m0.yaml")
    gitops.commit("rm")
    gitops.push()
    a, b = syncer(gitops, tmp_path / "a.db"), syncer(gitops, tmp_path / "b.db")
    a.sync_once()
    b.sync_once()
    assert snapshot(a.store) == snapshot(b.store)
    assert {m.model_id for m in a.store.list_models()} >= {"u1x-202602011001-m1", "u0x-202605011004-m4"}


def test_force_push_is_resynced_from_the_tree(gitops, tmp_path):
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.write("models.d/alice/b.yaml", spec("b"))
    gitops.commit("a+b")
    gitops.write("models.d/alice/c.yaml", spec("c"))
    gitops.commit("c")
    gitops.push()
    s = syncer(gitops, tmp_path / "a.db")
    s.sync_once()
    gitops.git("reset", "-q", "--hard", "HEAD~1")
    gitops.rm("models.d/alice/b.yaml")
    gitops.write("models.d/alice/a.yaml", spec("a", replicas=2))
    head = gitops.commit("rewritten")
    gitops.push(force=True)
    result = s.sync_once()
    assert result.outcome == "resynced"
    state = {m.model_id_suffix: (m.state, m.resolved["num_replicas"]) for m in s.store.list_models()}
    assert state == {"a": ("QUEUED", 2), "b": ("DELETING", 1), "c": ("DELETING", 1)}
    assert events(s.store)[0] != "HISTORY_REWRITTEN" and "HISTORY_REWRITTEN" in events(s.store)
    assert s.store.cursor() == ("main", head)
    assert s.sync_once().outcome == "noop"


def test_layout_symlinks_and_bad_user_dirs_are_rejected(gitops, tmp_path):
    gitops.write("models.d/stray.yaml", spec("s"))
    gitops.write("models.d/alice/deep/x.yaml", spec("x"))
    gitops.write("models.d/Bad User/x.yaml", spec("x"))
    gitops.write("models.d/alice/notes.md", "not a spec")
    gitops.write("models.d/alice/ok.yaml", spec("ok"))
    os.symlink("ok.yaml", gitops.work / "models.d/alice/link.yaml")
    gitops.commit("odd files")
    gitops.push()
    s = syncer(gitops, tmp_path / "a.db")
    s.sync_once()
    assert [m.model_id_suffix for m in s.store.list_models()] == ["ok"]
    rejected = {r.spec_path: r.problems[0].message for r in s.store.rejections()}
    assert "specs live at models.d/<user_id>/<name>.yaml" in rejected["models.d/stray.yaml"]
    assert "specs live at" in rejected["models.d/alice/deep/x.yaml"]
    assert "user id 'Bad User' is not valid" in rejected["models.d/Bad User/x.yaml"]
    assert "symlinks are not allowed" in rejected["models.d/alice/link.yaml"]
    gitops.rm("models.d/stray.yaml")
    gitops.commit("clean")
    gitops.push()
    s.sync_once()
    assert "models.d/stray.yaml" not in {r.spec_path for r in s.store.rejections()}


def test_missing_or_corrupt_repo_is_a_git_error(tmp_path):
    from daemon.errors import GitError

    with pytest.raises(GitError, match="no git repository"):
        GitRepo(tmp_path / "nope")
    (tmp_path / "bad.git").mkdir()
    with pytest.raises(GitError):
        GitRepo(tmp_path / "bad.git")


def _has_cursor(db) -> bool:
    try:
        store = Store.open_readonly(db)
    except Exception:  # not created or not migrated yet
        return False
    try:
        return store.cursor() is not None
    except Exception:
        return False
    finally:
        store.close()


def test_kill_9_during_a_sync_then_restart_converges(gitops, tmp_path):
    """A crash mid-sync leaves whole commits only; the restart finishes with nothing lost or doubled."""
    for i in range(150):
        gitops.write(f"models.d/u{i % 7}/m{i % 23}.yaml", spec(f"m{i % 23}", replicas=1 + i % 3))
        if i % 11 == 10:
            gitops.rm(f"models.d/u{i % 7}/m{i % 23}.yaml")
        gitops.commit(f"c{i}")
    gitops.push()
    root = tmp_path / "root"
    cfg = write_config(tmp_path / "c.yaml", root=root, db=tmp_path / "crash.db", repo=gitops.bare)
    crashed_midway = False
    for delay in (0.0, 0.1, 0.3, 0.6):
        proc = subprocess.Popen([sys.executable, "-m", "daemon.argusd", "--once", "--sync-only", "--config", str(cfg),
                                 "--log-level", "WARNING"])
        # Kill once it has recorded something (not after a fixed time: on a loaded machine
        # argusd may take seconds to start), `delay` later, so the kill lands mid-sync.
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline and not _has_cursor(tmp_path / "crash.db"):
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = Store.open(tmp_path / "crash.db")
        cursor = store.cursor()
        store.close()
        if cursor is not None and cursor[1] != gitops.git("rev-parse", "HEAD").strip():
            crashed_midway = True
            break
    assert crashed_midway, "the sync finished before every kill; make the history longer"
    done = subprocess.run([sys.executable, "-m", "daemon.argusd", "--once", "--sync-only", "--config", str(cfg)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    clean = Syncer(Store.open(tmp_path / "clean.db"), GitRepo(gitops.bare), "main",
                   spec_policy(root=str(root), max_replicas=4, max_gpus_per_replica=2))
    clean.sync_once()
    assert snapshot(Store.open(tmp_path / "crash.db")) == snapshot(clean.store)


# -- disaster recovery: a store rebuilt after a rewritten history keeps the ids clients use ------

def _ids(store):
    return {m.model_id_suffix: (m.model_key, m.model_id, m.state) for m in store.list_models()}


def _rebuild(gitops, db):
    """What docs/operating.md says to do: the store is gone, argusd records the history again."""
    for suffix in ("", "-wal", "-shm"):
        (db.parent / f"{db.name}{suffix}").unlink(missing_ok=True)
    return syncer(gitops, db)


def _rewrite(gitops):
    """A force-pushed rewrite of the whole history: the same tree, commits of another day."""
    gitops.git("checkout", "-q", "--orphan", "rewritten")
    head = gitops.commit("everything, squashed", when="2026-01-02T00:00:00Z")
    gitops.git("branch", "-q", "-M", "main")
    gitops.push(force=True)
    return head


def test_a_store_rebuilt_after_a_force_pushed_rewrite_keeps_the_public_ids(gitops, tmp_path):
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("a", when="2026-01-01T00:00:00Z")
    gitops.write("models.d/bob/b.yaml", spec("b"))
    gitops.commit("b", when="2026-01-01T00:05:00Z")
    gitops.push()
    db = tmp_path / "state" / "argus.db"
    live = syncer(gitops, db)
    live.sync_once()
    before = _ids(live.store)
    assert before["a"][1] == "alice-202601010000-a" and before["b"][1] == "bob-202601010005-b"
    _rewrite(gitops)
    assert live.sync_once().outcome == "resynced"
    assert _ids(live.store) == before              # the live store keeps them (as before this change)
    live.store.close()

    rebuilt = _rebuild(gitops, db)
    assert rebuilt.sync_once().outcome == "synced"
    assert _ids(rebuilt.store) == before           # keys (Serve's app names) and public ids
    (restored,) = [e for e in rebuilt.store.events(model_key=before["a"][0]) if e.event_type == "ID_RESTORED"]
    assert restored.payload["was"] == "alice-202601020000-a"
    assert [e.event_type for e in rebuilt.store.events(model_key=before["a"][0])][:2] == ["CREATED", "QUEUED"]
    assert not rebuilt.store.rebuilding()
    rebuilt.store.close()

    # Without the ledger the rewritten history alone decides: the ids the issue saw change.
    subprocess.run(["git", "-C", str(gitops.bare), "update-ref", "-d", "refs/argus/ids"], check=True)
    bare = _rebuild(gitops, db)
    bare.sync_once()
    assert _ids(bare.store)["a"][1] == "alice-202601020000-a"


def _alice_a_and_b_synced(gitops, db):
    """alice's models a and b in one commit of 2026-01-01, recorded by a syncer on `db`."""
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.write("models.d/alice/b.yaml", spec("b"))
    gitops.commit("a+b", when="2026-01-01T00:00:00Z")
    gitops.push()
    s = syncer(gitops, db)
    s.sync_once()
    return s


def test_the_ledger_is_a_commit_in_the_repo_with_the_live_models_ids(gitops, tmp_path):
    s = _alice_a_and_b_synced(gitops, tmp_path / "a.db")
    show = lambda: json.loads(subprocess.run(["git", "-C", str(gitops.bare), "show", "refs/argus/ids:ids.json"],
                                             capture_output=True, text=True, check=True).stdout)
    assert [(r["user_id"], r["model_id"]) for r in show()["models"]] == [
        ("alice", "alice-202601010000-a"), ("alice", "alice-202601010000-b")]
    # A model that is DELETED leaves it (on the next sync, even with no new commit) ...
    gitops.rm("models.d/alice/b.yaml")
    gitops.commit("rm b")
    gitops.push()
    s.sync_once()
    assert len(show()["models"]) == 2              # DELETING: it can still be revived
    with s.store.transaction():
        s.store.set_state(_ids(s.store)["b"][0], "DELETED", now="2026-01-01T00:00:00.000000Z")
    assert s.sync_once().outcome == "noop"
    assert [r["model_id"] for r in show()["models"]] == ["alice-202601010000-a"]
    # ... and an unchanged set of ids writes nothing: one commit per change.
    s.sync_once()
    log = subprocess.run(["git", "-C", str(gitops.bare), "log", "--format=%an %s", "refs/argus/ids"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert log == ["argusd argusd: the ids of 1 model(s)", "argusd argusd: the ids of 2 model(s)"]


def test_a_rebuild_that_replays_a_delete_and_recreate_keeps_the_last_ids(gitops, tmp_path):
    """The live store saw `a` deleted (DELETED) and created again: a new key and id. A rebuild
    replays both without a reconcile in between (a revive of the first); the ledger gives the
    second's ids back."""
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("a", when="2026-01-01T00:00:00Z")
    gitops.push()
    db = tmp_path / "a.db"
    live = syncer(gitops, db)
    live.sync_once()
    gitops.rm("models.d/alice/a.yaml")
    gitops.commit("rm a", when="2026-01-01T01:00:00Z")
    gitops.push()
    live.sync_once()
    with live.store.transaction():   # what reconcile does once Serve has removed it
        live.store.set_state(_ids(live.store)["a"][0], "DELETED", now="2026-01-01T01:00:01.000000Z")
    gitops.write("models.d/alice/a.yaml", spec("a", replicas=2))
    gitops.commit("a again", when="2026-01-01T02:00:00Z")
    gitops.push()
    live.sync_once()
    before = _ids(live.store)
    assert before["a"][1] == "alice-202601010200-a"
    live.store.close()
    rebuilt = _rebuild(gitops, db)
    rebuilt.sync_once()
    assert _ids(rebuilt.store) == before


def test_a_damaged_or_forged_ledger_never_stops_a_rebuild(gitops, tmp_path):
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.write("models.d/bob/b.yaml", spec("b"))
    gitops.commit("a+b", when="2026-01-01T00:00:00Z")
    gitops.push()
    forged = {"version": 1, "models": [
        # bob's id under alice's name, and an id that is not the one its time gives: both left out
        {"user_id": "alice", "model_id_suffix": "a", "model_key": "m-" + "1" * 16,
         "model_id": "bob-202001010000-a", "created_at": "2020-01-01T00:00:00.000000Z"},
        {"user_id": "bob", "model_id_suffix": "b", "model_key": "m-" + "2" * 16,
         "model_id": "bob-202001010000-b", "created_at": "2021-01-01T00:00:00.000000Z"},
        "not an entry"]}
    from daemon.gitrepo import GitRepo as Repo
    Repo(gitops.bare).write_ref_file("refs/argus/ids", "ids.json", json.dumps(forged), None, "forged")
    s = syncer(gitops, tmp_path / "a.db")
    assert s.sync_once().outcome == "synced"
    assert {m.model_id for m in s.store.list_models()} == {"alice-202601010000-a", "bob-202601010000-b"}
    # and argusd wrote a good ledger over it (the forged one stays in the ref's history)
    text = subprocess.run(["git", "-C", str(gitops.bare), "show", "refs/argus/ids:ids.json"],
                          capture_output=True, text=True, check=True).stdout
    assert "2020" not in text and "2021" not in text
    for garbage in ("not json", json.dumps({"version": 99, "models": []})):
        Repo(gitops.bare).write_ref_file("refs/argus/ids", "ids.json", garbage,
                                         Repo(gitops.bare).resolve("refs/argus/ids"), "garbage")
        again = _rebuild(gitops, tmp_path / "a.db")
        assert again.sync_once().outcome == "synced"
        assert {m.model_id for m in again.store.list_models()} == {"alice-202601010000-a", "bob-202601010000-b"}
        again.store.close()


def test_a_ledger_argusd_cannot_write_never_stops_the_record_and_is_said_once(gitops, tmp_path, caplog):
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("a")
    gitops.push()
    # A file where the ref's directory must be: git refuses the update (as it would a read-only
    # repo; the tests run as root, for whom permissions refuse nothing).
    (gitops.bare / "refs" / "argus").write_text("in the way\n")
    s = syncer(gitops, tmp_path / "a.db")
    with caplog.at_level("ERROR", logger="argus.sync"):
        assert s.sync_once().outcome == "synced"
        assert s.sync_once().outcome == "noop"
    assert [m.model_id_suffix for m in s.store.list_models()] == ["a"]
    trouble = [r.getMessage() for r in caplog.records if "cannot write the id ledger" in r.getMessage()]
    assert len(trouble) == 1 and "let argusd's user write the repository" in trouble[0], trouble


def test_a_row_the_ledger_would_refuse_is_left_out_and_never_rewritten_each_tick(gitops, tmp_path):
    s = _alice_a_and_b_synced(gitops, tmp_path / "a.db")
    # a row no argus writes (an id its creation time does not give), e.g. from a hand-edited store
    s.store.conn.execute("UPDATE serve_models SET model_id='alice-199001010000-b' WHERE model_id_suffix='b'")
    head = lambda: subprocess.run(["git", "-C", str(gitops.bare), "rev-parse", "refs/argus/ids"],
                                  capture_output=True, text=True, check=True).stdout.strip()
    s.sync_once()
    first = head()
    for _ in range(3):
        assert s.sync_once().outcome == "noop"
    assert head() == first
    text = subprocess.run(["git", "-C", str(gitops.bare), "show", "refs/argus/ids:ids.json"],
                          capture_output=True, text=True, check=True).stdout
    assert "alice-202601010000-a" in text and "alice-202601010000-b" not in text and "1990" not in text

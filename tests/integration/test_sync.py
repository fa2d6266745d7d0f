"""Git sync on real repos (bare + clone + push) into a real SQLite file."""
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
    for delay in (0.6, 0.9, 1.3, 2.0):
        proc = subprocess.Popen([sys.executable, "-m", "daemon.argusd", "--once", "--sync-only", "--config", str(cfg),
                                 "--log-level", "WARNING"])
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

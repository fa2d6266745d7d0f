"""Ownership and server-side validation on real repos: the pre-receive hook refuses at the
pusher's terminal; the daemon refuses what gets in some other way."""
import subprocess

import pytest

from daemon.gitrepo import GitRepo
from daemon.store import Store
from daemon.sync.syncer import Syncer
from helpers import GitOps, run_argusctl, spec, write_config, spec_policy

USERS = ("users:\n  alice:\n    git_identities: [alice@example.com]\n"
         "  bob:\n    git_identities: [bob@example.com]\n")
OWNERS = {"alice": ("alice@example.com",), "bob": ("bob@example.com",)}


@pytest.fixture
def hooked(tmp_path):
    gitops = GitOps(tmp_path / "g")
    config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "s.db",
                          repo=gitops.bare, extra=USERS)
    result = run_argusctl("--config", str(config), "hook", "install")
    assert result.returncode == 0, result.stderr
    return gitops


def push(gitops):
    return subprocess.run(["git", "push", "origin", "HEAD:main"], cwd=gitops.work, capture_output=True, text=True)


def test_valid_push_by_the_owner_is_accepted(hooked):
    hooked.write("models.d/alice/a.yaml", spec("a"))
    hooked.commit("a")
    result = push(hooked)
    assert result.returncode == 0, result.stderr


def test_broken_spec_is_refused_with_path_line_col(hooked):
    hooked.write("models.d/alice/a.yaml", spec("a"))
    hooked.commit("good")
    hooked.write("models.d/alice/b.yaml", "model_id: b\nmodel_source: $HOME/common/hf/m\nnum_replicas: 0\n")
    sha = hooked.commit("bad")
    result = push(hooked)
    assert result.returncode != 0
    assert "argus: push refused: 1 problem(s)" in result.stderr
    assert (f"argus: models.d/alice/b.yaml:3:15: num_replicas input should be greater than or equal to 1, got 0 "
            f"(commit {sha[:12]})") in result.stderr
    assert subprocess.run(["git", "-C", str(hooked.bare), "rev-parse", "--verify", "-q", "main"],
                          capture_output=True).returncode != 0  # nothing landed, not even the good commit


def test_wrong_author_and_unknown_user_are_refused(hooked):
    hooked.write("models.d/alice/a.yaml", spec("a"))
    hooked.commit("alice")
    assert push(hooked).returncode == 0
    hooked.rm("models.d/alice/a.yaml")
    hooked.commit("bob deletes alice's file", author="Bob", email="bob@example.com")
    result = push(hooked)
    assert result.returncode != 0
    assert "models.d/alice/a.yaml:1:1: Bob <bob@example.com> (commit " in result.stderr
    assert ") may not change models.d/alice/ (allowed: alice@example.com)" in result.stderr
    hooked.git("reset", "-q", "--hard", "HEAD~1")
    hooked.write("models.d/carol/c.yaml", spec("c"))
    hooked.commit("carol", author="Carol", email="carol@example.com")
    result = push(hooked)
    assert "user 'carol' is not known to this platform" in result.stderr


def test_daemon_refuses_changes_by_the_wrong_author(tmp_path):
    gitops = GitOps(tmp_path / "g")  # no hook: the commit gets in
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("alice adds a")
    gitops.write("models.d/alice/a.yaml", spec("a", replicas=3))
    gitops.commit("bob scales alice's model", author="Bob", email="bob@example.com")
    gitops.push()
    syncer = Syncer(Store.open(tmp_path / "s.db"), GitRepo(gitops.bare), "main", spec_policy(), owners=OWNERS)
    syncer.sync_once()
    (model,) = syncer.store.list_models()
    assert model.resolved["num_replicas"] == 1
    (rejection,) = syncer.store.rejections()
    assert "Bob <bob@example.com> (commit " in rejection.problems[0].message
    assert ") may not change models.d/alice/" in rejection.problems[0].message
    # bob deletes it: the model stays
    gitops.rm("models.d/alice/a.yaml")
    gitops.commit("bob deletes", author="Bob", email="bob@example.com")
    gitops.write("models.d/alice/other.yaml", spec("other"))
    gitops.commit("alice adds another")  # a later commit by the owner does not undo the protection
    gitops.push()
    syncer.sync_once()
    states = {m.model_id_suffix: m.state for m in syncer.store.list_models()}
    assert states == {"a": "QUEUED", "other": "QUEUED"}
    # the owner brings the file back: the rejection clears
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("alice reverts")
    gitops.push()
    syncer.sync_once()
    assert syncer.store.rejections() == []
    assert [e.event_type for e in syncer.store.events()].count("DELETE_REQUESTED") == 0


def test_daemon_rejects_unknown_users(tmp_path):
    gitops = GitOps(tmp_path / "g")
    gitops.write("models.d/carol/c.yaml", spec("c"))
    gitops.commit("carol", author="Carol", email="carol@example.com")
    gitops.push()
    syncer = Syncer(Store.open(tmp_path / "s.db"), GitRepo(gitops.bare), "main", spec_policy(), owners=OWNERS)
    syncer.sync_once()
    assert syncer.store.list_models() == []
    assert "not known to this platform" in syncer.store.rejections()[0].problems[0].message


def test_install_refuses_to_overwrite_a_foreign_hook(tmp_path):
    gitops = GitOps(tmp_path / "g")
    (gitops.bare / "hooks" / "pre-receive").write_text("#!/bin/sh\nexit 0\n")
    config = write_config(tmp_path / "c.yaml", root=tmp_path, db=tmp_path / "s.db", repo=gitops.bare)
    result = run_argusctl("--config", str(config), "hook", "install")
    assert result.returncode == 3 and "was not written by argus" in result.stderr


def test_a_spec_at_the_wrong_depth_is_refused(hooked):
    hooked.write("models.d/stray.yaml", spec("s"))
    hooked.commit("stray")
    result = push(hooked)
    assert result.returncode != 0
    assert "models.d/stray.yaml:1:1: specs live at models.d/<user_id>/<name>.yaml" in result.stderr

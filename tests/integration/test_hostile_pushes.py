"""Pushes by bob that must not change alice's models, through the pre-receive hook and
through argusd alone (a repo without the hook), on real repos; and the honest merge that
must pass both. Each hostile case is run through both doors and both must refuse it."""
import os
import subprocess

import pytest

from daemon.config import load_config
from argusctl.ops.doctor import check_state
from daemon.gitrepo import GitRepo
from daemon.core.records import RejectionKind
from daemon.store import Store
from daemon.sync.syncer import Syncer
from helpers import GitOps, run_argusctl, spec, write_config, spec_policy

USERS = ("users:\n  alice:\n    git_identities: [alice@example.com]\n"
         "  bob:\n    git_identities: [bob@example.com]\n")
OWNERS = {"alice": ("alice@example.com",), "bob": ("bob@example.com",)}
BOB = {"GIT_AUTHOR_NAME": "Bob", "GIT_AUTHOR_EMAIL": "bob@example.com",
       "GIT_COMMITTER_NAME": "Bob", "GIT_COMMITTER_EMAIL": "bob@example.com"}
ALICE_A = "models.d/alice/a.yaml"


class World:
    """A bare repo (with or without the hook), one working clone, and a syncer on the bare repo."""

    def __init__(self, tmp_path, hooked: bool):
        self.gitops = GitOps(tmp_path / "g")
        if hooked:
            config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "unused.db",
                                  repo=self.gitops.bare, extra=USERS)
            result = run_argusctl("--config", str(config), "hook", "install")
            assert result.returncode == 0, result.stderr
        self.syncer = Syncer(Store.open(tmp_path / "s.db"), GitRepo(self.gitops.bare), "main", spec_policy(),
                             owners=OWNERS)

    def push(self, *refspecs: str, force: bool = False) -> subprocess.CompletedProcess:
        args = ["git", "push", *(["--force"] if force else []), "origin", *(refspecs or ("HEAD:main",))]
        return subprocess.run(args, cwd=self.gitops.work, capture_output=True, text=True)

    def sync(self) -> None:
        self.syncer.sync_once()

    def replicas(self) -> dict[str, tuple[str, int]]:
        return {m.spec_path: (m.state, m.resolved["num_replicas"]) for m in self.syncer.store.list_models()}

    def bare_head(self) -> str:
        return subprocess.run(["git", "-C", str(self.gitops.bare), "rev-parse", "main"], capture_output=True,
                              text=True).stdout.strip()


def alice_serves_a(world: World, replicas=(1,)) -> None:
    for n in replicas:
        world.gitops.write(ALICE_A, spec("a", replicas=n))
        world.gitops.commit(f"alice: a at {n}")
        assert world.push().returncode == 0
    world.sync()


# -- the hostile pushes: each leaves the clone ready and returns the push's arguments ----------

def orphan_force_push(g: GitOps):
    g.git("checkout", "-q", "--orphan", "bob-only")
    g.git("rm", "-rfq", ".")
    g.write("models.d/bob/b.yaml", spec("b"))
    g.commit("bob: only my files", author="Bob", email="bob@example.com")
    return {"force": True}


def reset_to_an_older_commit(g: GitOps):
    g.git("reset", "-q", "--hard", "HEAD~1")  # before alice's scale to 2
    return {"force": True}


def merge_keeping_ours(g: GitOps):
    base = g.git("rev-parse", "HEAD~1").strip()  # before alice's scale to 2
    g.git("checkout", "-q", "-b", "bob", base)
    g.write("models.d/bob/b.yaml", spec("b"))
    g.commit("bob: b", author="Bob", email="bob@example.com")
    g.git("merge", "-q", "-s", "ours", "-m", "merge main (keeping mine)", "main", env=BOB)
    return {}


@pytest.mark.parametrize("attack", [orphan_force_push, reset_to_an_older_commit, merge_keeping_ours])
def test_the_hook_refuses_it(tmp_path, attack):
    world = World(tmp_path, hooked=True)
    alice_serves_a(world, replicas=(1, 2))
    before = world.bare_head()
    result = world.push(**attack(world.gitops))
    assert result.returncode != 0, result.stderr
    assert world.bare_head() == before
    if attack is merge_keeping_ours:  # a fast-forward: refused for what it does to alice's file
        assert f"{ALICE_A}:1:1: Bob <bob@example.com> (commit " in result.stderr
        assert "may not change models.d/alice/" in result.stderr
    else:
        assert "non-fast-forward push (a force-push or a rewritten history) is refused" in result.stderr


@pytest.mark.parametrize("attack", [orphan_force_push, reset_to_an_older_commit, merge_keeping_ours])
def test_argusd_alone_refuses_it(tmp_path, attack):
    world = World(tmp_path, hooked=False)
    alice_serves_a(world, replicas=(1, 2))
    assert world.push(**attack(world.gitops)).returncode == 0  # no hook: it lands in git
    world.sync()
    assert world.replicas()[ALICE_A] == ("QUEUED", 2)  # not deleted, not scaled back
    (rejection,) = [r for r in world.syncer.store.rejections() if r.spec_path == ALICE_A]
    assert rejection.kind == RejectionKind.OWNERSHIP
    # The refusal holds on alice's next, unrelated commit ...
    world.gitops.write("models.d/alice/other.yaml", spec("other"))
    world.gitops.commit("alice: other")
    assert world.push().returncode == 0
    world.sync()
    assert world.replicas()[ALICE_A] == ("QUEUED", 2)
    # ... until alice herself commits the file (a change of hers: here a comment).
    world.gitops.write(ALICE_A, spec("a", replicas=1) + "# on purpose\n")
    world.gitops.commit("alice: a at 1, on purpose")
    assert world.push().returncode == 0
    world.sync()
    assert world.replicas()[ALICE_A] == ("QUEUED", 1)
    assert not [r for r in world.syncer.store.rejections() if r.spec_path == ALICE_A]


def test_replace_refs_are_refused_by_the_hook_and_ignored_by_argusd(tmp_path):
    for hooked in (True, False):
        world = World(tmp_path / str(hooked), hooked=hooked)
        alice_serves_a(world)
        g = world.gitops
        blob = g.git("rev-parse", f"HEAD:{ALICE_A}").strip()
        fake = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=g.work, input=spec("a", replicas=2),
                              capture_output=True, text=True, check=True).stdout.strip()
        g.git("replace", blob, fake)
        result = world.push("refs/replace/*:refs/replace/*")
        if hooked:
            assert result.returncode != 0
            assert f"refs/replace/{blob}: only refs/heads/main may be pushed to this repo" in result.stderr
            continue
        assert result.returncode == 0
        g.git("replace", "-d", blob)
        g.write("models.d/alice/other.yaml", spec("other"))
        g.commit("alice: other")  # argusd re-reads alice's directory now
        assert world.push().returncode == 0
        world.sync()
        assert world.replicas()[ALICE_A] == ("QUEUED", 1)
        assert "SCALED" not in [e.event_type for e in world.syncer.store.events()]


def test_a_refused_edit_and_file_never_go_live_through_the_owner_s_next_commit(tmp_path):
    world = World(tmp_path, hooked=False)
    alice_serves_a(world)
    g = world.gitops
    g.write(ALICE_A, spec("a", replicas=2))
    g.write("models.d/alice/evil.yaml", spec("evil", src="x"))
    g.commit("bob: into alice's directory", author="Bob", email="bob@example.com")
    assert world.push().returncode == 0
    world.sync()
    g.write("models.d/alice/other.yaml", spec("other"))
    g.commit("alice: other")
    assert world.push().returncode == 0
    world.sync()
    assert world.replicas() == {ALICE_A: ("QUEUED", 1), "models.d/alice/other.yaml": ("QUEUED", 1)}
    refused = {r.spec_path: r for r in world.syncer.store.rejections()}
    assert set(refused) == {ALICE_A, "models.d/alice/evil.yaml"}
    assert all("Bob <bob@example.com> (commit" in r.problems[0].message for r in refused.values())
    # Recorded once each, not again on alice's commit.
    assert [e.event_type for e in world.syncer.store.events()].count("REJECTED") == 2


@pytest.mark.parametrize("hooked", [True, False])
def test_the_honest_merge_passes_both(tmp_path, hooked):
    """bob works on a branch from an older main, merges main in and pushes: nobody is blamed."""
    world = World(tmp_path, hooked=hooked)
    alice_serves_a(world, replicas=(1, 2))
    g = world.gitops
    g.git("checkout", "-q", "-b", "bob", g.git("rev-parse", "HEAD~1").strip())
    g.write("models.d/bob/b.yaml", spec("b"))
    g.commit("bob: b", author="Bob", email="bob@example.com")
    g.git("merge", "-q", "--no-edit", "main", env=BOB)
    result = world.push()
    assert result.returncode == 0, result.stderr
    world.sync()
    assert world.replicas() == {ALICE_A: ("QUEUED", 2), "models.d/bob/b.yaml": ("QUEUED", 1)}
    assert world.syncer.store.rejections() == []
    assert "REJECTED" not in [e.event_type for e in world.syncer.store.events()]


def test_init_and_hook_install_make_git_refuse_force_pushes(tmp_path):
    config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "s.db",
                          repo=tmp_path / "gitops.git")
    env = {"ARGUS_CONFIG": str(config)}
    result = run_argusctl("init", "--user", "alice", "--name", "Alice", "--email", "alice@example.com",
                          "--workdir", str(tmp_path / "work"), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for key in ("receive.denyNonFastForwards", "receive.denyDeletes"):
        assert subprocess.run(["git", "--git-dir", str(tmp_path / "gitops.git"), "config", "--get", key],
                              capture_output=True, text=True).stdout.strip() == "true"
    checks = {c.name: c for c in check_state(load_config(config))}
    assert checks["push protection"].status == "warn"  # init alone: the hook is still missing
    assert checks["push protection"].detail == "no argus pre-receive hook"
    assert checks["push protection"].fix == "argusctl hook install"
    assert run_argusctl("hook", "install", env=env, cwd=tmp_path).returncode == 0
    checks = {c.name: c for c in check_state(load_config(config))}
    assert checks["push protection"].status == "ok"


def test_author_names_and_dates_that_broke_the_record_are_recorded(tmp_path):
    """A committer date in year 10000 and a \\x1f in a name once stopped argusd for everyone."""
    world = World(tmp_path, hooked=False)
    g = world.gitops
    g.write("models.d/alice/a.yaml", spec("a"))
    g.git("add", "-A")
    g.git("commit", "-q", "-m", "far future", env={**os.environ, "GIT_AUTHOR_NAME": "Al\x1fice",
                                                   "GIT_AUTHOR_EMAIL": "alice@example.com",
                                                   "GIT_COMMITTER_NAME": "Alice",
                                                   "GIT_COMMITTER_EMAIL": "alice@example.com",
                                                   "GIT_COMMITTER_DATE": "@253402300800 +0000",
                                                   "GIT_AUTHOR_DATE": "@253402300800 +0000"})
    assert world.push().returncode == 0
    world.sync()
    (model,) = world.syncer.store.list_models()
    assert model.commit_author == "Al\x1fice <alice@example.com>"
    assert model.model_id.startswith("alice-2") and len(model.model_id.split("-")[1]) == 12  # argusd's clock
    assert "COMMIT_DATE_REFUSED" in [e.event_type for e in world.syncer.store.events()]
    g.write("models.d/alice/b.yaml", spec("b"))
    g.commit("next")
    assert world.push().returncode == 0
    world.sync()
    assert len(world.syncer.store.list_models()) == 2  # the next commit is recorded


def test_the_hook_takes_odd_commit_fields_without_a_traceback(tmp_path):
    world = World(tmp_path, hooked=True)
    g = world.gitops
    g.write(ALICE_A, spec("a"))
    g.git("add", "-A")
    g.git("commit", "-q", "-m", "far future", env={"GIT_AUTHOR_NAME": "Al\x1fice", "GIT_AUTHOR_EMAIL": "alice@example.com",
                                                   "GIT_COMMITTER_NAME": "Alice",
                                                   "GIT_COMMITTER_EMAIL": "alice@example.com",
                                                   "GIT_COMMITTER_DATE": "@253402300800 +0000"})
    result = world.push()
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr

"""GPU quotas up front, on real repos and the real CLI: the pre-receive hook refuses a push that
puts a user over their quota (it could never run), `argusctl lint` says so before the push,
and a users: section that only sets quotas leaves who may push as it was (no ownership map)."""
import subprocess

import pytest

from helpers import GitOps, run_argusctl, spec, write_config

QUOTA_ONLY = "users:\n  alice:\n    max_gpus: 3\n"


@pytest.fixture
def hooked(tmp_path):
    gitops = GitOps(tmp_path / "g")
    config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "s.db",
                          repo=gitops.bare, extra=QUOTA_ONLY)
    result = run_argusctl("--config", str(config), "hook", "install")
    assert result.returncode == 0, result.stderr
    gitops.config = config
    return gitops


def push(gitops):
    return subprocess.run(["git", "push", "origin", "HEAD:main"], cwd=gitops.work, capture_output=True, text=True)


def landed(gitops) -> str:
    return subprocess.run(["git", "-C", str(gitops.bare), "rev-parse", "--verify", "-q", "main"],
                          capture_output=True, text=True).stdout.strip()


def over(others: int, needs: int) -> str:
    return (f"over alice's GPU quota: 3 GPUs (users.alice.max_gpus), alice's other models reserve {others}, this "
            f"one needs {needs}; lower num_replicas or gpus_per_replica (with autoscaling, min_replicas: 0 reserves "
            f"none while idle), suspend or delete another of alice's models, or ask an admin to raise "
            f"users.alice.max_gpus")


def test_the_hook_refuses_a_push_over_the_quota_and_takes_what_fits(hooked):
    hooked.write("models.d/alice/a.yaml", spec("a", replicas=2))
    assert push_commit(hooked, "a: 2 GPUs").returncode == 0
    hooked.write("models.d/alice/b.yaml", spec("b", replicas=2))
    sha = hooked.commit("b: 2 more")
    before = landed(hooked)
    result = push(hooked)
    assert result.returncode != 0
    assert f"argus: models.d/alice/b.yaml:3:15: {over(2, 2)} (commit {sha[:12]})" in result.stderr
    assert "a.yaml" not in result.stderr          # the model already admitted is not blamed
    assert landed(hooked) == before               # nothing landed
    hooked.git("reset", "-q", "HEAD~1")           # drop the refused commit, keep the files
    # autoscaling from zero reserves nothing: the same model fits
    hooked.write("models.d/alice/b.yaml", spec("b").replace("num_replicas: 1\n", "")
                 + "autoscaling: {min_replicas: 0, max_replicas: 2}\n")
    assert push_commit(hooked, "b scales from zero").returncode == 0
    # suspending a frees its GPUs for c; resuming a is then over the quota
    hooked.write("models.d/alice/a.yaml", spec("a", replicas=2) + "suspended: true\n")
    hooked.write("models.d/alice/c.yaml", spec("c", replicas=3))
    assert push_commit(hooked, "suspend a, add c").returncode == 0
    hooked.write("models.d/alice/a.yaml", spec("a", replicas=2) + "suspended: false\n")
    result = push_commit(hooked, "resume a")
    assert result.returncode != 0 and f"models.d/alice/a.yaml:3:15: {over(3, 2)}" in result.stderr


def push_commit(gitops, message, **author):
    gitops.commit(message, **author)
    return push(gitops)


def test_a_quota_only_users_section_is_no_ownership_map(hooked):
    """alice's quota entry does not make other users unknown, nor her directory hers alone."""
    hooked.write("models.d/bob/b.yaml", spec("b", replicas=4))   # bob: no entry, no quota
    assert push_commit(hooked, "bob", author="Bob", email="bob@example.com").returncode == 0
    hooked.write("models.d/alice/a.yaml", spec("a"))
    result = push_commit(hooked, "bob adds alice's model", author="Bob", email="bob@example.com")
    assert result.returncode == 0, result.stderr


def test_a_lowered_quota_refuses_only_growth(tmp_path):
    """The config changed after alice's models were pushed: she can still shrink, suspend or edit."""
    gitops = GitOps(tmp_path / "g")
    gitops.write("models.d/alice/a.yaml", spec("a", replicas=4))
    gitops.commit("a: 4 GPUs, before any quota")
    gitops.push()
    config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "s.db",
                          repo=gitops.bare, extra=QUOTA_ONLY)
    assert run_argusctl("--config", str(config), "hook", "install").returncode == 0
    gitops.write("models.d/alice/a.yaml", spec("a", replicas=4) + "engine_kwargs: {max_model_len: 2048}\n")
    assert push_commit(gitops, "edit, same GPUs").returncode == 0
    gitops.write("models.d/alice/a.yaml", spec("a", replicas=3))
    assert push_commit(gitops, "a down to 3, the quota").returncode == 0
    gitops.write("models.d/alice/b.yaml", spec("b", replicas=1))
    result = push_commit(gitops, "b: 1 more")
    assert result.returncode != 0 and f"models.d/alice/b.yaml:3:15: {over(3, 1)}" in result.stderr


def test_lint_says_it_before_the_push(hooked):
    """lint counts alice's other files in models.d/alice/ (as the hook does) and what HEAD holds."""
    hooked.write("models.d/alice/a.yaml", spec("a", replicas=2))
    assert push_commit(hooked, "a: 2 GPUs").returncode == 0
    hooked.write("models.d/alice/b.yaml", spec("b", replicas=2))
    result = run_argusctl("--config", str(hooked.config), "lint", "models.d/alice/b.yaml", cwd=hooked.work)
    assert result.returncode == 1
    assert f"models.d/alice/b.yaml:3:15: {over(2, 2)}" in result.stdout
    assert "1 file checked: 0 valid, 1 invalid" in result.stdout
    # a.yaml alone is as HEAD has it: not growing, not blamed, even with b beside it
    result = run_argusctl("--config", str(hooked.config), "lint", "models.d/alice/a.yaml", cwd=hooked.work)
    assert result.returncode == 0, result.stdout
    hooked.write("models.d/alice/b.yaml", spec("b", replicas=1))
    result = run_argusctl("--config", str(hooked.config), "lint", "models.d/alice/", cwd=hooked.work)
    assert result.returncode == 0, result.stdout

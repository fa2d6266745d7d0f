"""Racing writers and failed writes on real git repos and real argusctl processes: a lost race
is replayed on top of the winner (never forced, never git's raw text), two writes through one
clone take turns, and a write that fails puts the clone back as it was."""
import os
import subprocess
import sys

import pytest

from helpers import run_argusctl, spec, write_config

ROUNDS = 12
CLONES = ("alice-work", "alice-2", "bob-work")
RAW_GIT = ("is at", "but expected", "cannot rebase", "fatal:", "error:", "hint:", "Traceback")


def git(path, *args, check=True):
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, check=check).stdout


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "private" / "hf").mkdir(parents=True)
    config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "state.db",
                          repo=tmp_path / "gitops.git")
    env = {**os.environ, "ARGUS_CONFIG": str(config), "COLUMNS": "120"}
    for workdir, user in zip(CLONES, ("alice", "alice", "bob")):
        made = run_argusctl("init", "--user", user, "--name", user.title(), "--email", f"{user}@example.com",
                            "--workdir", str(tmp_path / workdir), env=env, cwd=tmp_path)
        assert made.returncode == 0, made.stderr
    # A pre-receive hook that takes a moment, as argus's own (it runs argusctl) does: pushes
    # overlap on the server, so the losers meet both kinds of lost race (the branch moved
    # before they sent; the ref moved while receive-pack held it).
    hook = tmp_path / "gitops.git" / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\ncat >> {tmp_path / 'pushes.log'}\nsleep 0.2\n")
    hook.chmod(0o755)
    return tmp_path, env


def start_apply(tmp, env, workdir, path):
    return subprocess.Popen([sys.executable, "-m", "argusctl", "apply", "-f", str(path), "--workdir", str(tmp / workdir)],
                            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(processes):
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in processes]
    for p in processes:
        p.stdout.close()
        p.stderr.close()
    return results


def subjects(bare):
    return git(bare, "log", "--format=%s").splitlines()


def test_three_clones_racing_for_twelve_rounds_lose_nothing(repo):
    tmp, env = repo
    for round_ in range(ROUNDS):
        processes = []
        for n, workdir in enumerate(CLONES):
            path = tmp / f"r{round_}-{n}.yaml"
            path.write_text(spec(f"m{n}-r{round_}", replicas=1 + round_ % 4))
            processes.append(start_apply(tmp, env, workdir, path))
        for code, out, err in finish(processes):
            assert code == 0, out + err
            assert not any(raw in err for raw in RAW_GIT), err
    bare = tmp / "gitops.git"
    applied = [s for s in subjects(bare) if s.startswith("apply ")]
    assert len(applied) == ROUNDS * len(CLONES) and len(set(applied)) == len(applied)
    tree = set(git(bare, "ls-tree", "-r", "--name-only", "main").splitlines())
    for round_ in range(ROUNDS):
        assert {f"models.d/alice/m0-r{round_}.yaml", f"models.d/alice/m1-r{round_}.yaml",
                f"models.d/bob/m2-r{round_}.yaml"} <= tree
    assert git(bare, "rev-list", "--merges", "main") == ""          # replayed, never merged
    pushes = (tmp / "pushes.log").read_text().splitlines()
    # Every push the server saw beyond the 36 that landed (and the 3 inits) lost a race after
    # reaching it and was replayed: the retry was really exercised, not merely never needed.
    assert len(pushes) > ROUNDS * len(CLONES) + len(CLONES), len(pushes)
    for workdir in CLONES:
        assert git(tmp / workdir, "status", "--porcelain") == ""


def test_two_processes_writing_through_one_clone_take_turns(repo):
    tmp, env = repo
    rounds = 6
    for round_ in range(rounds):
        paths = [tmp / f"same-{round_}-{n}.yaml" for n in range(2)]
        for n, path in enumerate(paths):
            path.write_text(spec(f"same{n}-r{round_}"))
        for code, out, err in finish([start_apply(tmp, env, "alice-work", path) for path in paths]):
            assert code == 0, out + err
            assert not any(raw in err for raw in RAW_GIT), err
    applied = [s for s in subjects(tmp / "gitops.git") if s.startswith("apply alice/same")]
    assert sorted(applied) == sorted(f"apply alice/same{n}-r{r}: new model" for r in range(rounds) for n in range(2))
    assert git(tmp / "alice-work", "status", "--porcelain") == ""
    assert git(tmp / "alice-work", "rev-parse", "HEAD") == git(tmp / "gitops.git", "rev-parse", "main")


def ctl(tmp, env, *args, workdir="alice-work"):
    return run_argusctl(*args, "--workdir", str(tmp / workdir), env=env, cwd=tmp)


def clone_state(tmp, workdir="alice-work"):
    work = tmp / workdir
    files = {p.relative_to(work).as_posix(): p.read_text() for p in (work / "models.d").rglob("*") if p.is_file()}
    return git(work, "rev-parse", "HEAD"), git(work, "status", "--porcelain", "--untracked-files=all"), files


@pytest.mark.parametrize("hook,said", [
    ("pre-commit", "git commit failed"),   # fails after the file is written and staged
    ("pre-push", "git push failed"),       # fails after the commit is made
])
def test_a_write_that_fails_puts_the_clone_back(repo, hook, said):
    tmp, env = repo
    (tmp / "m.yaml").write_text(spec("m"))
    assert ctl(tmp, env, "apply", "-f", "m.yaml").returncode == 0
    bare_before = git(tmp / "gitops.git", "rev-parse", "main")
    before = clone_state(tmp)
    failing = tmp / "alice-work" / ".git" / "hooks" / hook
    failing.write_text("#!/bin/sh\necho 'the site policy says no' >&2\nexit 1\n")
    failing.chmod(0o755)
    (tmp / "n.yaml").write_text(spec("n"))
    for command in (("apply", "-f", "n.yaml"), ("scale", "m", "--replicas", "2"), ("delete", "m")):
        result = ctl(tmp, env, *command)
        assert result.returncode == 3, result.stdout + result.stderr
        assert said in result.stderr and "the site policy says no" in result.stderr
        assert clone_state(tmp) == before, command          # not a file, not a commit left behind
    assert git(tmp / "gitops.git", "rev-parse", "main") == bare_before
    failing.unlink()
    for command in (("apply", "-f", "n.yaml"), ("scale", "m", "--replicas", "2"), ("delete", "m")):
        result = ctl(tmp, env, *command)
        assert result.returncode == 0, result.stderr   # the next write does not trip on the last one
    assert subjects(tmp / "gitops.git")[:3] == ["delete alice/m", "scale alice/m: num_replicas 1 -> 2",
                                                "apply alice/n: new model"]


def test_a_write_without_a_git_identity_refuses_before_touching_anything(repo, tmp_path):
    tmp, env = repo
    home = tmp_path / "fresh-home"
    home.mkdir()
    fresh = {**env, "HOME": str(home), "XDG_CONFIG_HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
    work = tmp / "alice-work"
    git(work, "config", "--unset", "user.name")
    git(work, "config", "--unset", "user.email")
    if subprocess.run(["git", "var", "GIT_COMMITTER_IDENT"], env=fresh, cwd=work, capture_output=True).returncode == 0:
        pytest.skip("this machine's git makes up an identity from its host name")
    before = clone_state(tmp)
    (tmp / "m.yaml").write_text(spec("m"))
    result = run_argusctl("apply", "-f", "m.yaml", "--workdir", str(work), env=fresh, cwd=tmp)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "git has no identity to commit as" in result.stderr and "--name and --email" in result.stderr
    assert clone_state(tmp) == before
    git(work, "config", "user.name", "Alice")
    git(work, "config", "user.email", "alice@example.com")
    again = run_argusctl("apply", "-f", "m.yaml", "--workdir", str(work), env=fresh, cwd=tmp)
    assert again.returncode == 0, again.stderr

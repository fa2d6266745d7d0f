"""The write path keeps what it does not mean to change: a CRLF file's line ends, another
writer's edit of the same spec (a conflict, never a silent merge), the user's unpushed commits,
a server's stale ref lock (named, not retried), and the clone on an interrupt. Real git repos
and real argusctl processes."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import run_argusctl, spec, write_config


def git(path, *args):
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, check=True).stdout


def show(bare, rel):
    return subprocess.run(["git", "-C", str(bare), "show", f"main:{rel}"], capture_output=True, check=True).stdout


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "private" / "hf").mkdir(parents=True)
    config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "state.db",
                          repo=tmp_path / "gitops.git")
    env = {"ARGUS_CONFIG": str(config)}
    for workdir in ("alice-work", "alice-2"):
        made = run_argusctl("init", "--user", "alice", "--name", "Alice", "--email", "alice@example.com",
                            "--workdir", str(tmp_path / workdir), env=env, cwd=tmp_path)
        assert made.returncode == 0, made.stderr
    return tmp_path, env


def ctl(tmp, env, *args, workdir="alice-work"):
    return run_argusctl(*args, "--workdir", str(tmp / workdir), env=env, cwd=tmp)


def clone_state(work):
    files = {p.relative_to(work).as_posix(): p.read_bytes() for p in (work / "models.d").rglob("*") if p.is_file()}
    return git(work, "rev-parse", "HEAD"), git(work, "status", "--porcelain", "--untracked-files=all"), files


CRLF_SPEC = (b"# alice's model, written on Windows\r\nmodel_id: m\r\nmodel_source: $HOME/common/hf/m\r\n"
             b"num_replicas: 1\r\n")


def test_a_crlf_spec_keeps_its_line_ends_through_scale_and_reapply(repo):
    tmp, env = repo
    (tmp / "m.yaml").write_bytes(CRLF_SPEC)
    assert ctl(tmp, env, "apply", "-f", "m.yaml").returncode == 0
    assert show(tmp / "gitops.git", "models.d/alice/m.yaml") == CRLF_SPEC
    commits = git(tmp / "gitops.git", "rev-list", "--count", "main")
    again = ctl(tmp, env, "apply", "-f", "m.yaml")   # the same bytes: nothing to do, exit 0
    assert again.returncode == 0, again.stdout + again.stderr
    assert "alice/m: unchanged" in again.stdout
    assert git(tmp / "gitops.git", "rev-list", "--count", "main") == commits
    scaled = ctl(tmp, env, "scale", "m", "--replicas", "2")
    assert scaled.returncode == 0, scaled.stderr
    # only the one value changed: every CRLF stays
    assert show(tmp / "gitops.git", "models.d/alice/m.yaml") == CRLF_SPEC.replace(b"num_replicas: 1",
                                                                                   b"num_replicas: 2")
    back = ctl(tmp, env, "apply", "-f", "m.yaml")   # re-apply the file as written: num_replicas back to 1
    assert back.returncode == 0, back.stderr
    assert git(tmp / "gitops.git", "log", "-1", "--format=%s", "main").strip() == \
        "apply alice/m: num_replicas 2 -> 1"
    assert show(tmp / "gitops.git", "models.d/alice/m.yaml") == CRLF_SPEC
    final = ctl(tmp, env, "apply", "-f", "m.yaml")
    assert final.returncode == 0 and "alice/m: unchanged" in final.stdout, final.stdout + final.stderr


# Four unchanged lines between the two edits: git's rebase merges them without a textual conflict.
LONG_SPEC = ("model_id: m\nmodel_source: $HOME/common/hf/m\nnum_replicas: 1\n# one\n# two\n# three\n# four\n"
             "engine_kwargs: {{max_model_len: {len}}}\n")


def test_a_lost_race_with_an_edit_of_the_same_spec_is_a_conflict_even_lines_apart(repo):
    """Clone A scales m while clone B applies its own file (max_model_len); B loses the push
    race. Its write is refused (exit 6, 'changed the same spec'), never merged with A's."""
    tmp, env = repo
    (tmp / "m.yaml").write_text(LONG_SPEC.format(len=2048))
    assert ctl(tmp, env, "apply", "-f", "m.yaml").returncode == 0
    git(tmp / "alice-2", "pull", "-q", "origin", "main")
    # B's pre-push hook lets A win the race: A scales m after B read the repo, before B pushes.
    hook = tmp / "alice-2" / ".git" / "hooks" / "pre-push"
    a_scales = [sys.executable, "-m", "argusctl", "scale", "m", "--replicas", "3",
                "--workdir", str(tmp / "alice-work")]
    hook.write_text(f"#!/bin/sh\n[ -e {tmp}/raced ] && exit 0\ntouch {tmp}/raced\n"
                    f"ARGUS_CONFIG={env['ARGUS_CONFIG']} {' '.join(a_scales)} >/dev/null 2>&1 </dev/null\n")
    hook.chmod(0o755)
    (tmp / "b.yaml").write_text(LONG_SPEC.format(len=1024))
    b_applies = ctl(tmp, env, "apply", "-f", "b.yaml", workdir="alice-2")
    assert (tmp / "raced").exists()
    assert b_applies.returncode == 6, b_applies.stdout + b_applies.stderr
    assert "someone else changed the same spec meanwhile" in b_applies.stderr
    pushed = show(tmp / "gitops.git", "models.d/alice/m.yaml").decode()
    assert pushed == LONG_SPEC.format(len=2048).replace("num_replicas: 1", "num_replicas: 3")  # A's, alone
    assert clone_state(tmp / "alice-2")[1] == ""   # B's clone is clean, on theirs
    assert (tmp / "alice-2" / "models.d/alice/m.yaml").read_text() == pushed


def test_a_lost_race_with_another_spec_redoes_the_edit_on_the_winners_head(repo):
    tmp, env = repo
    (tmp / "m.yaml").write_text(spec("m"))
    (tmp / "n.yaml").write_text(spec("n"))
    assert ctl(tmp, env, "apply", "-f", "m.yaml").returncode == 0
    assert ctl(tmp, env, "apply", "-f", "n.yaml").returncode == 0
    git(tmp / "alice-2", "pull", "-q", "origin", "main")
    hook = tmp / "alice-2" / ".git" / "hooks" / "pre-push"
    hook.write_text(f"#!/bin/sh\n[ -e {tmp}/raced ] && exit 0\ntouch {tmp}/raced\n"
                    f"ARGUS_CONFIG={env['ARGUS_CONFIG']} {sys.executable} -m argusctl scale n --replicas 2 "
                    f"--workdir {tmp / 'alice-work'} >/dev/null 2>&1 </dev/null\n")
    hook.chmod(0o755)
    result = ctl(tmp, env, "scale", "m", "--replicas", "3", workdir="alice-2")
    assert result.returncode == 0, result.stderr
    assert (tmp / "raced").exists()
    subjects = git(tmp / "gitops.git", "log", "-2", "--format=%s", "main").splitlines()
    assert subjects == ["scale alice/m: num_replicas 1 -> 3", "scale alice/n: num_replicas 1 -> 2"]
    assert git(tmp / "gitops.git", "rev-list", "--merges", "main") == ""


def test_a_write_refuses_to_push_the_users_unpushed_commits(repo):
    tmp, env = repo
    (tmp / "m.yaml").write_text(spec("m"))
    assert ctl(tmp, env, "apply", "-f", "m.yaml").returncode == 0
    work = tmp / "alice-work"
    (work / "notes.txt").write_text("mine\n")
    git(work, "add", "notes.txt")
    git(work, "commit", "-qm", "my notes, not for the GitOps repo")
    before, bare_before = clone_state(work), git(tmp / "gitops.git", "rev-parse", "main")
    for command in (("scale", "m", "--replicas", "2"), ("delete", "m")):
        refused = ctl(tmp, env, *command)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "has 1 commit(s) not in the GitOps repo" in refused.stderr
        assert "push origin HEAD:main) or drop them" in refused.stderr
        assert clone_state(work) == before
    assert git(tmp / "gitops.git", "rev-parse", "main") == bare_before


def test_a_stale_ref_lock_on_the_server_is_named_not_retried(repo):
    tmp, env = repo
    (tmp / "m.yaml").write_text(spec("m"))
    lock = tmp / "gitops.git" / "refs" / "heads" / "main.lock"
    lock.write_text("")
    before = clone_state(tmp / "alice-work")
    started = time.monotonic()
    result = ctl(tmp, env, "apply", "-f", "m.yaml")
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"({lock} exists)" in result.stderr and "An admin removes that file" in result.stderr
    assert "other pushes won" not in result.stderr
    assert time.monotonic() - started < 20
    assert clone_state(tmp / "alice-work") == before
    lock.unlink()
    assert ctl(tmp, env, "apply", "-f", "m.yaml").returncode == 0


def test_an_interrupt_during_a_slow_pre_push_hook_leaves_the_clone_as_it_was(repo):
    tmp, env = repo
    (tmp / "m.yaml").write_text(spec("m"))
    assert ctl(tmp, env, "apply", "-f", "m.yaml").returncode == 0
    work = tmp / "alice-work"
    before, bare_before = clone_state(work), git(tmp / "gitops.git", "rev-parse", "main")
    hook = work / ".git" / "hooks" / "pre-push"
    hook.write_text(f"#!/bin/sh\necho $$ > {tmp}/pushing.tmp && mv {tmp}/pushing.tmp {tmp}/pushing\nsleep 60\n")
    hook.chmod(0o755)
    # As a terminal starts a command: SIGINT at its default. A test run started in the background
    # by a shell without job control (a CI launcher's `cmd &`) has SIGINT ignored, and children
    # inherit that: argusctl would never see the Ctrl-C below.
    proc = subprocess.Popen([sys.executable, "-m", "argusctl", "scale", "m", "--replicas", "2",
                             "--workdir", str(work)], env={**os.environ, **env}, cwd=tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not (tmp / "pushing").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        assert git(work, "log", "-1", "--format=%s").strip() == "scale alice/m: num_replicas 1 -> 2"  # committed
        os.killpg(proc.pid, signal.SIGINT)   # Ctrl-C: the whole foreground group
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0, out + err
    assert clone_state(work) == before
    assert git(tmp / "gitops.git", "rev-parse", "main") == bare_before
    # ...and the push was stopped with it (its hook too), not left to push after the user gave up.
    hook_pid, deadline = int((tmp / "pushing").read_text()), time.monotonic() + 5
    while Path(f"/proc/{hook_pid}").exists() and "Z" not in Path(f"/proc/{hook_pid}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "the push's pre-push hook still runs after Ctrl-C"
        time.sleep(0.1)


def test_an_api_write_does_its_git_work_once_and_all_of_it_under_the_clone_lock(repo, monkeypatch):
    """argusd's clone for a user is reset to what is pushed inside the write lock, with one
    fetch per write; a file left in it by a failed write is gone before the next one."""
    from contextlib import contextmanager

    from daemon import gitwrite
    from daemon.api.service import ModelService
    from daemon.api.tokens import Identity
    from daemon.config import load_config

    tmp, env = repo
    service = ModelService(load_config(env["ARGUS_CONFIG"]), tmp / "clones", record_timeout=0)
    alice = Identity("alice", False, "alice", "alice@argus.local")
    service.create(alice, spec("m").encode())
    (tmp / "clones" / "alice" / "models.d" / "alice" / "stray.yaml").write_text(spec("stray"))
    (tmp / "clones" / "alice" / "models.d" / "alice" / "m.yaml").write_text("half-written")
    held, calls = [False], []
    real_lock, real_git = gitwrite._clone_lock, gitwrite.run_git

    @contextmanager
    def watched_lock(clone):
        with real_lock(clone):
            held[0] = True
            try:
                yield
            finally:
                held[0] = False

    def watched_git(*args, **kwargs):
        calls.append((args[0], held[0]))
        return real_git(*args, **kwargs)

    from daemon import remote
    real_remote_git = remote.run_redacted_remote_git

    def watched_remote_git(args, **kwargs):   # fetch and push: bounded in time, output redacted
        calls.append((args[0], held[0]))
        return real_remote_git(args, **kwargs)

    monkeypatch.setattr(gitwrite, "_clone_lock", watched_lock)
    monkeypatch.setattr(gitwrite, "run_git", watched_git)
    monkeypatch.setattr(remote, "run_redacted_remote_git", watched_remote_git)
    result = service.create(alice, spec("m", replicas=2).encode())   # POST of a changed spec
    assert result.commit is not None
    touching = [(cmd, locked) for cmd, locked in calls
                if cmd in ("fetch", "checkout", "clean", "reset", "rebase", "status", "commit", "push")]
    assert [cmd for cmd, _ in touching].count("fetch") == 1
    assert "status" not in [cmd for cmd, _ in touching] and "rebase" not in [cmd for cmd, _ in touching]
    assert all(locked for _, locked in touching), touching
    pushed = show(tmp / "gitops.git", "models.d/alice/m.yaml").decode()
    assert pushed == spec("m", replicas=2)
    assert not (tmp / "clones" / "alice" / "models.d" / "alice" / "stray.yaml").exists()

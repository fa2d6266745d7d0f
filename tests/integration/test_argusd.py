"""argusd as a process: watchdog wake-ups, SIGTERM, a vanishing repo, and argusctl beside it."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from helpers import GitOps, free_port, run_argusctl, spec, write_config


def sync_passes(port: int, outcome: str | None = None) -> int:
    """argusd's own count of sync passes (its /metrics), of one outcome or all: what a test waits
    for instead of sleeping "long enough for several retries"."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("argus_sync_passes_total{")
                   and (outcome is None or f'outcome="{outcome}"' in line)))


class Daemon:
    def __init__(self, config, log_path):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.metrics_port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "daemon.argusd", "--sync-only", "--config", str(config)],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "ARGUS_METRICS_LISTEN": f"127.0.0.1:{self.metrics_port}"})

    def text(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, fragment: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while fragment not in self.text():
            assert self.proc.poll() is None, self.text()
            assert time.monotonic() < deadline, f"{fragment!r} not logged:\n{self.text()}"
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=15)
        self.log.close()
        return code


@pytest.fixture
def env(tmp_path):
    gitops = GitOps(tmp_path / "g")
    config = write_config(tmp_path / "argus.yaml", root=tmp_path / "private", db=tmp_path / "state" / "argus.db",
                          repo=gitops.bare, poll_seconds=60)  # a long poll: only the watcher can be this fast
    daemons = []

    def start():
        d = Daemon(config, tmp_path / f"argusd-{len(daemons)}.log")
        daemons.append(d)
        d.wait_for_log("argusd started")
        return d

    yield gitops, config, start
    for d in daemons:
        d.stop()


def start_with_one_model(env):
    """Push models.d/alice/a.yaml, start argusd, wait until it is recorded."""
    gitops, config, start = env
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("a")
    gitops.push()
    daemon = start()
    wait_until(lambda: status_json(config)["models"])
    return daemon


def status_json(config, *args):
    result = run_argusctl("--config", str(config), "status", "-o", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_a_push_wakes_the_daemon_without_waiting_for_the_poll(env):
    """The poll is 60 s: only the watcher can record a push this soon (the latency itself is
    measured by bench/sync_bench.py, not asserted here)."""
    gitops, config, start = env
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("first")
    gitops.push()
    daemon = start()
    wait_until(lambda: status_json(config)["models"])
    for replicas in (2, 3):
        gitops.write("models.d/alice/a.yaml", spec("a", replicas=replicas))
        gitops.commit(f"scale {replicas}")
        pushed = time.monotonic()
        gitops.push()
        wait_until(lambda: status_json(config)["models"][0]["resolved"]["num_replicas"] == replicas, timeout=20)
        assert time.monotonic() - pushed < 20
    assert "(inotify)" in daemon.text()


def test_sigterm_stops_cleanly_and_a_restart_resumes(env):
    gitops, config, start = env
    daemon = start_with_one_model(env)
    assert daemon.stop() == 0
    assert "argusd stopped" in daemon.text()
    gitops.write("models.d/alice/b.yaml", spec("b"))
    gitops.commit("b while down")
    gitops.push()
    start()
    wait_until(lambda: [m for m in status_json(config)["models"] if m["model_id_suffix"] == "b"])
    logs = run_argusctl("--config", str(config), "logs", "a")
    assert logs.stdout.count("CREATED") == 1  # nothing recorded twice


def test_a_vanished_repo_is_reported_once_and_retried(env, tmp_path):
    gitops, config, start = env
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("a")
    gitops.push()
    config.write_text(config.read_text().replace("poll_seconds: 60", "poll_seconds: 0.2"))
    daemon = start()
    wait_until(lambda: status_json(config)["models"])
    moved = tmp_path / "moved.git"
    shutil.move(gitops.bare, moved)
    daemon.wait_for_log("no git repository at")
    wait_until(lambda: sync_passes(daemon.metrics_port, "error") >= 4, timeout=20)  # several retries at 0.2 s
    assert daemon.text().count("no git repository at") == 1
    assert daemon.proc.poll() is None
    shutil.move(moved, gitops.bare)
    gitops.write("models.d/alice/b.yaml", spec("b"))
    gitops.commit("b")
    gitops.push()
    daemon.wait_for_log("sync works again")
    wait_until(lambda: len(status_json(config)["models"]) == 2)


def test_status_and_logs_while_the_daemon_writes(env):
    gitops, config, start = env
    for i in range(60):
        gitops.write(f"models.d/u{i % 5}/m{i}.yaml", spec(f"m{i}"))
        gitops.commit(f"c{i}")
    gitops.push()
    start()
    seen = set()
    deadline = time.monotonic() + 20
    while len(seen) < 60 and time.monotonic() < deadline:
        result = run_argusctl("--config", str(config), "status", "-o", "json")
        assert result.returncode == 0, result.stderr
        assert "locked" not in result.stderr
        seen = {m["model_id_suffix"] for m in json.loads(result.stdout)["models"]}
    assert len(seen) == 60
    table = run_argusctl("--config", str(config), "status", "--user", "u1")
    assert table.stdout.splitlines()[0] == "OpenAI base URL: http://127.0.0.1:8000/v1"
    assert table.stdout.splitlines()[1].split() == ["MODEL", "USER", "STATE", "REPLICAS", "GPUS", "UPDATED", "REASON"]
    assert len(table.stdout.splitlines()) == 2 + 12


def test_logs_follow_streams_new_events(env):
    gitops, config, start = env
    start_with_one_model(env)
    follower = subprocess.Popen([sys.executable, "-m", "argusctl", "--config", str(config), "logs", "a", "-f",
                                 "-o", "json"], stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(follower.stdout.readline())["event_type"] == "CREATED"
        assert json.loads(follower.stdout.readline())["event_type"] == "QUEUED"
        gitops.write("models.d/alice/a.yaml", "model_id: a\nmodel_source: /etc\n")
        gitops.commit("break it")
        gitops.push()
        event = json.loads(follower.stdout.readline())
        assert event["event_type"] == "REJECTED"
        assert "outside the allowed roots" in event["payload"]["problems"][0]["message"]
    finally:
        follower.terminate()
        follower.wait(timeout=5)


def test_status_names_the_fix_when_there_is_no_store(tmp_path):
    config = write_config(tmp_path / "c.yaml", root=tmp_path, db=tmp_path / "none.db", repo=tmp_path / "r.git")
    result = run_argusctl("--config", str(config), "status")
    assert result.returncode == 3
    assert "start the daemon (argusd)" in result.stderr
    result = run_argusctl("--config", str(config), "logs", "x")
    assert result.returncode == 3


def test_once_on_a_missing_repo_exits_3(tmp_path):
    config = write_config(tmp_path / "c.yaml", root=tmp_path, db=tmp_path / "s.db", repo=tmp_path / "nope.git")
    result = subprocess.run([sys.executable, "-m", "daemon.argusd", "--once", "--sync-only", "--config", str(config)],
                            capture_output=True, text=True)
    assert result.returncode == 3
    assert "no git repository at" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("target", ["missing", "a blob"])
def test_once_on_a_branch_that_points_at_no_commit_exits_3_and_says_so(tmp_path, target):
    """A damaged repo (refs/heads/main names an object it lacks, or a blob) is not an empty one."""
    gitops = GitOps(tmp_path / "g")
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("a")
    gitops.push()
    config = write_config(tmp_path / "c.yaml", root=tmp_path, db=tmp_path / "s.db", repo=gitops.bare)
    if target == "missing":
        sha = "1234567890" * 4
    else:
        sha = subprocess.run(["git", "-C", str(gitops.bare), "rev-parse", "main:models.d/alice/a.yaml"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (gitops.bare / "refs" / "heads" / "main").write_text(sha + "\n")
    result = subprocess.run([sys.executable, "-m", "daemon.argusd", "--once", "--sync-only", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    what = "an object this repository does not have" if target == "missing" else "an object that is not a commit"
    assert f"refs/heads/main in {gitops.bare} points at {sha}, {what}: the repository is damaged" in result.stderr
    assert f"update-ref refs/heads/main <commit>" in result.stderr and "Traceback" not in result.stderr
    # The branch that does not exist at all is still an empty repo, not an error.
    (gitops.bare / "refs" / "heads" / "main").unlink()
    subprocess.run(["git", "-C", str(gitops.bare), "pack-refs", "--all"], check=True)
    empty = subprocess.run([sys.executable, "-m", "daemon.argusd", "--once", "--sync-only", "--config", str(config)],
                           capture_output=True, text=True, timeout=60)
    assert empty.returncode == 0, empty.stderr


def test_an_idle_daemon_does_not_spin(env):
    """git reads HEAD and refs on every sync; the watcher must not wake on its own reads. Counted
    in sync passes, not CPU seconds: a busy machine does not change the count, and a watcher woken
    by its own reads makes a pass every few milliseconds (the poll is 60 s)."""
    daemon = start_with_one_model(env)
    before = sync_passes(daemon.metrics_port)
    assert before >= 1
    time.sleep(1.0)
    assert sync_passes(daemon.metrics_port) - before <= 1  # at most one wake-up left from the start


# -- one writer, and a store that is deleted, corrupt or read by someone who may not write ------

def test_a_second_argusd_on_the_same_store_is_refused(env, tmp_path):
    gitops, config, start = env
    first = start()
    second = subprocess.run([sys.executable, "-m", "daemon.argusd", "--once", "--sync-only", "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 3
    assert f"another argusd (pid {first.proc.pid}) is already writing the store" in second.stderr
    assert first.proc.poll() is None  # the first one goes on


def test_two_argusd_starting_at_once_on_a_new_store_one_runs(env, tmp_path):
    gitops, config, start = env
    procs = [subprocess.Popen([sys.executable, "-m", "daemon.argusd", "--sync-only", "--config", str(config)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 20
        while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        exited = [p for p in procs if p.poll() is not None]
        assert len(exited) == 1 and exited[0].returncode == 3
        assert "is already writing the store" in exited[0].stdout.read()
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=15)


def test_a_store_deleted_under_argusd_is_rebuilt_from_git(env, tmp_path):
    gitops, config, start = env
    daemon = start_with_one_model(env)
    db = tmp_path / "state" / "argus.db"
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / "state" / f"argus.db{suffix}").unlink(missing_ok=True)
    gitops.write("models.d/alice/b.yaml", spec("b"))
    gitops.commit("b")
    gitops.push()
    daemon.wait_for_log("was deleted or replaced while argusd ran")
    deadline = time.monotonic() + 15
    while True:
        result = run_argusctl("status", "-o", "json", env={"ARGUS_CONFIG": str(config)})
        if result.returncode == 0 and len(json.loads(result.stdout)["models"]) == 2:
            break
        assert time.monotonic() < deadline, result.stdout + result.stderr
        time.sleep(0.1)
    assert db.exists()


def test_a_corrupt_store_is_one_clear_error_in_every_reader(env, tmp_path):
    gitops, config, start = env
    start_with_one_model(env).stop()
    db = tmp_path / "state" / "argus.db"
    data = bytearray(db.read_bytes())
    data[4096:] = b"\x13" * (len(data) - 4096)  # every page but the header
    db.write_bytes(bytes(data))
    for args in (["status"], ["logs", "a"], ["diff"]):
        result = run_argusctl(*args, env={"ARGUS_CONFIG": str(config), "ARGUS_WORKDIR": str(gitops.work)})
        assert result.returncode == 3, (args, result.stdout, result.stderr)
        assert "is not usable" in result.stderr and "rebuilds the store from git" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root and unshare to make the state directory read-only for a reader")
def test_a_reader_who_may_not_write_the_state_directory_can_read_it(tmp_path):
    gitops = GitOps(tmp_path / "g")
    state = tmp_path / "state"
    config = write_config(tmp_path / "argus.yaml", root=tmp_path / "private", db=state / "argus.db", repo=gitops.bare)
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("a")
    gitops.push()
    once = subprocess.run([sys.executable, "-m", "daemon.argusd", "--once", "--sync-only", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert once.returncode == 0, once.stderr
    assert not (state / "argus.db-shm").exists()  # argusd stopped cleanly and took the WAL index with it
    # The reader cannot create anything in state/ (a read-only view of it, even for root).
    reader = subprocess.run(
        ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$1" -m argusctl --config "$2" status -o json',
         str(state), sys.executable, str(config)], capture_output=True, text=True, timeout=60)
    assert reader.returncode == 0, reader.stderr
    assert [m["model_id_suffix"] for m in json.loads(reader.stdout)["models"]] == ["a"]


def test_a_full_disk_under_the_store_loses_no_commit(tmp_path):
    """The store's disk fills while argusd runs (RLIMIT_FSIZE on the live process: every write
    past 4 KiB into any file fails, as on a full disk): a push is not recorded, argusd says why
    and how to fix it once, keeps running and never half-writes; with space back it records it."""
    import resource
    import threading

    gitops = GitOps(tmp_path / "g")
    config = write_config(tmp_path / "argus.yaml", root=tmp_path / "private", db=tmp_path / "state" / "argus.db",
                          repo=gitops.bare, poll_seconds=0.5)
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("a")
    gitops.push()
    # Its log goes to a pipe: a log file would hit the same limit.
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "daemon.argusd", "--sync-only", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "ARGUS_METRICS_LISTEN": f"127.0.0.1:{port}"})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        wait_until(lambda: any("argusd started" in line for line in lines), timeout=20)
        wait_until(lambda: [m["model_id_suffix"] for m in status_json(config)["models"]] == ["a"], timeout=20)
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        gitops.write("models.d/alice/b.yaml", spec("b"))
        gitops.commit("b")
        gitops.push()
        wait_until(lambda: any("cannot write the state store" in line for line in lines), timeout=20)
        failed = sync_passes(port, "error")
        wait_until(lambda: sync_passes(port, "error") >= failed + 3, timeout=20)  # several retries, all failing
        failing = [line for line in lines if "cannot write the state store" in line]
        assert len(failing) == 1, failing  # said once, not on every retry
        assert "free space on its disk" in failing[0] and "Traceback" not in "".join(lines)
        assert proc.poll() is None
        assert [m["model_id_suffix"] for m in status_json(config)["models"]] == ["a"]  # nothing half-written
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        wait_until(lambda: sorted(m["model_id_suffix"] for m in status_json(config)["models"]) == ["a", "b"],
                   timeout=20)
        assert any("sync works again" in line for line in lines)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_recovery_after_a_force_pushed_rewrite_keeps_the_ids_clients_use(tmp_path):
    """docs/operating.md's recovery, as an operator runs it: argusd records, the history is
    rewritten (force-push), the store is lost, argusd rebuilds it: every model has the key and
    public id it had."""
    gitops = GitOps(tmp_path / "g")
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("a", when="2026-01-01T00:00:00Z")
    gitops.push()
    db = tmp_path / "state" / "argus.db"
    config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=db, repo=gitops.bare)
    once = [sys.executable, "-m", "daemon.argusd", "--once", "--sync-only", "--config", str(config)]

    def ids():
        return {m["model_id_suffix"]: (m["model_key"], m["model_id"]) for m in status_json(config)["models"]}

    assert subprocess.run(once, capture_output=True, text=True, timeout=60).returncode == 0
    before = ids()
    assert before["a"][1] == "alice-202601010000-a"
    gitops.git("commit", "-q", "--amend", "-m", "a, reworded",
               env={"GIT_COMMITTER_DATE": "2026-01-02T00:00:00Z", "GIT_AUTHOR_DATE": "2026-01-02T00:00:00Z",
                    # the identity too: CI's fresh HOME has no global git identity
                    "GIT_COMMITTER_NAME": "Alice", "GIT_COMMITTER_EMAIL": "alice@example.com"})
    gitops.push(force=True)
    assert subprocess.run(once, capture_output=True, text=True, timeout=60).returncode == 0
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / "state" / f"argus.db{suffix}").unlink(missing_ok=True)
    rebuilt = subprocess.run(once, capture_output=True, text=True, timeout=60)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert ids() == before
    assert "keeps its public id alice-202601010000-a (the history alone gives alice-202601020000-a)" in rebuilt.stderr

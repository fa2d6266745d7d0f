"""scripts/argusd_up.sh, which the quickstart and the e2e tests start argusd with: it reuses the
argusd its pid file names only when that pid is an argusd. A killed argusd that nobody reaped
stays a zombie (a container's init may never reap it), and `kill -0` still finds it; a pid is
also reused by other processes (pid_max is 32768 here). Either way it must start a new one."""
import subprocess
import time
from pathlib import Path

from helpers import GitOps, alive, free_port, write_config

REPO = Path(__file__).resolve().parents[2]


def argusd_up(env: dict, *args: str) -> str:
    done = subprocess.run(["scripts/argusd_up.sh", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def is_argusd(pid: int) -> bool:
    try:
        return "argusd" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def test_a_zombie_or_another_process_under_the_recorded_pid_is_not_taken_for_argusd(tmp_path):
    gitops = GitOps(tmp_path / "g")
    db = tmp_path / "state" / "argus.db"
    config = write_config(tmp_path / "argus.yaml", root=tmp_path / "private", db=db, repo=gitops.bare,
                          dashboard_url=f"http://127.0.0.1:{free_port()}")   # no Ray: argusd waits for it
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ARGUS_CONFIG": str(config),
           "ARGUS_METRICS_LISTEN": f"127.0.0.1:{free_port()}"}
    pidfile = db.parent / "argusd.pid"
    db.parent.mkdir(parents=True)
    zombie = subprocess.Popen(["true"])   # ends at once and is never waited for: a zombie
    other = subprocess.Popen(["bash", "-c", "sleep 60; true", "tail-of-argusd.log"])   # a reused pid that names argusd
    started = []
    try:
        time.sleep(0.5)
        assert Path(f"/proc/{zombie.pid}").exists() and not alive(zombie.pid)   # there, and a zombie
        for stale in (zombie.pid, other.pid):
            pidfile.write_text(str(stale))
            out = argusd_up(env)
            assert "started argusd" in out, out
            started.append(int(pidfile.read_text()))
            assert started[-1] != stale and is_argusd(started[-1]), (out, started)
            assert "reusing argusd" in argusd_up(env)   # a running argusd is reused
            assert "stopped" in argusd_up(env, "stop")
            deadline = time.monotonic() + 30
            while is_argusd(started[-1]):
                assert time.monotonic() < deadline, "argusd did not stop"
                time.sleep(0.2)
        assert other.poll() is None   # stop never signals what is not argusd
    finally:
        other.kill()
        zombie.wait()
        for pid in started:
            subprocess.run(["kill", str(pid)], capture_output=True)

"""Recording a push never waits for Ray Serve: argusd (a real process) with a dashboard that
accepts connections and never answers still records each push at once; reconcile, in its
own loop, is what waits."""
import subprocess
import sys
import time

from dashboard_stub import DashboardStub
from helpers import GitOps, spec, write_config
from daemon.errors import StoreError
from daemon.store import Store


def recorded(db, sha: str) -> bool:
    try:
        store = Store.open_readonly(db)
    except StoreError:  # argusd is still creating it
        return False
    try:
        return (store.cursor() or ("", ""))[1] == sha
    finally:
        store.close()


def test_a_hanging_dashboard_does_not_delay_recording(tmp_path):
    gitops = GitOps(tmp_path / "repo")
    gitops.write("models.d/alice/a.yaml", spec("a"))
    first = gitops.commit("start")
    gitops.push()
    db = tmp_path / "state" / "argus.db"
    with DashboardStub(delay=None) as dashboard:
        config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=db, repo=gitops.bare,
                              poll_seconds=60, dashboard_url=dashboard.url)
        daemon = subprocess.Popen([sys.executable, "-m", "daemon.argusd", "--config", str(config)],
                                  stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while not (db.exists() and recorded(db, first) and dashboard.calls):
                assert time.monotonic() < deadline, "argusd did not record the first commit"
                time.sleep(0.05)
            # Reconcile now hangs in a Serve call (the client gives up only after 15 s).
            for i in range(3):
                gitops.write(f"models.d/alice/m{i}.yaml", spec(f"m{i}"))
                sha = gitops.commit(f"push {i}")
                gitops.push()
                pushed = time.monotonic()
                while not recorded(db, sha):
                    assert time.monotonic() - pushed < 5, f"push {i} waited for Serve"
                    time.sleep(0.02)
            # Stopping does not wait for the hung Serve call either.
            daemon.terminate()
            stopping = time.monotonic()
            _, err = daemon.communicate(timeout=30)
            assert daemon.returncode == 0 and time.monotonic() - stopping < 10, err[-2000:]
        finally:
            if daemon.poll() is None:
                daemon.kill()

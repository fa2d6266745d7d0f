"""One active argusd per cluster, on the real local Ray Serve: two argusd with different
stores and repos (one wants 1 front-end replica, the other 2, so Serve shows whose config
runs); only the lease holder ever applies, and when it is killed the other takes over one
lease time later; killed and restarted, a holder takes its lease back at once (its name is
its store's instance id, the same after a restart). The takeover times are printed."""
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from daemon.serving.client import ServeClient
from daemon.serving.lease import instance_of
from helpers import GitOps

pytestmark = pytest.mark.e2e
DASHBOARD = "http://127.0.0.1:8265"
LEASE_SECONDS = 10


def config_text(tmp, name: str, frontend_replicas: int, repo) -> str:
    return (f"profile: test\nserving:\n  llm:\n    accelerator_type: cpu\n  serve:\n    http_host: 127.0.0.1\n"
            f"    proxy_location: HeadOnly\n    dashboard_url: {DASHBOARD}\n"
            f"    frontend_replicas: {frontend_replicas}\n    lease_seconds: {LEASE_SECONDS}\n"
            f"storage:\n  root: {tmp / name / 'private'}\n"
            f"state:\n  db: {tmp / name / 'argus.db'}\ngitops:\n  repo: {repo}\n  branch: main\n  poll_seconds: 1\n")


def start(tmp, name: str, frontend_replicas: int, repo: bool = True) -> subprocess.Popen:
    path = tmp / name / "c.yaml"
    if repo:  # the first start; a restart keeps its repo, store and config
        gitops = GitOps(tmp / name / "g")
        gitops.write(".keep", "")
        gitops.commit("start")
        gitops.push()
        path.write_text(config_text(tmp, name, frontend_replicas, gitops.bare))
    return subprocess.Popen([sys.executable, "-m", "daemon.argusd", "--config", str(path)],
                            stderr=open(tmp / name / "argusd.log", "a"))


def lease_epoch(client: ServeClient) -> int | None:
    apps = client.get_applications().get("applications") or {}
    lease = (apps.get("argus-lease") or {}).get("deployed_app_config") or {}
    return next((d.get("user_config", {}).get("epoch") for d in lease.get("deployments") or []), None)


def is_holder(tmp, name: str, holder: str | None) -> bool:
    """Whether the lease's holder is that argusd: its store's instance (daemon.store.daemon_instance);
    host and store are in the name only for people to read."""
    db = os.path.realpath(tmp / name / "argus.db")
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT instance FROM daemon_instance").fetchone()
    except sqlite3.Error:   # argusd has not made its store yet
        return False
    return (holder is not None and row is not None and instance_of(holder) == row[0]
            and holder.endswith(f"@{socket.gethostname()}:{db}"))


def seen(client: ServeClient) -> tuple[str | None, int | None]:
    """(lease holder, front-end replicas in the deployed config)."""
    apps = client.get_applications().get("applications") or {}
    lease = (apps.get("argus-lease") or {}).get("deployed_app_config") or {}
    holder = next((d.get("user_config", {}).get("holder") for d in lease.get("deployments") or []), None)
    front = (apps.get("argus") or {}).get("deployed_app_config") or {}
    replicas = next((d.get("num_replicas") for d in front.get("deployments") or []), None)
    return holder, replicas


def test_only_the_lease_holder_applies_and_the_standby_takes_over(e2e_home, tmp_path, repo_root):
    home, env = e2e_home
    subprocess.run(["scripts/argusd_up.sh", "stop"], cwd=repo_root, env=env, check=False)  # the suite's argusd
    client = ServeClient(DASHBOARD)
    a = start(tmp_path, "a", 1)
    b = None
    try:
        deadline = time.monotonic() + 120
        while not is_holder(tmp_path, "a", seen(client)[0]):
            assert time.monotonic() < deadline and a.poll() is None, seen(client)
            time.sleep(0.5)
        b = start(tmp_path, "b", 2)
        watch_until = time.monotonic() + 3 * LEASE_SECONDS
        while time.monotonic() < watch_until:  # b stands by: a's config (1 front-end replica) stays
            holder, replicas = seen(client)
            assert is_holder(tmp_path, "a", holder) and replicas in (None, 1), (holder, replicas)
            time.sleep(0.5)
        os.kill(a.pid, signal.SIGKILL)
        killed = time.monotonic()
        while True:
            holder, replicas = seen(client)
            if is_holder(tmp_path, "b", holder) and replicas == 2:
                break
            assert time.monotonic() - killed < 6 * LEASE_SECONDS, (holder, replicas)
            time.sleep(0.5)
        takeover = time.monotonic() - killed
        print(f"takeover after the holder was killed: {takeover:.1f} s (lease {LEASE_SECONDS} s)")
        assert LEASE_SECONDS * 2 / 3 <= takeover <= 2 * LEASE_SECONDS + 5
        # b killed and started again (same store, so the same instance): its own lease, taken back at once.
        # First Serve finishes building b's front end: a restarted daemon waits for a build (a
        # PUT would restart it), and that wait is not what is measured here.
        built = time.monotonic() + 300
        while ((client.get_applications().get("applications") or {}).get("argus") or {}).get("status") != "RUNNING":
            assert time.monotonic() < built, "b's front end did not finish building"
            time.sleep(1)
        os.kill(b.pid, signal.SIGKILL)
        b.wait()
        epoch, before = lease_epoch(client), seen(client)[0]
        b = start(tmp_path, "b", 2, repo=False)
        restarted = time.monotonic()
        while lease_epoch(client) == epoch:
            assert time.monotonic() - restarted < LEASE_SECONDS, "the restarted argusd waited for its own lease"
            assert b.poll() is None, (tmp_path / "b" / "argusd.log").read_text()
            time.sleep(0.2)
        print(f"restarted holder took its lease back {time.monotonic() - restarted:.1f} s after its start")
        holder = seen(client)[0]
        assert is_holder(tmp_path, "b", holder) and holder != before, (holder, before)   # a new process
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        # Leave the cluster as the next test expects it: no lease held by a daemon that is gone.
        apps = client.get_applications().get("applications") or {}
        client.put_config({"proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": 8000},
                           "applications": [app["deployed_app_config"] for name, app in apps.items()
                                            if name != "argus-lease" and app.get("deployed_app_config")]})

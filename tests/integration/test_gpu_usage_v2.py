"""Admission's free-GPU view on a real Ray cluster run by autoscaler v2 (what KubeRay runs with
its autoscaler on): a one-node cluster started here with RAY_enable_autoscaler_v2=1 and 4
logical H20 GPUs, a group reserving 2 of them. Under v2 the autoscaler publishes nothing to
/api/cluster_status (the source argus read before, which then showed every node wholly free);
argus reads the dashboard's node summary, keyed by node id, and sees 2 free. Like
test_gpu_placement.py it needs no CUDA and not the flock (its own ports); run it alone."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from daemon.serving.client import ServeClient
from daemon.serving.placement import AdmissionMode, NodeFree

REPO = Path(__file__).resolve().parents[2]
SERVING = REPO / ".venv-serve" / "bin"
pytestmark = pytest.mark.skipif(not (SERVING / "ray").exists(),
                                reason="needs .venv-serve (scripts/setup_serving.sh; CI has it)")
GCS_PORT, DASHBOARD_PORT = 6421, 8276
DASHBOARD = f"http://127.0.0.1:{DASHBOARD_PORT}"


def _wait(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:
            pass
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_free_gpus_by_node_id_under_autoscaler_v2():
    tmp = Path(tempfile.mkdtemp(prefix="argus-v2-", dir="/tmp"))
    env = {"PATH": f"{SERVING}:/usr/bin:/bin", "HOME": str(tmp), "TMPDIR": str(tmp), "PYTHONPATH": str(REPO),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_enable_autoscaler_v2": "1"}
    log = open(tmp / "ray.log", "w")
    head = subprocess.Popen([str(SERVING / "ray"), "start", "--head", "--block", "--disable-usage-stats",
                             "--node-ip-address", "127.0.0.1", "--port", str(GCS_PORT), "--num-cpus", "2",
                             "--num-gpus", "4", "--resources", '{"accelerator_type:H20": 1}',
                             "--dashboard-host", "127.0.0.1", "--dashboard-port", str(DASHBOARD_PORT),
                             "--ray-client-server-port", "20122", "--dashboard-agent-listen-port", "52481"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = ServeClient(DASHBOARD, timeout=10)
        _wait(lambda: [n for n in client.nodes() if n["state"] == "ALIVE"], "the head node")
        (node_id,) = [n["node_id"] for n in client.nodes() if n["state"] == "ALIVE"]
        # What argus read before: nothing under v2.
        assert client._request("GET", "/api/cluster_status")["data"]["clusterStatus"] is None
        driver = textwrap.dedent(f"""
            import json, ray
            from ray.util.placement_group import placement_group
            ray.init(address="127.0.0.1:{GCS_PORT}", logging_level="ERROR", log_to_driver=False)
            pg = placement_group([{{"GPU": 1}}, {{"GPU": 1}}], strategy="STRICT_PACK", name="training",
                                 lifetime="detached")
            print(json.dumps({{"created": pg.wait(timeout_seconds=60)}}))
        """)
        done = subprocess.run([str(SERVING / "python"), "-c", driver], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0 and json.loads(done.stdout.strip().splitlines()[-1])["created"], done.stderr[-2000:]

        def seen():
            return client.capacity("H20", AdmissionMode.FIT)
        _wait(lambda: seen().nodes == (NodeFree(node_id, 2.0, 2.0, 4.0),), "the usage view to show the group")
        assert seen().usage_problem is None
        from argusctl.ops.doctor import OK, usage_view_check
        verdict = usage_view_check(seen())
        assert (verdict.status, verdict.detail) == (OK, "Ray reports every node's usage: 2 of 4 H20 GPUs free on 1 node(s)")
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(head.pid, sig)
                head.wait(timeout=20)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)

"""argus's free-GPU view against the per-node usage report exactly as Ray 2.60's own code
builds it for each kind of cluster (run in the serving venv, no cluster): the v1 monitor's
Monitor.update_load_metrics into LoadMetrics and its summary, as a hand-started cluster
(read-only provider, `use_node_id_as_ip`: keys are node ids) and as a cluster-launcher or
KubeRay-v1 cluster (keys are node IPs) write it to the GCS; the v2 autoscaler's
GetClusterStatusReply as KubeRay's v2 autoscaler leaves it; and in each case the dashboard's
own NodeHead.get_nodes_logical_resources, the handler of GET /nodes?view=summary that argusd
reads, turns it into what the dashboard sends (to_google_style). The GCS inputs are Ray's own
protobuf messages: node a has 4 H20 GPUs, 2 reserved by a placement group that runs nothing
yet and 1 used by a task outside it; node b has 8 H20 GPUs, all free; node c has 4 A100s, 3
used. What this proves: argus reads the same free GPUs (1, 8, A100s not counted) keyed by the
node ids of the state API on all three. What it does not: the autoscalers' processes
themselves (real clusters run two of the cases end to end: the hand-started one in
test_gpu_placement.py, autoscaler v2 in test_gpu_usage_v2.py; v1 with a real provider needs
nodes with their own IPs)."""
import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from daemon.serving.placement import AdmissionMode, NodeFree, capacity_from_ray

REPO = Path(__file__).resolve().parents[2]
SERVING_PYTHON = REPO / ".venv-serve" / "bin" / "python"
pytestmark = pytest.mark.skipif(not SERVING_PYTHON.exists(),
                                reason="needs .venv-serve (scripts/setup_serving.sh; CI has it)")

NODES = {  # node id (28 bytes, hex) -> IP, total, available
    "a": ("10.0.0.1", {"CPU": 8.0, "GPU": 4.0, "accelerator_type:H20": 1.0}, {"CPU": 7.0, "GPU": 1.0}),
    "b": ("10.0.0.2", {"CPU": 8.0, "GPU": 8.0, "accelerator_type:H20": 1.0}, {"CPU": 8.0, "GPU": 8.0}),
    "c": ("10.0.0.3", {"CPU": 8.0, "GPU": 4.0, "accelerator_type:A100": 1.0}, {"CPU": 8.0, "GPU": 1.0}),
}
PG = "1f" * 18   # a placement group on node a reserving 2 GPUs, nothing running in it yet

RAY_SIDE = """
import asyncio, json, sys, types
from dataclasses import asdict
from unittest import mock
import ray.autoscaler._private.monitor as monitor_module
import ray.autoscaler.v2.utils as v2_utils
from ray.autoscaler._private.load_metrics import LoadMetrics
from ray.autoscaler._private.monitor import BASE_READONLY_CONFIG, Monitor
from ray.core.generated import autoscaler_pb2, gcs_service_pb2
from ray.dashboard.modules.node.node_head import NodeHead
from ray.dashboard.utils import to_google_style
from ray._private import ray_constants

NODES, PG = json.loads(sys.argv[1]), sys.argv[2]

def node_state(key):
    ip, total, available = NODES[key]
    total, available = dict(total), dict(available)
    if key == "a":   # Ray's own resources for a 2-bundle group of 1 GPU each, all reserved and unused
        total.update({f"GPU_group_{PG}": 2.0, f"GPU_group_0_{PG}": 1.0, f"GPU_group_1_{PG}": 1.0,
                      f"bundle_group_{PG}": 2000.0, f"bundle_group_0_{PG}": 1000.0, f"bundle_group_1_{PG}": 1000.0})
        available.update({f"GPU_group_{PG}": 2.0, f"GPU_group_0_{PG}": 1.0, f"GPU_group_1_{PG}": 1.0,
                          f"bundle_group_{PG}": 2000.0, f"bundle_group_0_{PG}": 1000.0, f"bundle_group_1_{PG}": 1000.0})
    return autoscaler_pb2.NodeState(node_id=bytes.fromhex(key * 56), node_ip_address=ip, total_resources=total,
                                    available_resources=available, status=autoscaler_pb2.NodeStatus.RUNNING)

STATE = autoscaler_pb2.ClusterResourceState(node_states=[node_state(k) for k in sorted(NODES)])

def v1_report(provider):
    # Monitor.update_load_metrics as the v1 monitor runs it every few seconds.
    fake = types.SimpleNamespace(
        gcs_client=types.SimpleNamespace(get_all_resource_usage=lambda timeout: gcs_service_pb2.GetAllResourceUsageReply()),
        readonly_config=dict(BASE_READONLY_CONFIG, available_node_types={}) if provider.get("type") == "readonly" else None,
        autoscaler=types.SimpleNamespace(config={"provider": provider},
                                         provider=types.SimpleNamespace(_set_nodes=lambda nodes: None)),
        load_metrics=LoadMetrics())
    with mock.patch.object(monitor_module, "get_cluster_resource_state", lambda gcs_client: STATE):
        Monitor.update_load_metrics(fake)
    return json.dumps({"load_metrics_report": asdict(fake.load_metrics.summary())})

class KV:
    def __init__(self, status):
        self.status = status
    async def async_internal_kv_get(self, key, namespace=None, timeout=None):
        return self.status.encode() if key == ray_constants.DEBUG_AUTOSCALING_STATUS.encode() else None
    async def async_get_cluster_status(self):
        return autoscaler_pb2.GetClusterStatusReply(cluster_resource_state=STATE)

def dashboard(v2, status=None):
    head = types.SimpleNamespace(gcs_client=KV(status))
    with mock.patch.object(v2_utils, "is_autoscaler_v2", lambda *a, **k: v2):
        resources = asyncio.run(NodeHead.get_nodes_logical_resources(head))
    return to_google_style({"summary": [], "node_logical_resources": resources})

print(json.dumps({
    "hand-started (v1, read-only provider)": dashboard(False, v1_report(BASE_READONLY_CONFIG["provider"])),
    "cluster launcher / KubeRay v1": dashboard(False, v1_report({"type": "aws"})),
    "KubeRay autoscaler v2": dashboard(True),
}))
"""


def rays_reports() -> dict:
    result = subprocess.run([str(SERVING_PYTHON), "-c", textwrap.dedent(RAY_SIDE), json.dumps(NODES), PG], cwd=REPO,
                            capture_output=True, text=True, timeout=300,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_free_gpus_are_read_by_node_id_from_rays_own_report_on_every_kind_of_cluster():
    reports = rays_reports()
    rows = {"data": {"result": {"result": [
        {"node_id": k * 56, "node_ip": ip, "state": "ALIVE", "resources_total": total}
        for k, (ip, total, _) in NODES.items()]}}}
    keys = {case: sorted(report["nodeLogicalResources"]) for case, report in reports.items()}
    # The defect: only the hand-started cluster and v2 key by node id; v1 elsewhere keys by IP.
    assert keys["hand-started (v1, read-only provider)"] == keys["KubeRay autoscaler v2"] == [k * 56 for k in "abc"]
    assert keys["cluster launcher / KubeRay v1"] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    for case, report in reports.items():
        capacity = capacity_from_ray(rows, {"data": report}, "H20", AdmissionMode.FIT)
        assert capacity.nodes == (NodeFree("a" * 56, 1.0, 7.0, 4.0),   # 2 reserved + 1 used of 4
                                  NodeFree("b" * 56, 8.0, 8.0, 8.0),
                                  NodeFree("c" * 56, 0.0, 8.0, 0.0)), (case, report)
        assert capacity.usage_problem is None, case
    # The group's reservation shows in Ray's text only through its suffix: argus adds it back.
    assert "1.0/4.0 GPU (0.0 used of 2.0 reserved in placement groups)" in \
        reports["KubeRay autoscaler v2"]["nodeLogicalResources"]["a" * 56]

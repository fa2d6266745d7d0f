"""capacity_from_ray: the dashboard's node list and per-node usage (GET /nodes?view=summary,
`node_logical_resources`, as Ray formats it) into per-node free GPUs, keyed by node id on every
kind of cluster. The texts below are what Ray's own formatting produces; the contract test
tests/integration/test_capacity_contract.py builds them with Ray's own code for each case."""
import pytest

from daemon.serving.placement import AdmissionMode, NodeFree, capacity_from_ray, held_and_total

A, B, C, D = ("a" * 56, "b" * 56, "c" * 56, "d" * 56)


def nodes(*rows):
    return {"data": {"result": {"result": list(rows)}}}


def row(node_id, ip, gpus, kind="H20", state="ALIVE", cpus=8.0):
    total = {"GPU": gpus, "CPU": cpus, f"accelerator_type:{kind}": 1.0} if gpus else {"CPU": cpus}
    return {"node_id": node_id, "node_ip": ip, "state": state, "resources_total": total}


def summary(by_key):
    # As the dashboard sends it: {"data": {"summary": [...], "nodeLogicalResources": {key: text}}}.
    return {"data": {"summary": [], "nodeLogicalResources": by_key}}


ROWS = [row(A, "10.0.0.1", 4.0), row(B, "10.0.0.2", 4.0, kind="A100"), row(C, "10.0.0.3", 8.0, state="DEAD"),
        row(D, "10.0.0.4", 2.0, cpus=4.0)]
# Node a: a training job's group reserves 2 GPUs and uses none yet; 1 more GPU is used outside it.
A_TEXT = ("0.5/8.0 CPU\n1.0/4.0 GPU (0.0 used of 2.0 reserved in placement groups)\n0.0/1.0 accelerator_type:H20\n"
          "0B/10.00GiB memory\n0B/4.66GiB object_store_memory")
B_TEXT = "0.0/8.0 CPU\n4.0/4.0 GPU\n0.0/1.0 accelerator_type:A100"
D_TEXT = "1.0/4.0 CPU\n0.0/2.0 GPU"


@pytest.mark.parametrize("keys", [
    pytest.param({A: A_TEXT, B: B_TEXT, D: D_TEXT}, id="by node id (autoscaler v2; v1 read-only provider)"),
    pytest.param({"10.0.0.1": A_TEXT, "10.0.0.2": B_TEXT, "10.0.0.4": D_TEXT}, id="by node IP (autoscaler v1)"),
])
def test_free_gpus_of_the_type_per_alive_node(keys):
    capacity = capacity_from_ray(nodes(*ROWS), summary(keys), "H20", AdmissionMode.FIT)
    assert capacity.nodes == (NodeFree(A, 1.0, 7.5, 4.0),   # reserved by a group counts as held: 4 - 3
                              NodeFree(B, 0.0, 8.0, 0.0),   # another type: its GPUs do not count
                              NodeFree(D, 2.0, 3.0, 2.0))   # c is dead
    assert capacity.usage_problem is None and capacity.unreported_gpu_nodes == ()
    assert capacity.mode == AdmissionMode.FIT and capacity.accelerator_type == "H20"


def test_no_usage_view_means_no_node_is_free_and_says_why():
    for missing in (None, summary({}), summary(None)):
        capacity = capacity_from_ray(nodes(*ROWS), missing, "H20", AdmissionMode.FIT)
        assert [(n.gpus, n.reported) for n in capacity.nodes] == [(0.0, False)] * 3
        assert capacity.unreported_gpu_nodes == (A, D)
        assert "reports no per-node usage" in capacity.usage_problem


def test_nodes_sharing_an_ip_under_autoscaler_v1_are_unknown():
    # v1 keys its report by IP: two raylets on one host share one merged entry; neither is known.
    rows = [row(A, "10.0.0.1", 4.0), row(D, "10.0.0.1", 2.0), row(B, "10.0.0.2", 4.0)]
    capacity = capacity_from_ray(nodes(*rows), summary({"10.0.0.1": D_TEXT, "10.0.0.2": "0.0/8.0 CPU\n1.0/4.0 GPU"}),
                                 "H20", AdmissionMode.FIT)
    assert [(n.node_id, n.gpus, n.reported) for n in capacity.nodes] == [(A, 0.0, False), (B, 3.0, True),
                                                                         (D, 0.0, False)]
    assert "share 10.0.0.1; run one Ray node per IP" in capacity.usage_problem


def test_a_node_not_reported_yet_is_not_free():
    capacity = capacity_from_ray(nodes(*ROWS), summary({A: A_TEXT, B: B_TEXT}), "H20", AdmissionMode.FIT)
    assert capacity.nodes[-1] == NodeFree(D, 0.0, 0.0, 2.0, reported=False)
    assert capacity.usage_problem == "1 alive node(s) are not in Ray's usage report yet"


@pytest.mark.parametrize("text, expected", [
    ("2.0/4.0 GPU", {"GPU": (2.0, 4.0)}),
    ("0.0/8.0 GPU (0.0 used of 8.0 reserved in placement groups)", {"GPU": (8.0, 8.0)}),
    ("3.0/8.0 GPU (3.0 used of 8.0 reserved in placement groups)", {"GPU": (8.0, 8.0)}),
    ("1e-05/2.0 CPU", {"CPU": (1e-05, 2.0)}),
    ("0B/1.00GiB memory\n0.0/1.0 node:10.0.0.1\nnonsense\n", {}),
])
def test_held_and_total_reads_rays_usage_lines(text, expected):
    assert held_and_total(text) == expected


def test_nothing_reported_is_an_empty_cluster():
    assert capacity_from_ray(None, None, "H20", AdmissionMode.AUTOSCALE).nodes == ()

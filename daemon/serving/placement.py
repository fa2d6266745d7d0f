"""GPU admission by placement: does every replica of a model fit on ONE node now?

Pure: no I/O. A replica of a model with gpus_per_replica=N is a STRICT_PACK placement group
of N one-GPU bundles of the configured accelerator type plus the replica's own CPU (see
llm_config.placement_bundles), so it needs N free GPUs of that type and one free CPU on a
single node. "Free" is what Ray has available now, not its total: training jobs and other
teams hold GPUs that argus cannot see.
"""
from __future__ import annotations

from dataclasses import dataclass

from daemon.core.states import StrEnum

REPLICA_CPUS = 1.0   # the LLMServer replica's own CPU, merged by Ray into bundle 0


class AdmissionMode(StrEnum):
    FIT = "fit"                # admit only what the cluster can place now; the rest stays QUEUED
    AUTOSCALE = "autoscale"    # admit everything: Ray's autoscaler turns pending demand into nodes


@dataclass(frozen=True)
class NodeFree:
    """One alive node as admission sees it (GPUs counted only if of the accelerator type)."""

    node_id: str
    gpus: float          # free (available) GPUs of the accelerator type
    cpus: float          # free CPUs
    total_gpus: float    # all GPUs of the accelerator type on the node


@dataclass(frozen=True)
class Capacity:
    """The live cluster for admission; None instead of a Capacity means CPU serving."""

    nodes: tuple[NodeFree, ...]
    accelerator_type: str
    mode: AdmissionMode = AdmissionMode.FIT


Free = dict[str, tuple[float, float]]   # node id -> (free GPUs, free CPUs)


def free_of(capacity: Capacity) -> Free:
    return {n.node_id: (n.gpus, n.cpus) for n in capacity.nodes}


def place(free: Free, replicas: int, gpus_per_replica: int) -> Free | None:
    """Where `replicas` replicas go, each whole on one node (best fit: the node with the
    fewest free GPUs that still holds it, so large holes stay for large replicas). The
    free map after placing them, or None when one does not fit."""
    left = dict(free)
    for _ in range(replicas):
        fits = [(gpus, node) for node, (gpus, cpus) in left.items()
                if gpus >= gpus_per_replica and cpus >= REPLICA_CPUS]
        if not fits:
            return None
        _, node = min(fits)
        gpus, cpus = left[node]
        left[node] = (gpus - gpus_per_replica, cpus - REPLICA_CPUS)
    return left


def shortfall(capacity: Capacity, free: Free, replicas: int, gpus_per_replica: int) -> dict[str, object]:
    """Why a model does not fit: what it needs and the best the cluster offers now (the
    payload of its PENDING_RESOURCES event; stable while the cluster does not change)."""
    kind = capacity.accelerator_type
    need = (f"{gpus_per_replica} {kind} GPU{'s' if gpus_per_replica != 1 else ''} and "
            f"{REPLICA_CPUS:g} CPU on one node" + (f" for each of {replicas} replicas" if replicas > 1 else ""))
    largest = max((n.total_gpus for n in capacity.nodes), default=0.0)
    freest = max((gpus for gpus, _ in free.values()), default=0.0)
    if largest < gpus_per_replica:
        offer = (f"no alive node has {gpus_per_replica} {kind} GPUs at all (the largest has {largest:g})"
                 if largest else f"no alive node has {kind} GPUs")
    else:
        offer = f"the freest node has {freest:g} free now"
    return {"message": f"needs {need}; {offer}", "gpus_per_replica": gpus_per_replica, "replicas": replicas,
            "freest_node_gpus": freest, "largest_node_gpus": largest}


def capacity_from_ray(nodes: dict | None, cluster_status: dict | None, accelerator_type: str,
                      mode: AdmissionMode) -> Capacity:
    """Parse the dashboard's GET /api/v0/nodes (alive nodes, their accelerator type) and GET
    /api/cluster_status (per node [used, total], as the autoscaler reports it every few
    seconds) into a Capacity. A node without a usage report counts as wholly free."""
    usage = (((cluster_status or {}).get("data") or {}).get("clusterStatus") or {}).get("loadMetricsReport") or {}
    by_node = usage.get("usageByNode") or {}
    rows = ((((nodes or {}).get("data") or {}).get("result") or {}).get("result")) or []
    out = []
    for row in rows:
        if row.get("state") != "ALIVE":
            continue
        total = row.get("resources_total") or {}
        typed = f"accelerator_type:{accelerator_type}" in total
        gpus_total = float(total.get("GPU", 0.0)) if typed else 0.0
        used = by_node.get(row.get("node_id")) or {}
        gpu_used = float((used.get("GPU") or [0.0])[0]) if typed else 0.0
        cpu_total = float(total.get("CPU", 0.0))
        cpu_used = float((used.get("CPU") or [0.0])[0])
        out.append(NodeFree(row["node_id"], max(gpus_total - gpu_used, 0.0), max(cpu_total - cpu_used, 0.0),
                            gpus_total))
    return Capacity(tuple(sorted(out, key=lambda n: n.node_id)), accelerator_type, mode)


STALLED_MARK = "to be scheduled"   # in Serve's deployment message once a replica waits > 30 s for resources


def placement_stalled(deployment_message: str) -> bool:
    """Serve says a replica of this deployment could not be placed (Ray 2.60
    deployment_state: "... replicas that have taken more than 30s to be scheduled ...")."""
    return STALLED_MARK in (deployment_message or "")

"""GPU admission by placement: does every replica of a model fit on ONE node now?

Pure: no I/O. A replica of a model with gpus_per_replica=N is a STRICT_PACK placement group
of N one-GPU bundles of the configured accelerator type plus the replica's own CPU (see
llm_config.placement_bundles), so it needs N free GPUs of that type and one free CPU on a
single node. "Free" is what Ray has available now, not its total: training jobs and other
teams hold GPUs that argus cannot see.

Ray's per-node usage reaches argus only through the dashboard UI's node summary, not a
documented API: its key rules and text format are read in one place here (usage_by_node_id,
held_and_total), against what Ray 2.60's own code produces for each kind of cluster in
tests/integration/test_capacity_contract.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from daemon.core.states import StrEnum

REPLICA_CPUS = 1.0   # the LLMServer replica's own CPU, merged by Ray into bundle 0


class AdmissionMode(StrEnum):
    FIT = "fit"                # admit only what the cluster can place now; the rest stays QUEUED
    AUTOSCALE = "autoscale"    # admit everything: Ray's autoscaler turns pending demand into nodes


@dataclass(frozen=True)
class NodeFree:
    """One alive node as admission sees it (GPUs counted only if of the accelerator type).
    A node Ray's usage view does not cover (`reported` False) is never taken as free: its
    gpus and cpus are 0 until Ray reports it."""

    node_id: str
    gpus: float          # free (available) GPUs of the accelerator type
    cpus: float          # free CPUs
    total_gpus: float    # all GPUs of the accelerator type on the node
    reported: bool = True


@dataclass(frozen=True)
class Capacity:
    """The live cluster for admission; None instead of a Capacity means CPU serving.
    `usage_problem`: why some node's usage is unknown (said in the reasons of models that
    wait, and by doctor), None when Ray reports every node."""

    nodes: tuple[NodeFree, ...]
    accelerator_type: str
    mode: AdmissionMode = AdmissionMode.FIT
    usage_problem: str | None = None

    @property
    def unreported_gpu_nodes(self) -> tuple[str, ...]:
        return tuple(n.node_id for n in self.nodes if not n.reported and n.total_gpus)


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
    unreported = capacity.unreported_gpu_nodes
    if unreported and capacity.usage_problem:
        offer += (f"; Ray reports no usage for {len(unreported)} node(s) with {kind} GPUs, so argus counts "
                  f"none of them as free ({capacity.usage_problem})")
    return {"message": f"needs {need}; {offer}", "gpus_per_replica": gpus_per_replica, "replicas": replicas,
            "freest_node_gpus": freest, "largest_node_gpus": largest}


# One line of Ray's per-node usage as the dashboard formats it (autoscaler util.parse_usage,
# verbose): "<used>/<total> <resource>", used net of what placement groups reserve but do not
# use, which the suffix gives back: " (<pg used> used of <pg total> reserved in placement groups)".
_USAGE_LINE = re.compile(r"(?P<used>[^/\s]+)/(?P<total>\S+) (?P<name>\S+)"
                         r"(?: \((?P<pg_used>\S+) used of (?P<pg_total>\S+) reserved in placement groups\))?")


def held_and_total(breakdown: str) -> dict[str, tuple[float, float]]:
    """resource -> (held, total) from one node's usage text. Held is what is not available:
    Ray's used plus what placement groups reserve beyond their own use (a reserved GPU is not
    free, whether or not its group runs anything yet)."""
    out: dict[str, tuple[float, float]] = {}
    for line in (breakdown or "").splitlines():
        match = _USAGE_LINE.fullmatch(line.strip())
        if not match or match["name"] not in ("GPU", "CPU"):
            continue
        try:
            used, total = float(match["used"]), float(match["total"])
            if match["pg_total"] is not None:
                used += float(match["pg_total"]) - float(match["pg_used"])
        except ValueError:
            continue
        out[match["name"]] = (used, total)
    return out


def usage_by_node_id(rows: list[dict], breakdown: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """The dashboard's per-node usage keyed by node id. Ray keys it by node id under autoscaler
    v2 and under v1's read-only provider (a hand-started cluster), but by node IP under any
    other v1 provider (cluster launcher, KubeRay with autoscaler v1): an IP key maps to the one
    alive node with that IP; nodes that share an IP have one merged report (Ray's own map is
    keyed by IP), so none of them is known. Also: why some alive node has no report, or None."""
    alive = [r for r in rows if r.get("state") == "ALIVE"]
    ids = {r.get("node_id") for r in alive}
    by_ip: dict[str, list[str]] = {}
    for r in alive:
        by_ip.setdefault(str(r.get("node_ip")), []).append(r.get("node_id"))
    out: dict[str, str] = {}
    shared: set[str] = set()
    for key, text in breakdown.items():
        if key in ids:
            out[key] = text
        elif len(by_ip.get(key, ())) == 1:
            out[by_ip[key][0]] = text
        elif len(by_ip.get(key, ())) > 1:
            shared.add(key)
    missing = [r.get("node_id") for r in alive if r.get("node_id") not in out]
    if not missing:
        return out, None
    if not breakdown:
        return out, ("the Ray dashboard's /nodes?view=summary reports no per-node usage: the autoscaler "
                     "reports an error or is not running, or AUTOSCALER_REPORT_PER_NODE_STATUS=0")
    if shared:
        return out, (f"Ray's autoscaler keys usage by node IP and {len(missing)} node(s) share "
                     f"{', '.join(sorted(shared))}; run one Ray node per IP")
    return out, f"{len(missing)} alive node(s) are not in Ray's usage report yet"


def capacity_from_ray(nodes: dict | None, summary: dict | None, accelerator_type: str,
                      mode: AdmissionMode) -> Capacity:
    """Parse the dashboard's GET /api/v0/nodes (alive nodes, their IP and accelerator type)
    and GET /nodes?view=summary (`node_logical_resources`: each node's used/total as the
    autoscaler reports it every few seconds) into a Capacity. A node without a usage report
    is never counted as free (the Capacity says why it has none). `summary` None: the
    dashboard gave no usage view at all."""
    rows = ((((nodes or {}).get("data") or {}).get("result") or {}).get("result")) or []
    breakdown = (((summary or {}).get("data") or {}).get("nodeLogicalResources")) or {}
    reports, problem = usage_by_node_id(rows, breakdown if isinstance(breakdown, dict) else {})
    out = []
    for row in rows:
        if row.get("state") != "ALIVE":
            continue
        total = row.get("resources_total") or {}
        typed = f"accelerator_type:{accelerator_type}" in total
        gpus_total = float(total.get("GPU", 0.0)) if typed else 0.0
        report = reports.get(row["node_id"])
        if report is None:
            out.append(NodeFree(row["node_id"], 0.0, 0.0, gpus_total, reported=False))
            continue
        usage = held_and_total(report)
        gpu_held = usage.get("GPU", (0.0, 0.0))[0] if typed else 0.0
        cpu_held = usage.get("CPU", (0.0, 0.0))[0]
        out.append(NodeFree(row["node_id"], max(gpus_total - gpu_held, 0.0),
                            max(float(total.get("CPU", 0.0)) - cpu_held, 0.0), gpus_total))
    return Capacity(tuple(sorted(out, key=lambda n: n.node_id)), accelerator_type, mode, problem)


STALLED_MARK = "to be scheduled"   # in Serve's deployment message once a replica waits > 30 s for resources


def placement_stalled(deployment_message: str) -> bool:
    """Serve says a replica of this deployment could not be placed (Ray 2.60
    deployment_state: "... replicas that have taken more than 30s to be scheduled ...")."""
    return STALLED_MARK in (deployment_message or "")

"""Reap vLLM engine processes that outlived their replica, on every node.

A replica that is killed rather than stopped (kill -9, an OOM kill, a node agent restart)
leaves its vLLM engine process (`VLLM::EngineCore`, ~2.7 GB for a 7B model on CPU, GPU memory
on GPUs) behind, adopted by init; these pile up until the OOM killer takes something that
matters. argusd runs this as a short Ray job through the dashboard (no Ray import here)
whenever a model's replica dies (DEGRADED) or a model fails: one task pinned to each alive
node kills the engine processes there whose parent is init. An engine whose replica lives
has that replica as its parent and is never touched.
"""
from __future__ import annotations

import logging

from daemon.errors import ClusterError
from daemon.serving.client import ServeClient

log = logging.getLogger("argus.reaper")

ENGINE_PREFIX = "VLLM::"   # vLLM names its engine processes so (setproctitle)

REAP_JOB = """
import json, os, signal, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(logging_level="ERROR")

@ray.remote(num_cpus=0)
def reap(prefix):
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                name = f.read().split(b"\\0")[0].decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == 1 and name.startswith(prefix):
            try:
                os.kill(int(entry), signal.SIGKILL)
                killed.append([int(entry), name])
            except OSError:
                pass
    return {"node_id": ray.get_runtime_context().get_node_id(), "killed": killed}

nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
refs = [reap.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote(%r) for n in nodes]
print("ARGUS-REAPED " + json.dumps(ray.get(refs, timeout=120)))
"""


def reap_orphaned_engines(client: ServeClient) -> str | None:
    """Submit the reaper job (fire and forget: its result is in the job's logs); its id, or
    None when Ray would not take it (logged: reaping is best effort)."""
    try:
        job = client.submit_python_job(REAP_JOB % ENGINE_PREFIX)
    except ClusterError as exc:
        log.warning("could not start the engine reaper job: %s", exc)
        return None
    log.info("reaping orphaned vLLM engine processes on every node (Ray job %s)", job)
    return job

"""Reap vLLM engine processes that outlived their replica, on every node.

A replica that is killed rather than stopped (kill -9, an OOM kill, a node agent restart)
leaves its vLLM engine process (`VLLM::EngineCore`, ~2.7 GB for a 7B model on CPU, GPU memory
on GPUs) behind, adopted by init; these pile up until the OOM killer takes something that
matters. argusd runs this as a short Ray job through the dashboard (no Ray import here)
whenever a model's replica dies (DEGRADED) or a model fails: one task pinned to each alive
node kills the engine processes there whose parent is init and that are argus's. An engine
whose replica lives has that replica as its parent and is never touched.

argus's engines carry a mark: every model's runtime_env sets ENGINE_MARK (its model key;
llm_config.build_llm_config), which the replica's vLLM engine process inherits, so it is in
/proc/<pid>/environ. On a shared node other teams run vLLM too; an orphaned engine without
the mark (or whose environ this job may not read: another Unix user's) is theirs and is left
alone.
"""
from __future__ import annotations

import logging

from daemon.errors import ClusterError
from daemon.serving.client import ServeClient
from daemon.core.replica_contract import ENGINE_MARK

log = logging.getLogger("argus.reaper")

ENGINE_PREFIX = "VLLM::"   # vLLM names its engine processes so (setproctitle)

REAP_JOB = """
import json, os, signal, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(logging_level="ERROR")

def mark_of(pid, mark):
    # The value of `mark` in the process's environment, or None (unset, or not ours to read).
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            entries = f.read().split(b"\\0")
    except OSError:
        return None
    key = mark.encode() + b"="
    return next((e[len(key):].decode(errors="replace") for e in entries if e.startswith(key)), None)

@ray.remote(num_cpus=0)
def reap(prefix, mark):
    killed, spared = [], []
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
        if ppid != 1 or not name.startswith(prefix):
            continue
        model_key = mark_of(entry, mark)
        if model_key is None:
            spared.append([int(entry), name])   # another team's engine: not argus's to kill
            continue
        try:
            os.kill(int(entry), signal.SIGKILL)
            killed.append([int(entry), name, model_key])
        except OSError:
            pass
    return {"node_id": ray.get_runtime_context().get_node_id(), "killed": killed, "spared": spared}

nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
refs = [reap.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote(%r, %r) for n in nodes]
print("ARGUS-REAPED " + json.dumps(ray.get(refs, timeout=120)))
"""


def reap_orphaned_engines(client: ServeClient) -> str | None:
    """Submit the reaper job (fire and forget: its result is in the job's logs); its id, or
    None when Ray would not take it (logged: reaping is best effort)."""
    try:
        job = client.submit_python_job(REAP_JOB % (ENGINE_PREFIX, ENGINE_MARK))
    except ClusterError as exc:
        log.warning("could not start the engine reaper job: %s", exc)
        return None
    log.info("reaping orphaned vLLM engine processes on every node (Ray job %s)", job)
    return job

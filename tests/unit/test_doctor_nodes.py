"""doctor's per-node verdicts from the node probe's findings, as tables: imports and versions,
/dev/shm, and on a GPU cluster the CUDA check."""
import pytest

from argusctl.ops.doctor import FAIL, MIB, OK, WARN, cuda_check, node_checks, shm_check

GIB = 1024 * MIB
H20 = {"torch": "2.13.0+cu130", "cuda_build": "13.0", "devices": ["NVIDIA H20"] * 8, "matmul_ok": 8,
       "gpu_ids": [str(i) for i in range(8)], "visible": "0,1,2,3,4,5,6,7"}
GOOD = {"node_id": "a" * 56, "python": "3.11.7", "ray": "2.60.0", "vllm": "0.29.0", "argus": "ok",
        "ray_gpus": 8.0, "gpus_free": 8, "shm_bytes": 16 * GIB, "cuda": H20}
# Two of eight GPUs free: Ray gave the check GPUs 5 and 7, the other six serve models.
TWO_FREE = {**H20, "devices": ["NVIDIA H20"] * 2, "matmul_ok": 2, "gpu_ids": ["5", "7"], "visible": "5,7"}


@pytest.mark.parametrize("finding,status,says", [
    (GOOD, OK, "imports daemon.replicas"),
    ({**GOOD, "ray": "2.55.0"}, FAIL, "argus expects ray 2.60.0, vllm 0.29.0"),
    ({**GOOD, "vllm": "0.32.0"}, FAIL, "argus expects ray 2.60.0, vllm 0.29.0"),
    ({**GOOD, "error": "ModuleNotFoundError: No module named 'daemon'"}, FAIL, "No module named 'daemon'"),
])
def test_each_node_is_judged(finding, status, says):
    imports, shm, cuda = node_checks([finding], on_cpu=False)
    assert (imports.status, imports.name) == (status, "node aaaaaaaaaaaa")
    assert says in imports.detail
    assert (imports.fix == "") == (status == OK)
    assert (shm.name, shm.status) == ("node aaaaaaaaaaaa /dev/shm", OK)
    assert (cuda.name, cuda.status) == ("node aaaaaaaaaaaa CUDA", OK)


def test_a_cpu_cluster_is_not_judged_on_cuda():
    checks = node_checks([{**GOOD, "vllm": "0.32.0", "cuda": None}], on_cpu=True)
    assert [c.name for c in checks] == ["node aaaaaaaaaaaa", "node aaaaaaaaaaaa /dev/shm"]


def test_no_node_is_a_failure():
    (check,) = node_checks([], on_cpu=True)
    assert check.status == FAIL


@pytest.mark.parametrize("shm_bytes, gpus, status, says", [
    (64 * MIB, 8, FAIL, "64 MiB; 8 GPU(s) here need at least 4,096 MiB"),   # Docker's / Kubernetes' default
    # A KubeRay head pod or a CPU dev/CI container: no GPU engine runs there, nothing is required.
    (64 * MIB, 0, OK, "64 MiB (no GPU here, so no GPU engine's shared-memory rings: nothing required)"),
    (None, 0, WARN, "cannot read /dev/shm: No such file (no GPU here: nothing required)"),
    (64 * MIB, 1, FAIL, "1 GPU(s) here need at least 1,024 MiB"),
    (GIB, 1, OK, "1,024 MiB (at least 1,024 MiB needed)"),
    (GIB, 8, FAIL, "need at least 4,096 MiB"),
    (4 * GIB, 8, OK, "4,096 MiB (at least 4,096 MiB needed)"),
    (16 * GIB, 8, OK, "16,384 MiB"),
    (None, 8, FAIL, "cannot read /dev/shm: No such file"),
])
def test_shm_is_judged_by_the_gpus_of_the_node(shm_bytes, gpus, status, says):
    check = shm_check("n /dev/shm", shm_bytes, gpus, "No such file" if shm_bytes is None else None)
    assert check.status == status and says in check.detail, check
    assert ("--shm-size" in check.fix and "emptyDir" in check.fix) == (status == FAIL)


@pytest.mark.parametrize("found, gpus, given, status, says", [
    (None, 0, 0, OK, "no GPU on this node"),
    (H20, 8, 8, OK, "torch 2.13.0+cu130 (CUDA build 13.0) sees the 8 free GPU(s) Ray gave the check "
                    "(CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7) (NVIDIA H20); a matmul ran on each"),
    (TWO_FREE, 8, 2, OK, "sees the 2 free GPU(s) Ray gave the check (CUDA_VISIBLE_DEVICES=5,7) (NVIDIA H20); "
                         "a matmul ran on each; 6 busy GPU(s) not touched"),
    # Every GPU serves a model or another team's job: the check does not run on any of them.
    (None, 8, 0, WARN, "all 8 GPUs busy: not checked"),
    ({"not_started": 30}, 8, 2, WARN, "Ray did not start the check on the 2 GPU(s) it counted free within 30 s"),
    # The CPU cluster here: Ray hands out logical GPUs, the CPU build of torch sees none.
    ({"torch": "2.11.0+cpu", "cuda_build": None, "devices": [], "matmul_ok": 0, "visible": "0,1,2,3"}, 4, 4, FAIL,
     "torch 2.11.0+cpu (CUDA build None) sees none of the 4 free GPU(s) Ray gave the check "
     "(CUDA_VISIBLE_DEVICES=0,1,2,3)"),
    ({**TWO_FREE, "devices": ["NVIDIA H20"], "matmul_ok": 1}, 8, 2, FAIL, "sees 1 of the 2 free GPU(s)"),
    ({**H20, "torch": "2.8.0+cu128", "cuda_build": "12.8"}, 8, 8, FAIL, "argus's gpu extra is built for CUDA 13.0"),
    ({**H20, "matmul_ok": None, "error": "RuntimeError: CUDA error: no kernel image is available"}, 8, 8, FAIL,
     "no kernel image is available"),
    ({"error": "the CUDA check did not run: TimeoutExpired"}, 8, 8, FAIL, "did not run"),
    ({**H20, "matmul_ok": 7}, 8, 8, FAIL, "the matmul did not run on each"),
])
def test_cuda_is_judged_on_the_free_gpus_ray_gave_it(found, gpus, given, status, says):
    check = cuda_check("n CUDA", found, gpus, given)
    assert check.status == status and says in check.detail, check
    assert ("driver 580" in check.fix) == (status == FAIL)
    assert ("again when some of its GPUs are free" in check.fix) == (status == WARN)


def test_a_node_whose_gpus_are_all_busy_warns_and_does_not_fail_doctor():
    _, shm, cuda = node_checks([{**GOOD, "gpus_free": 0, "cuda": None}], on_cpu=False)
    assert (shm.status, cuda.status, cuda.detail) == (OK, WARN, "all 8 GPUs busy: not checked")


# The CUDA check's own code (what runs on each GPU node) against a stand-in torch that has
# two "GPUs": no GPU here, so this shows what it does there: a 64x64 matmul on each device
# by name, its product checked. The real CPU torch is exercised on the Ray cluster
# (tests/integration/test_gpu_placement.py::test_doctor_probes_every_node).
STAND_IN_TORCH = '''
import json, os
__version__ = "2.13.0+cu130"
class version:
    cuda = "13.0"
class _T:
    def __init__(self, rows, device):
        self.rows, self.device = rows, device
    def __matmul__(self, other):
        with open(os.environ["DEVICES_LOG"], "a") as log:
            log.write(self.device + "\\n")
        n = len(self.rows)
        wrong = float(os.environ.get("WRONG_ON_" + self.device.replace(":", "_"), "0"))
        return _T([[sum(self.rows[i][k] * other.rows[k][j] for k in range(n)) + wrong for j in range(n)]
                   for i in range(n)], self.device)
    def sum(self):
        return _T([[sum(map(sum, self.rows))]], self.device)
    def item(self):
        return self.rows[0][0]
def ones(shape, device):
    return _T([[1.0] * shape[1] for _ in range(shape[0])], device)
class cuda:
    is_available = staticmethod(lambda: True)
    device_count = staticmethod(lambda: 2)
    get_device_name = staticmethod(lambda i: "NVIDIA H20")
'''


def _run_cuda_probe(tmp_path, **env):
    import json
    import subprocess
    import sys

    from argusctl.ops.doctor import CUDA_PROBE
    (tmp_path / "torch.py").write_text(STAND_IN_TORCH)
    log = tmp_path / "devices.log"
    done = subprocess.run([sys.executable, "-c", CUDA_PROBE], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(tmp_path), "DEVICES_LOG": str(log), **env})
    return json.loads(done.stdout.strip().splitlines()[-1]), (log.read_text().split() if log.exists() else [])


def test_the_cuda_probe_multiplies_on_every_gpu_it_was_given(tmp_path):
    # Ray set CUDA_VISIBLE_DEVICES to the two GPUs it gave the check (the stand-in's two devices).
    found, devices = _run_cuda_probe(tmp_path, CUDA_VISIBLE_DEVICES="5,7")
    assert devices == ["cuda:0", "cuda:1"]
    assert found == {"torch": "2.13.0+cu130", "cuda_build": "13.0", "devices": ["NVIDIA H20"] * 2, "matmul_ok": 2}
    assert cuda_check("n", found, 8, 2).status == OK


def test_the_cuda_probe_catches_a_wrong_product(tmp_path):
    found, _ = _run_cuda_probe(tmp_path, CUDA_VISIBLE_DEVICES="0,1", WRONG_ON_cuda_1="1")
    assert found["error"] == "RuntimeError: cuda:1 computed a wrong product"
    assert cuda_check("n", found, 2, 2).status == FAIL


def test_the_cuda_probe_touches_no_gpu_unless_ray_gave_it_some(tmp_path):
    # Without CUDA_VISIBLE_DEVICES torch would see (and the matmul touch) every GPU of the node.
    found, devices = _run_cuda_probe(tmp_path)
    assert devices == [] and "torch" not in found
    assert found["error"] == "RuntimeError: Ray gave the check no GPU (CUDA_VISIBLE_DEVICES unset): not run"


def test_doctor_says_when_rays_usage_view_is_missing():
    from argusctl.ops.doctor import WARN, usage_view_check
    from daemon.serving.placement import AdmissionMode, Capacity, NodeFree

    seen = (NodeFree("a", 2.0, 4.0, 4.0), NodeFree("h", 0.0, 2.0, 0.0))
    ok = usage_view_check(Capacity(seen, "H20"))
    assert (ok.status, ok.detail) == (OK, "Ray reports every node's usage: 2 of 4 H20 GPUs free on 1 node(s)")
    unseen = (NodeFree("a", 0.0, 0.0, 4.0, reported=False), NodeFree("h", 0.0, 2.0, 0.0))
    why = "the Ray dashboard's /nodes?view=summary reports no per-node usage"
    fit = usage_view_check(Capacity(unseen, "H20", AdmissionMode.FIT, why))
    assert fit.status == FAIL and fit.detail == (
        f"no usage for 1 of 1 node(s) with H20 GPUs ({why}); fit admission counts none of their GPUs as free: "
        "models that need them stay QUEUED")
    assert "monitor.log" in fit.fix
    assert usage_view_check(Capacity(unseen, "H20", AdmissionMode.AUTOSCALE, why)).status == WARN

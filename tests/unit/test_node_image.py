"""deploy/node.Dockerfile cannot be built here (no Docker daemon, no registry): what can be
checked without building it is that it stays in step with the project: its base image's Ray is
the Ray the gpu extra pins and its CUDA the CUDA that extra's torch/vLLM are built for (the one
doctor's CUDA check expects), FROM names it by digest, it copies every package the wheel ships,
and its own build check asserts that same Ray and CUDA, and its digest comes from a build argument
(argus commits none: the build refuses to start without one) whose default, once committed,
must be a sha256 digest."""
import re
import tomllib
from pathlib import Path

from argusctl.ops.doctor import CUDA_BUILD

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "deploy" / "node.Dockerfile").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
BASE = re.compile(r"^FROM rayproject/ray:(?P<ray>[\d.]+)-py(?P<py>\d+)-cu(?P<cuda>\d+)@\$\{RAY_BASE_DIGEST\}$", re.M)


def test_the_base_image_runs_the_ray_the_gpu_extra_pins():
    pinned = next(re.search(r"==([\d.]+)$", dep).group(1) for dep in PYPROJECT["project"]["optional-dependencies"]["gpu"]
                  if dep.startswith("ray["))
    base = BASE.search(DOCKERFILE)
    assert base, "FROM must be a rayproject/ray image whose tag names its CUDA, pinned by digest"
    assert base.group("ray") == pinned
    assert f"ray.__version__ == '{pinned}'" in DOCKERFILE


def test_the_base_image_is_the_cuda_build_torch_and_vllm_need():
    # torch 2.13.0 (pinned by vllm 0.29.0, pinned by ray[llm]==2.60.0) requires cuda-toolkit==13.0.3.
    base = BASE.search(DOCKERFILE)
    assert base.group("cuda") == CUDA_BUILD.replace(".", "") == "130"
    # The only stage: no other FROM (say Ray's -gpu alias, CUDA 12.1) builds what the nodes run.
    assert re.findall(r"^FROM .*$", DOCKERFILE, re.M) == [base.group(0)]
    assert f"torch.version.cuda.startswith('{CUDA_BUILD.split('.')[0]}.')" in DOCKERFILE
    # The digest is a build argument declared before FROM (it must be, for FROM to see it).
    assert DOCKERFILE.index("ARG RAY_BASE_DIGEST") < DOCKERFILE.index("\nFROM ")


def test_the_digest_is_required_or_a_committed_sha256():
    # No default: the build stops at FROM until one is passed. A committed default must be a
    # digest, not a tag (which can be re-pushed).
    (arg,) = re.findall(r"^ARG RAY_BASE_DIGEST.*$", DOCKERFILE, re.M)
    assert re.fullmatch(r"ARG RAY_BASE_DIGEST(=sha256:[0-9a-f]{64})?", arg), arg


def test_the_notes_say_what_shared_memory_to_give_the_container():
    assert "--shm-size=16g" in DOCKERFILE and "--ipc=host" in DOCKERFILE and "medium: Memory" in DOCKERFILE


def test_every_shipped_package_is_copied_into_the_image():
    copied = set(re.findall(r"^COPY (?:--chown=\S+ )?(\S+) \./\1$", DOCKERFILE, re.M))
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        assert package.split(".")[0] in copied, package
    assert "pip install --no-cache-dir '.[gpu]'" in DOCKERFILE

"""deploy/node.Dockerfile cannot be built here (no Docker daemon, no registry): what can be
checked without building it is that it stays in step with the project: its base image's Ray is
the Ray the gpu extra pins, it copies every package the wheel ships, and its own build check
asserts that same Ray version."""
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "deploy" / "node.Dockerfile").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_base_image_runs_the_ray_the_gpu_extra_pins():
    pinned = next(re.search(r"==([\d.]+)$", dep).group(1) for dep in PYPROJECT["project"]["optional-dependencies"]["gpu"]
                  if dep.startswith("ray["))
    base = re.search(r"^FROM rayproject/ray:([\d.]+)-py(\d)(\d+)-gpu$", DOCKERFILE, re.M)
    assert base, "FROM must be a rayproject/ray GPU image"
    assert base.group(1) == pinned
    assert f"ray.__version__ == '{pinned}'" in DOCKERFILE


def test_every_shipped_package_is_copied_into_the_image():
    copied = set(re.findall(r"^COPY (?:--chown=\S+ )?(\S+) \./\1$", DOCKERFILE, re.M))
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        assert package.split(".")[0] in copied, package
    assert "pip install --no-cache-dir '.[gpu]'" in DOCKERFILE

"""A fresh ARGUS_HOME for the benchmarks that run argus on the real stack: the local profile's
config, the small model copied in (or prepared), and `argusctl` bound to that home."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
MODEL = "SmolLM2-135M-Instruct"


def argus_home(home: Path) -> tuple[dict[str, str], Callable[..., subprocess.CompletedProcess]]:
    """Makes `home` (ARGUS_HOME) with configs/local.yaml and the model under private/hf; returns
    the environment argus runs in there and `ctl(*args)`, argusctl in that environment."""
    config = home / "argus.yaml"
    home.mkdir(parents=True)
    config.write_text((ROOT / "configs" / "local.yaml").read_text())
    env = dict(os.environ, ARGUS_HOME=str(home), ARGUS_CONFIG=str(config))
    model_dir = home / "private" / "hf" / MODEL
    prepared = Path(os.environ.get("ARGUS_BENCH_MODEL", Path.home() / ".argus/private/hf" / MODEL))
    if prepared.is_dir():  # a copy, not a symlink: argus refuses paths that escape the root
        shutil.copytree(prepared, model_dir)
    else:
        subprocess.run([str(ROOT / ".venv-serve/bin/python"), "scripts/prepare_model.py", "--dest", str(model_dir)],
                       cwd=ROOT, check=True)

    def ctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(ROOT / ".venv/bin/argusctl"), *args], env=env, capture_output=True,
                              text=True, timeout=1800)
    return env, ctl

"""The whole Ray head restarts under a running model (every Serve app, the controller and the
replicas are gone, then an empty cluster comes back): argusd, left running, brings the model
back without anyone doing anything, and the model answers again. The time it takes is printed."""
import json
import subprocess
import time

import pytest

from helpers import run_argusctl
from test_zero_disruption_e2e import chat_ok

pytestmark = pytest.mark.e2e
SOURCE = "$HOME/common/hf/SmolLM2-135M-Instruct"


def test_a_ray_head_restart_brings_the_model_back_unattended(argusd, tmp_path, repo_root):
    home, env = argusd
    ctl = lambda *a: run_argusctl(*a, "--workdir", str(tmp_path / "work"), env=env, timeout=1500)  # noqa: E731
    assert ctl("init", "--user", "rr", "--name", "rr", "--email", "rr@argus.local").returncode == 0
    spec = tmp_path / "back.yaml"
    spec.write_text(f"model_id: back\nmodel_source: {SOURCE}\n")
    result = ctl("apply", "-f", str(spec), "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    model = json.loads(run_argusctl("status", "back", "--user", "rr", "-o", "json", env=env).stdout)["model"]
    assert chat_ok(model["model_id"])

    started = time.monotonic()
    for step in (["scripts/ray_up.sh", "stop"], ["scripts/ray_up.sh"]):
        done = subprocess.run(step, cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    restarted = time.monotonic() - started
    deadline = time.monotonic() + 900
    while not chat_ok_quietly(model["model_id"]):
        assert time.monotonic() < deadline, run_argusctl("logs", "back", "--user", "rr", env=env).stdout[-3000:]
        time.sleep(3)
    back = time.monotonic() - started
    print(f"Ray head restart: Ray up again after {restarted:.0f} s, the model answers after {back:.0f} s")
    now = json.loads(run_argusctl("status", "back", "--user", "rr", "-o", "json", env=env).stdout)["model"]
    assert now["state"] == "RUNNING" and now["model_key"] == model["model_key"]  # the same model, not a new one
    assert ctl("delete", "back", "--wait").returncode == 0


def chat_ok_quietly(model_id: str) -> bool:
    try:
        return chat_ok(model_id)
    except OSError:  # the proxy is not up yet
        return False

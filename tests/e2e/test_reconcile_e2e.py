"""The reconciler against real Ray Serve + vLLM: a model that fails to start is FAILED with
Serve's message and left out, the good one serves; drift is repaired; deletes converge."""
import json
import subprocess
import time
import urllib.request

import pytest

from daemon.serve_client import ServeClient
from helpers import run_argusctl

pytestmark = pytest.mark.e2e
SOURCE = "$HOME/common/hf/SmolLM2-135M-Instruct"


def status(env):
    result = run_argusctl("status", "-o", "json", "--user", "iso", env=env)
    assert result.returncode == 0, result.stderr
    return {m["model_id_suffix"]: m for m in json.loads(result.stdout)["models"]}


def wait_for(env, predicate, what, timeout=900):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        models = status(env)
        if predicate(models):
            return models
        time.sleep(3)
    raise AssertionError(f"timed out waiting for {what}: {json.dumps(status(env), indent=1)[:3000]}")


def chat(model_id):
    body = json.dumps({"model": model_id, "max_tokens": 16,
                       "messages": [{"role": "user", "content": "Say hello."}]}).encode()
    request = urllib.request.Request("http://127.0.0.1:8000/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["choices"][0]["message"]["content"]


def test_broken_model_fails_alone_and_drift_is_repaired(argusd, tmp_path):
    home, env = argusd
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(home / "gitops.git"), str(work)], check=True)
    git = lambda *a: subprocess.run(["git", "-C", str(work), *a], check=True, capture_output=True)  # noqa: E731
    git("config", "user.email", "iso@argus.local")
    git("config", "user.name", "iso")
    git("checkout", "-q", "-B", "main")
    (work / "models.d" / "iso").mkdir(parents=True)
    (work / "models.d" / "iso" / "good.yaml").write_text(f"model_id: good\nmodel_source: {SOURCE}\n")
    # Valid for the spec policy, impossible for vLLM: SmolLM2 has 8192 positions.
    (work / "models.d" / "iso" / "bad.yaml").write_text(
        f"model_id: bad\nmodel_source: {SOURCE}\nengine_kwargs:\n  max_model_len: 1000000\n")
    git("add", "-A")
    git("commit", "-qm", "good and bad")
    git("push", "-q", "origin", "HEAD:main")

    models = wait_for(env, lambda m: m.get("bad", {}).get("state") == "FAILED", "bad to fail")
    assert "max_model_len" in (models["bad"]["error_summary"] or ""), models["bad"]["error_summary"]
    models = wait_for(env, lambda m: m.get("good", {}).get("state") == "RUNNING", "good to run")
    assert chat(models["good"]["model_id"]).strip()
    served = ServeClient("http://127.0.0.1:8265").get_applications()
    deployments = set(served["applications"]["argus"]["deployments"])
    assert f"LLMServer:{models['good']['model_key']}" in deployments
    assert f"LLMServer:{models['bad']['model_key']}" not in deployments  # left out after it failed

    # Drift: someone removes the app behind the daemon's back; it is applied again.
    ServeClient("http://127.0.0.1:8265").put_config({"applications": []})
    wait_for(env, lambda m: m["good"]["state"] == "DEPLOYING", "drift to be noticed", timeout=120)
    models = wait_for(env, lambda m: m["good"]["state"] == "RUNNING", "good to run again")
    logs = run_argusctl("logs", models["good"]["model_id"], env=env).stdout
    assert "DRIFT_REPAIRED" in logs

    git("rm", "-q", "models.d/iso/good.yaml", "models.d/iso/bad.yaml")
    git("commit", "-qm", "clean up")
    git("push", "-q", "origin", "HEAD:main")
    wait_for(env, lambda m: not m, "both models to be deleted", timeout=300)

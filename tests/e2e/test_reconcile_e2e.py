"""The reconciler against real Ray Serve + vLLM: a model that fails to start is FAILED with
Serve's message and left out, the good one serves; drift is repaired; deletes converge; and
another team's Serve app on the same cluster survives all of it with the same replica."""
import json
import time
import urllib.request

import pytest

from daemon.serving.client import ServeClient
from helpers import deployment_names, run_argusctl

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


# Another team's app: any importable Serve app will do; this one ships in the Ray wheel and
# answers with its replica's pid, so a restart would show.
FOREIGN = {"name": "team-b", "route_prefix": "/team-b", "import_path": "ray.serve._private.test_utils:get_pid_entrypoint"}


def foreign_pid() -> int:
    with urllib.request.urlopen("http://127.0.0.1:8000/team-b", timeout=30) as response:
        return int(response.read())


def deploy_foreign(client: ServeClient) -> int:
    """PUT the foreign app next to whatever runs (as its team would, declaratively). Serve's
    REST API has no compare-and-set: a PUT that lands between argusd's read and its own write
    (argusd starting up) is lost, so the team puts it again, as a real team would."""
    deadline = time.monotonic() + 180
    while True:
        current = [app["deployed_app_config"] for name, app in client.get_applications()["applications"].items()
                   if app.get("deployed_app_config") and name != FOREIGN["name"]]
        client.put_config({"proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": 8000},
                           "applications": current + [FOREIGN]})
        retry_at = time.monotonic() + 30
        while time.monotonic() < retry_at:
            try:
                return foreign_pid()
            except Exception:
                time.sleep(2)
        assert time.monotonic() < deadline, client.get_applications()["applications"].get("team-b")


def test_broken_model_fails_alone_and_drift_is_repaired(argusd, tmp_path):
    home, env = argusd
    ctl = lambda *a, **kw: run_argusctl(*a, "--workdir", str(tmp_path / "work"), env=env, **kw)  # noqa: E731
    client = ServeClient("http://127.0.0.1:8265")
    team_b_pid = deploy_foreign(client)
    assert ctl("init", "--user", "iso", "--name", "iso", "--email", "iso@argus.local").returncode == 0
    (tmp_path / "good.yaml").write_text(f"model_id: good\nmodel_source: {SOURCE}\n")
    # Valid for the spec policy, impossible for vLLM: SmolLM2 has 8192 positions.
    (tmp_path / "bad.yaml").write_text(f"model_id: bad\nmodel_source: {SOURCE}\nengine_kwargs:\n"
                                       "  max_model_len: 1000000\n")
    assert ctl("apply", "-f", str(tmp_path / "bad.yaml")).returncode == 0
    good = ctl("apply", "-f", str(tmp_path / "good.yaml"), "--wait", "--timeout", "900", timeout=1000)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "iso/good: RUNNING" in good.stdout

    models = wait_for(env, lambda m: m.get("bad", {}).get("state") == "FAILED", "bad to fail")
    assert "max_model_len (1000000) is greater than" in models["bad"]["error_summary"], models["bad"]
    models = wait_for(env, lambda m: m.get("good", {}).get("state") == "RUNNING", "good to run")
    assert chat(models["good"]["model_id"]).strip()
    deadline = time.monotonic() + 120
    while f"LLMServer:{models['bad']['model_key']}" in deployment_names(client):  # left out after it failed
        assert time.monotonic() < deadline, "the FAILED model is still deployed"
        time.sleep(2)
    assert f"LLMServer:{models['good']['model_key']}" in deployment_names(client)

    # Drift: someone removes argus's apps behind the daemon's back; they are applied again.
    client.put_config({"applications": [FOREIGN]})
    wait_for(env, lambda m: m["good"]["state"] == "DEPLOYING", "drift to be noticed", timeout=120)
    models = wait_for(env, lambda m: m["good"]["state"] == "RUNNING", "good to run again")
    logs = run_argusctl("logs", models["good"]["model_id"], env=env).stdout
    assert "REPLICAS_LOST" in logs  # its apps were removed: Serve had no replica of it (DRIFT_REPAIRED: a changed config)

    for name in ("bad", "good"):
        gone = ctl("delete", name, "--wait", "--timeout", "300", timeout=400)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert f"iso/{name}: DELETED" in gone.stdout
    assert not status(env)
    # Through argus's applies, a drift repair and deletes: the other team's app is untouched.
    team_b = client.get_applications()["applications"]["team-b"]
    assert team_b["status"] == "RUNNING" and team_b["deployed_app_config"]["import_path"] == FOREIGN["import_path"]
    assert foreign_pid() == team_b_pid
    # Leave the cluster as the next test expects it: without the other team's app.
    apps = client.get_applications()["applications"]
    client.put_config({"proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": 8000},
                       "applications": [app["deployed_app_config"] for name, app in apps.items()
                                        if name != "team-b" and app.get("deployed_app_config")]})

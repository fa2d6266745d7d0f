"""The README's first command: from nothing to a served model; the whole Ray head restarted
under the running argusd (it puts the model back unattended: the same model, no commit, no
restart of argusd) while the quickstart's rerun waits for a real answer; adapters enabled
(a rollout under plain and streaming requests, none failed) and the model deleted, with
--wait; `quickstart.sh down` stops argusd and Ray (so this module runs after every other
e2e test: tests/e2e/conftest.py)."""
import json
import re
import subprocess
import time
import urllib.request

import pytest

from helpers import Http, alive, no_failed_requests, run_argusctl

pytestmark = pytest.mark.e2e


def asked(stdout: str) -> str:
    """The answer the quickstart printed for its question (step 9's line)."""
    match = re.search(r'Asked "What is the capital of France\?" -> (.*) \((?:\d+m )?\d+ ?s\)$', stdout, re.M)
    assert match, stdout[-2000:]
    return match.group(1)


def test_quickstart_serves_a_model_and_write_commands_report_the_final_state(e2e_home, repo_root):
    home, env = e2e_home
    quickstart = lambda *args, timeout=1800: subprocess.run(  # noqa: E731
        ["scripts/quickstart.sh", *args], cwd=repo_root, env=env, capture_output=True, text=True, timeout=timeout)
    git_log = lambda: subprocess.run(["git", "-C", str(home / "gitops.git"), "log", "--format=%an|%s"],  # noqa: E731
                                     capture_output=True, text=True).stdout.splitlines()
    result = quickstart()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(result.stdout)
    match = re.search(r"Serving (\S+) on http://127\.0\.0\.1:8000/v1", result.stdout)
    assert match, result.stdout[-2000:]
    model_id = match.group(1)
    assert "-> demo/smollm2-135m: created, RUNNING (" in result.stdout
    # The first answer makes sense (float32 on CPU, configs/local.yaml; bf16 answered in French nonsense).
    assert "Paris" in asked(result.stdout), result.stdout[-2000:]
    assert "Log of every step (library output included): " in result.stdout
    assert "INFO" not in result.stdout and "WARNING" not in result.stdout  # library noise stays in the log
    body = json.dumps({"model": model_id, "max_tokens": 16, "temperature": 0,
                       "messages": [{"role": "user", "content": "What is the capital of France?"}]}).encode()
    request = urllib.request.Request("http://127.0.0.1:8000/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        assert "Paris" in json.loads(response.read())["choices"][0]["message"]["content"]

    # The API beside it (local profile: 127.0.0.1:8090) shows the model live in the real Serve.
    http = Http("http://127.0.0.1:8090")
    token = run_argusctl("token", "create", "--user", "demo", env=env).stdout.strip().splitlines()[-1]
    admin = run_argusctl("token", "create", "--user", "demo", "--admin", env=env).stdout.strip().splitlines()[-1]
    status, listed, _ = http("GET", "/api/v2/serve/models", token=token)
    assert status == 200 and [m["state"] for m in listed["items"] if m["model_id"] == model_id] == ["RUNNING"]
    key = next(m["model_key"] for m in listed["items"] if m["model_id"] == model_id)
    status, detail, _ = http("GET", f"/api/v2/serve/models/{key}", token=token)
    live = detail["serve_status"]
    assert live["deployed"] and [r["state"] for r in live["replicas"]] == ["RUNNING"], live
    status, admin_view, _ = http("GET", "/api/v2/serve/status", token=admin)
    assert admin_view["serve"]["applications"]["argus"]["status"] == "RUNNING", admin_view
    # The closing lines point at the model's page, whose chart counts the requests just sent
    # (Ray Serve's own counters on the model's replicas, read by argusd each tick).
    assert f"http://127.0.0.1:8090/ui/serving/{key}" in result.stdout, result.stdout[-2000:]
    deadline = time.monotonic() + 180  # Ray exports every 10 s, argusd reads every api.traffic_seconds (30)
    while True:
        status, traffic, _ = http("GET", f"/api/v2/serve/models/{key}/traffic", token=token)
        assert status == 200 and traffic["available"], traffic
        sent = sum(p["requests_per_s"] * p["seconds"] for p in traffic["points"] if p["requests_per_s"] is not None)
        if round(sent) >= 2 or time.monotonic() > deadline:  # at least step 9's question and the one above
            break
        time.sleep(3)
    assert round(sent) >= 2 and any(p["mean_latency_ms"] for p in traffic["points"]), traffic

    # The whole Ray head stops (every Serve app, the controller and the replicas gone) while
    # argusd runs on; the quickstart run again starts an empty Ray, and argusd, unattended (the
    # same process, no commit), puts the same model back. The rerun says RUNNING only once Serve
    # answers for the model again: its step 9 asks it and gets Paris.
    commits = git_log()
    argusd_pid = (home / "state" / "argusd.pid").read_text().strip()
    started = time.monotonic()
    stopped = subprocess.run(["scripts/ray_up.sh", "stop"], cwd=repo_root, env=env, capture_output=True, text=True)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    again = quickstart()
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    print(again.stdout)
    print(f"Ray head restart: the model answers after {time.monotonic() - started:.0f} s")
    # (what argusd's store says at that moment depends on whether argusd has noticed the empty Ray yet)
    assert re.search(r"-> demo/smollm2-135m: already in your repo \(\w+ in argusd's store\), left as it is, "
                     r"RUNNING \(", again.stdout), again.stdout[-2000:]
    assert "Paris" in asked(again.stdout) and "Web UI and API: http://127.0.0.1:8090/ui" in again.stdout
    assert git_log() == commits  # nothing applied
    assert (home / "state" / "argusd.pid").read_text().strip() == argusd_pid  # the same argusd did it
    after = json.loads(run_argusctl("status", model_id, "-o", "json", env=env).stdout)["model"]
    assert after["state"] == "RUNNING" and after["model_key"] == key  # the same model, not a new one

    # The user's next change: LoRA adapters enabled on the model (issue 23.2). A new generation
    # starts beside the serving one and the front end switches to it once it answered; plain and
    # streaming requests sent all along never fail and none is a 404. --wait ends with the id a
    # client sends and a curl line, after the model's final state.
    tmp_spec = home / "smollm2-135m-adapters.yaml"   # the example spec the quickstart applied, with adapters
    tmp_spec.write_text((repo_root / "models.d" / "bob" / "smollm2.yaml").read_text() + "adapters:\n  max_rank: 8\n")
    with no_failed_requests(model_id):
        applied = run_argusctl("apply", "-f", str(tmp_spec), "--wait", env=env, timeout=1200)
        assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "demo/smollm2-135m: RUNNING" in applied.stdout.splitlines(), applied.stdout
    assert f"model: {model_id}  (send this as \"model\"" in applied.stdout, applied.stdout
    # The user's change survives another run: no commit, the adapters kept.
    commits = git_log()
    again = quickstart(timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "demo/smollm2-135m: already in your repo (RUNNING in argusd's store), left as it is, RUNNING" in again.stdout
    assert git_log() == commits
    status = json.loads(run_argusctl("status", model_id, "-o", "json", env=env).stdout)
    assert status["model"]["resolved"]["adapters"] and status["model"]["model_id"] == model_id, status
    assert status["model"]["applied_generation"] == status["model"]["generation"] == after["generation"] + 1, status
    deleted = run_argusctl("delete", model_id, "--wait", env=env, timeout=600)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert deleted.stdout.strip().splitlines()[-1] == "demo/smollm2-135m: DELETED"
    log = git_log()
    assert log[0] == "demo|delete demo/smollm2-135m" and log[2] == "demo|apply demo/smollm2-135m: new model", log[:3]
    assert log[1].startswith("demo|apply demo/smollm2-135m: ") and "adapters" in log[1], log[:3]

    # `down` stops argusd and the Ray head.
    down = quickstart("down", timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not (home / "state" / "argusd.pid").exists()
    deadline = time.monotonic() + 30   # argusd ends its tick first
    while alive(argusd_pid):
        assert time.monotonic() < deadline, f"argusd (pid {argusd_pid}) still runs after down"
        time.sleep(0.5)
    check = subprocess.run(["scripts/ray_up.sh", "check"], cwd=repo_root, env=env, capture_output=True, text=True)
    assert check.returncode == 3, check.stdout + check.stderr

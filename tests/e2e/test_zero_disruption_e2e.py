"""Zero disruption: while model A answers a steady stream of requests, model B is pushed,
edited, scaled and deleted, and LoRA adapters on A come, change, fail and go; A never fails a
request and none of its replicas restarts. An adapter answers what plain vLLM answers with
the same adapter (temperature 0), seconds after its commit; new weights written into an
adapter's folder answer a long-prefix prompt as plain vLLM does with them (no prefix-cache
block of the old weights reused); an adapter folder swapped for a symlink to another user's
adapter is refused by the replica and FAILED by argusd. Then
faults on the real stack, one after another on A: one of the front end's two replicas killed
(at most the requests it held fail), the Serve controller killed (nothing fails, the same
replica serves on), A's replica killed (replaced; A stays in, DEPLOYING until it runs again), and the whole
Ray head restarted (argusd brings A back unattended). Last, A's model folder swapped into another
user's tree: its next replica refuses to start with the reason, and argusd FAILS A."""
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from daemon.serving.client import ServeClient
from helpers import Prober, replicas_of, run_argusctl

pytestmark = pytest.mark.e2e
SOURCE = "$HOME/common/hf/SmolLM2-135M-Instruct"
LORA_PROMPT, LORA_TOKENS = "Once upon a time", 24
# Long enough to fill several KV-cache blocks, which vLLM's prefix cache keeps and reuses, and
# ending where the two test adapters answer differently.
LONG_PROMPT = ("Mara kept the lighthouse on the northern cape for thirty years. Each evening she climbed the "
               "ninety-one steps, trimmed the wick, polished the great lens and wrote the weather in her log: wind "
               "from the west, a grey swell, two fishing boats returning late, a gull with a broken wing on the rail. "
               "In winter the storms came in from the sea like freight trains, and the tower hummed with them all "
               "night long. In summer tourists climbed the hill with cameras and asked her whether she was ever "
               "lonely. She always said no, because the ships talked to her with their lights, the foxes came to the "
               "door for bread, and the postman brought letters from her sister every second Tuesday.\n\n") * 2 \
    + LORA_PROMPT


def listed_models() -> list[str]:
    with urllib.request.urlopen("http://127.0.0.1:8000/v1/models", timeout=30) as response:
        return sorted(m["id"] for m in json.loads(response.read())["data"])


def post(path: str, body: dict) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:8000/v1/{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def completion(model_id: str, prompt: str = LORA_PROMPT) -> str:
    status, body = post("completions", {"model": model_id, "prompt": prompt, "max_tokens": LORA_TOKENS,
                                        "temperature": 0})
    assert status == 200, body[:2000]
    return json.loads(body)["choices"][0]["text"]


def check_front_end(model_id: str) -> None:
    """Ray Serve LLM's own protocol through the front end: streaming, completions, errors."""
    status, body = post("chat/completions", {"model": model_id, "max_tokens": 8, "stream": True,
                                             "messages": [{"role": "user", "content": "Hi"}]})
    events = [line for line in body.decode().splitlines() if line.startswith("data: ")]
    assert status == 200 and len(events) >= 2 and events[-1] == "data: [DONE]", body[:500]
    status, body = post("completions", {"model": model_id, "prompt": "Paris is", "max_tokens": 4})
    assert status == 200 and json.loads(body)["choices"][0]["text"] is not None
    status, body = post("chat/completions", {"model": "nobody-000000000000-nothing",
                                             "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 404 and "error" in json.loads(body), body[:500]


def test_changing_one_model_never_disrupts_another(argusd, tmp_path, repo_root):
    home, env = argusd
    ctl = lambda *a: run_argusctl(*a, "--workdir", str(tmp_path / "work"), env=env, timeout=1500)  # noqa: E731
    client = ServeClient("http://127.0.0.1:8265")
    assert ctl("init", "--user", "zd", "--name", "zd", "--email", "zd@argus.local").returncode == 0
    steady, churn = tmp_path / "steady.yaml", tmp_path / "churn.yaml"
    # The LoRA reference first, while the CPU is free: plain vLLM with the same adapters.
    adapters = home / "private" / "users" / "zd" / "adapters"
    model_dir = home / "private" / "hf" / "SmolLM2-135M-Instruct"
    for name, seed in (("a1", 1), ("a1-v2", 2)):
        made = subprocess.run([str(repo_root / ".venv-serve" / "bin" / "python"), "scripts/make_test_adapter.py",
                               str(model_dir), str(adapters / name), str(seed)], cwd=repo_root, capture_output=True,
                              text=True)
        assert made.returncode == 0, made.stderr[-2000:]
    (adapters / "broken").mkdir()
    (adapters / "broken" / "adapter_config.json").write_text((adapters / "a1" / "adapter_config.json").read_text())
    (adapters / "broken" / "adapter_model.safetensors").write_bytes(b"not safetensors")
    reference = subprocess.run([str(repo_root / ".venv-serve" / "bin" / "python"), "scripts/lora_reference.py",
                                str(model_dir), f"{adapters / 'a1'},{adapters / 'a1-v2'}", str(LORA_TOKENS),
                                LORA_PROMPT, LONG_PROMPT],
                               cwd=repo_root, capture_output=True, text=True, timeout=900,
                               env={**env, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"})
    assert reference.returncode == 0, reference.stderr[-3000:]
    found = json.loads([line for line in reference.stdout.splitlines() if line.startswith("{")][-1])
    expected = {"base": found["base"][0], "adapter": found["adapter"][0],
                "long": found["adapters"][0][1], "long-v2": found["adapters"][1][1]}
    assert expected["base"] != expected["adapter"] and expected["long"] != expected["long-v2"]
    eve = home / "private" / "users" / "eve" / "adapters" / "a1"   # another user's adapter
    eve.parent.mkdir(parents=True)
    shutil.copytree(adapters / "a1", eve)

    steady.write_text(f"model_id: steady\nmodel_source: {SOURCE}\nadapters:\n  max_rank: 8\n  max_loaded: 2\n")
    result = ctl("apply", "-f", str(steady), "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    status = lambda name: json.loads(run_argusctl("status", name, "-o", "json", env=env).stdout)["model"]  # noqa: E731
    a = status("steady")
    before = replicas_of(client, a["model_key"])
    assert before
    check_front_end(a["model_id"])
    prober = Prober(a["model_id"])
    prober.start()
    time.sleep(3)
    started = time.monotonic()

    churn.write_text(f"model_id: churn\nmodel_source: {SOURCE}\n")
    result = ctl("apply", "-f", str(churn), "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    b = status("churn")
    assert listed_models() == sorted([a["model_id"], b["model_id"]])
    churn.write_text(f"model_id: churn\nmodel_source: {SOURCE}\nengine_kwargs:\n  max_model_len: 1024\n")
    for args in (("apply", "-f", str(churn), "--wait"), ("scale", "churn", "--replicas", "2", "--wait"),
                 ("delete", "churn", "--wait")):
        result = ctl(*args)
        assert result.returncode == 0, result.stdout + result.stderr

    # LoRA adapters on A: a commit answers in seconds, with plain vLLM's answer.
    adapter = tmp_path / "tutor.yaml"
    adapter.write_text("model_id: tutor\nbase_model: steady\nmodel_source: $HOME/adapters/a1\n")
    committed = time.monotonic()
    result = ctl("apply", "-f", str(adapter), "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    tutor = status("tutor")
    assert completion(tutor["model_id"]) == expected["adapter"]
    print(f"adapter: commit -> RUNNING -> first answer in {time.monotonic() - committed:.1f} s")
    assert completion(a["model_id"]) == expected["base"]
    cards = {m["id"]: m for m in json.loads(urllib.request.urlopen("http://127.0.0.1:8000/v1/models",
                                                                    timeout=30).read())["data"]}
    assert cards[tutor["model_id"]]["metadata"]["base_model"] == a["model_id"]
    # Changed weights (a new folder): the same id answers with them, no restart.
    adapter.write_text("model_id: tutor\nbase_model: steady\nmodel_source: $HOME/adapters/a1-v2\n")
    result = ctl("apply", "-f", str(adapter), "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    assert completion(tutor["model_id"]) not in (expected["adapter"], expected["base"])
    # A folder vLLM cannot load: FAILED with vLLM's reason, A unharmed.
    broken = tmp_path / "broken.yaml"
    broken.write_text("model_id: broken\nbase_model: steady\nmodel_source: $HOME/adapters/broken\n")
    result = ctl("apply", "-f", str(broken), "--wait")
    assert result.returncode != 0 and status("broken")["state"] == "FAILED", result.stdout + result.stderr
    assert "Failed to load lora model" in status("broken")["error_summary"], status("broken")
    # New weights written into the same folder: the long-prefix prompt answers as plain vLLM
    # does with them (vLLM 0.32 keys prefix-cache blocks by LoRA name and path, 0.29 by name
    # alone; the replica loads changed weights under a new name, from a copy of its own).
    shutil.copytree(adapters / "a1", adapters / "live")
    live = tmp_path / "live.yaml"
    live.write_text("model_id: live\nbase_model: steady\nmodel_source: $HOME/adapters/live\n")
    result = ctl("apply", "-f", str(live), "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    live_id = status("live")["model_id"]
    assert completion(live_id, LONG_PROMPT) == expected["long"]
    assert completion(live_id, LONG_PROMPT) == expected["long"]   # now from the prefix cache
    changed = time.monotonic()
    shutil.copyfile(adapters / "a1-v2" / "adapter_model.safetensors", adapters / "live" / "adapter_model.safetensors")
    assert completion(live_id, LONG_PROMPT) == expected["long-v2"]
    print(f"adapter: new weights in the same folder answered in {time.monotonic() - changed:.1f} s")
    # The folder swapped for a symlink to another user's adapter (argusd stopped, so that the
    # replica's own check answers): refused with the reason, nothing loaded; then argusd FAILS it.
    assert subprocess.run(["scripts/argusd_up.sh", "stop"], cwd=repo_root, env=env).returncode == 0
    os.rename(adapters / "live", adapters / "live-old")
    os.symlink(eve, adapters / "live")
    code, body = post("completions", {"model": live_id, "prompt": LONG_PROMPT, "max_tokens": 4})
    assert code != 200 and b"users/eve/adapters/a1 is in user 'eve'" in body, (code, body[:2000])
    print(f"adapter swapped into another user's tree: the replica answered {code}")
    assert subprocess.run(["scripts/argusd_up.sh"], cwd=repo_root, env=env).returncode == 0
    deadline = time.monotonic() + 180   # the restarted argusd first waits out its old lease
    while status("live")["state"] != "FAILED":
        assert time.monotonic() < deadline, status("live")
        time.sleep(2)
    assert "users/eve/adapters/a1" in status("live")["error_summary"], status("live")
    for name in ("tutor", "broken", "live"):
        result = ctl("delete", name, "--wait")
        assert result.returncode == 0, result.stdout + result.stderr
    time.sleep(3)
    prober.stop.set()
    prober.join(timeout=70)

    requests, failed, longest = prober.window(started, time.monotonic())
    assert requests > 10, requests
    assert failed == 0, f"{failed} of {requests} requests to the steady model failed (longest outage {longest} s)"
    assert replicas_of(client, a["model_key"]) == before  # same replica ids and pids: nothing restarted
    assert listed_models() == [a["model_id"]]

    # The front end survives losing a replica: kill -9 one of its two under a stream of
    # requests from 3 clients; at most the requests that replica held fail.
    fronts = front_end_replicas(client)
    assert len(fronts) == 2, fronts
    probers = [Prober(a["model_id"]) for _ in range(3)]
    for p in probers:
        p.start()
    time.sleep(5)
    killed_at = time.monotonic()
    os.kill(sorted(fronts)[0][1], signal.SIGKILL)
    time.sleep(20)
    for p in probers:
        p.stop.set()
    for p in probers:
        p.join(timeout=70)
    counts = [p.window(killed_at - 5, time.monotonic()) for p in probers]
    requests, failed = sum(c[0] for c in counts), sum(c[1] for c in counts)
    print(f"front-end replica killed: {failed} of {requests} requests failed")
    assert requests > 10 and failed <= len(probers), counts  # each client had at most one in flight
    deadline = time.monotonic() + 120
    while len(front_end_replicas(client)) < 2:  # Serve starts a new one, with the same table
        assert time.monotonic() < deadline, front_end_replicas(client)
        time.sleep(2)
    assert listed_models() == [a["model_id"]]

    # The Serve controller is killed: Serve restarts it; the replicas never stop serving and
    # argus changes nothing.
    replicas_before = replicas_of(client, a["model_key"])
    controller = int(subprocess.run(["pgrep", "-f", "^ray::ServeController"], capture_output=True,
                                    text=True).stdout.split()[0])
    prober = Prober(a["model_id"])
    prober.start()
    time.sleep(3)
    killed_at = time.monotonic()
    os.kill(controller, signal.SIGKILL)
    time.sleep(30)
    prober.stop.set()
    prober.join(timeout=70)
    requests, failed, _ = prober.window(killed_at - 3, time.monotonic())
    print(f"Serve controller killed: {failed} of {requests} requests failed")
    assert requests >= 3 and failed == 0, (requests, failed)  # requests are slower while it recovers
    # The recovered controller adopts the very same replica (before ArgusLLMServer, vLLM's
    # logging set-up broke Serve's recovery call and the replica was replaced: a cold start).
    deadline = time.monotonic() + 60
    while not replicas_of(client, a["model_key"]):  # the dashboard may not list it yet
        assert time.monotonic() < deadline
        time.sleep(2)
    assert replicas_of(client, a["model_key"]) == replicas_before
    assert status("steady")["state"] == "RUNNING", status("steady")

    # The model's own (only) replica is killed: Serve replaces it; argus keeps the model in the
    # config, says DEPLOYING with the reason while Serve has no running replica of it (or
    # RUNNING with the reason while one still counts as running), and it answers again.
    (replica,) = replicas_of(client, a["model_key"])
    os.kill(replica[1], signal.SIGKILL)
    deadline = time.monotonic() + 600
    while True:
        replaced = replicas_of(client, a["model_key"])
        if replaced and replica not in replaced and status("steady")["state"] == "RUNNING" and chat_ok(a["model_id"]):
            break
        assert status("steady")["state"] in ("RUNNING", "DEPLOYING"), status("steady")  # never FAILED
        assert time.monotonic() < deadline, "the killed replica was not replaced"
        time.sleep(3)
    logs = run_argusctl("logs", a["model_id"], "-o", "json", env=env).stdout
    assert '"REPLICAS_LOST"' in logs or '"DEGRADED"' in logs, logs[-2000:]

    # The whole Ray head restarts (every Serve app, the controller and the replicas gone, an
    # empty cluster back): argusd, left running, brings the same model back unattended.
    started = time.monotonic()
    for step in (["scripts/ray_up.sh", "stop"], ["scripts/ray_up.sh"]):
        done = subprocess.run(step, cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    ray_back = time.monotonic() - started
    deadline = time.monotonic() + 900
    while not chat_ok_quietly(a["model_id"]):
        assert time.monotonic() < deadline, run_argusctl("logs", a["model_id"], env=env).stdout[-3000:]
        time.sleep(3)
    print(f"Ray head restart: Ray up again after {ray_back:.0f} s, the model answers after "
          f"{time.monotonic() - started:.0f} s")
    after = status("steady")
    assert after["state"] == "RUNNING" and after["model_key"] == a["model_key"]  # the same model, not a new one

    # A's model folder swapped into another user's tree (argusd stopped, so that only the
    # replica decides): its next replica refuses to start with the reason and starts no
    # engine; argusd, back, FAILS A with the reason.
    assert subprocess.run(["scripts/argusd_up.sh", "stop"], cwd=repo_root, env=env).returncode == 0
    eve_model = home / "private" / "users" / "eve" / model_dir.name
    os.rename(model_dir, eve_model)
    os.symlink(eve_model, model_dir)
    try:
        (replica,) = replicas_of(client, a["model_key"])
        os.kill(replica[1], signal.SIGKILL)
        deadline = time.monotonic() + 300
        while "WeightsRefusedError" not in deployment_message(client, a["model_key"]):
            assert time.monotonic() < deadline, deployment_message(client, a["model_key"])
            time.sleep(3)
        assert f"{eve_model} is in user 'eve'" in deployment_message(client, a["model_key"])
        assert not replicas_of(client, a["model_key"])   # no replica runs it
        assert subprocess.run(["scripts/argusd_up.sh"], cwd=repo_root, env=env).returncode == 0
        deadline = time.monotonic() + 180
        while status("steady")["state"] != "FAILED":
            assert time.monotonic() < deadline, status("steady")
            time.sleep(2)
        assert str(eve_model) in status("steady")["error_summary"], status("steady")
    finally:
        os.unlink(model_dir)
        os.rename(eve_model, model_dir)
    assert ctl("delete", "steady", "--wait").returncode == 0


def deployment_message(client, model_key: str) -> str:
    app = (client.get_applications().get("applications") or {}).get(f"llm-{model_key}") or {}
    return ((app.get("deployments") or {}).get(f"LLMServer:{model_key}") or {}).get("message") or ""


def chat_ok_quietly(model_id: str) -> bool:
    try:
        return chat_ok(model_id)
    except OSError:  # the proxy is not up yet
        return False


def chat_ok(model_id: str) -> bool:
    status, _ = post("chat/completions", {"model": model_id, "max_tokens": 4,
                                          "messages": [{"role": "user", "content": "Hi"}]})
    return status == 200


def front_end_replicas(client) -> set[tuple[str, int]]:
    app = (client.get_applications().get("applications") or {}).get("argus") or {}
    dep = (app.get("deployments") or {}).get("ArgusIngress") or {}
    return {(r["replica_id"], r["pid"]) for r in dep.get("replicas") or [] if r.get("state") == "RUNNING"}

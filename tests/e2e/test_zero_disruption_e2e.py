"""Zero disruption: a model vLLM cannot start fails alone while model A starts next to it; then,
while A answers a steady stream of requests, model B is pushed autoscaled at zero replicas, woken
by requests, goes idle again, is suspended, resumed and deleted, and
LoRA adapters on A come, change, fail and go; A never fails a request and none of its replicas
restarts. An adapter answers what plain vLLM answers with the same adapter (temperature 0),
seconds after its commit; new weights written into an adapter's folder answer a long-prefix
prompt as plain vLLM does with them (no prefix-cache block of the old weights reused); an
adapter folder swapped for a symlink to another user's adapter is refused by the replica and
FAILED by argusd. Then faults on the real stack, one after another on A: one of the front end's
two replicas killed (at most the requests it held fail), the Serve controller killed (nothing
fails, the same replica serves on), A's replica killed (replaced; A stays in, DEPLOYING until
it runs again), argus's apps removed behind argusd's back (applied again) next to another
team's Serve app (left alone, the same replica, through every apply, repair and delete). Last,
A's model folder swapped into another user's tree: its next replica refuses to start with the
reason, and argusd FAILS A.

A starts once for the module (the `steady` fixture); each step is a test of its own, in this
order, so that one failure does not hide the others. Each adapter or model a test makes, it
deletes again, also when it fails. The whole Ray head restarting under a running argusd is in
tests/e2e/test_quickstart_e2e.py (the quickstart's own rerun after Ray stopped)."""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from daemon.serving.client import ServeClient
from helpers import Prober, alive, deployment_names, no_failed_requests, replicas_of, run_argusctl, start_argusd

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


def post(path: str, body: dict, timeout: float = 120) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:8000/v1/{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
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


class Steady:
    """Model A ("steady", adapters allowed) running for the whole module, with what its tests share."""

    def __init__(self, home, env, work, repo_root):
        self.home, self.env, self.work, self.repo_root = home, env, work, repo_root
        self.client = ServeClient("http://127.0.0.1:8265")
        self.adapters = home / "private" / "users" / "zd" / "adapters"
        self.model_dir = home / "private" / "hf" / "SmolLM2-135M-Instruct"
        self.serving_dir = self.model_dir    # the folder the swap test swaps (A's, after any rollout)
        self.eve = home / "private" / "users" / "eve" / "adapters" / "a1"   # another user's adapter
        self.expected: dict[str, str] = {}
        self.a: dict = {}
        self.team_b_pid: int | None = None   # another team's app, once deployed
        self.a_started_in = 0.0              # A's apply --wait, seconds (beside the adapter reference's vLLM)

    def ctl(self, *args: str):
        return run_argusctl(*args, "--workdir", str(self.work / "clone"), env=self.env, timeout=1500)

    def status(self, name: str) -> dict:
        return json.loads(run_argusctl("status", name, "-o", "json", env=self.env).stdout)["model"]

    def apply(self, name: str, text: str):
        path = self.work / f"{name}.yaml"
        path.write_text(text)
        return self.ctl("apply", "-f", str(path), "--wait")

    def delete_if_there(self, *names: str) -> None:
        """Best-effort cleanup after a test that may have failed half-way."""
        live = json.loads(run_argusctl("status", "-o", "json", "--user", "zd", env=self.env).stdout)["models"]
        for name in names:
            if any(m["model_id_suffix"] == name for m in live):
                self.ctl("delete", name, "--wait")


@contextlib.contextmanager
def undisturbed(steady: Steady):
    """While the block runs, A answers a steady stream of requests: none fails, and it keeps the
    very same replica (ids and pids: nothing restarted)."""
    before = replicas_of(steady.client, steady.a["model_key"])
    assert before
    prober = Prober(steady.a["model_id"])
    prober.start()
    time.sleep(3)
    started = time.monotonic()
    try:
        yield
    finally:
        time.sleep(max(3.0, started + 16 - time.monotonic()))   # a window of 16 s at least
        prober.stop.set()
        prober.join(timeout=70)
    requests, failed, longest = prober.window(started, time.monotonic())
    assert requests >= 5, requests   # a request every 2 s (slower under load) over 16 s at least
    assert failed == 0, f"{failed} of {requests} requests to the steady model failed (longest outage {longest} s)"
    assert replicas_of(steady.client, steady.a["model_key"]) == before


@pytest.fixture(scope="module")
def steady(e2e_home, tmp_path_factory, repo_root):
    """A runs once for the whole module. Plain vLLM's answers with the test adapters (the LoRA
    reference) are computed while A starts: two cold starts at once on the 2 cores instead of
    one after the other."""
    home, env = e2e_home
    start_argusd(home, env)
    s = Steady(home, env, tmp_path_factory.mktemp("zd"), repo_root)
    assert s.ctl("init", "--user", "zd", "--name", "zd", "--email", "zd@argus.local").returncode == 0
    python = str(repo_root / ".venv-serve" / "bin" / "python")
    for name, seed in (("a1", 1), ("a1-v2", 2)):
        made = subprocess.run([python, "scripts/make_test_adapter.py", str(s.model_dir), str(s.adapters / name),
                               str(seed)], cwd=repo_root, capture_output=True, text=True)
        assert made.returncode == 0, made.stderr[-2000:]
    v2 = s.model_dir.parent / V2   # the rollout's new folder: the same weights, hard-linked
    if v2.is_symlink():            # left by a swap test interrupted in an earlier run on this home
        v2.unlink()
    if not v2.exists():
        shutil.copytree(s.model_dir, v2, copy_function=os.link)
    (s.adapters / "broken").mkdir()
    (s.adapters / "broken" / "adapter_config.json").write_text((s.adapters / "a1" / "adapter_config.json").read_text())
    (s.adapters / "broken" / "adapter_model.safetensors").write_bytes(b"not safetensors")
    s.eve.parent.mkdir(parents=True)
    shutil.copytree(s.adapters / "a1", s.eve)
    # Pushed just before A: a model vLLM cannot start (its test checks it failed alone). argus
    # refuses a max_model_len above the folder's own limit up front; with hf_overrides touching the
    # length it leaves the verdict to vLLM (core/folders.py), which refuses this one at start.
    (s.work / "bad.yaml").write_text(f"model_id: bad\nmodel_source: {SOURCE}\nengine_kwargs:\n"
                                     "  max_model_len: 1000000\n  hf_overrides:\n    max_position_embeddings: 8192\n")
    result = s.ctl("apply", "-f", str(s.work / "bad.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    reference = subprocess.Popen([python, "scripts/lora_reference.py", str(s.model_dir),
                                  f"{s.adapters / 'a1'},{s.adapters / 'a1-v2'}", str(LORA_TOKENS), LORA_PROMPT,
                                  LONG_PROMPT], cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env={**env, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"})
    try:
        applied = time.monotonic()
        result = s.apply("steady", f"model_id: steady\nmodel_source: {SOURCE}\nadapters:\n  max_rank: 8\n"
                                   "  max_loaded: 2\n")
        s.a_started_in = time.monotonic() - applied
        out, err = reference.communicate(timeout=900)
    finally:
        if reference.poll() is None:
            reference.kill()
    assert result.returncode == 0 and "zd/steady: RUNNING" in result.stdout, result.stdout + result.stderr
    assert reference.returncode == 0, err[-3000:]
    found = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    s.expected = {"base": found["base"][0], "adapter": found["adapter"][0],
                  "long": found["adapters"][0][1], "long-v2": found["adapters"][1][1]}
    assert s.expected["base"] != s.expected["adapter"] and s.expected["long"] != s.expected["long-v2"]
    s.a = s.status("steady")
    yield s
    if (s.serving_dir.is_symlink()):  # a swap test that failed before putting the folder back
        eve_model = Path(os.readlink(s.serving_dir))
        os.unlink(s.serving_dir)
        os.rename(eve_model, s.serving_dir)
    start_argusd(home, env)
    s.delete_if_there("bad", "tutor", "broken", "live", "moved", "churn", "steady")
    remove_foreign(s.client)


def test_the_front_end_speaks_ray_serve_llms_protocol(steady):
    check_front_end(steady.a["model_id"])


def test_as_first_deploy_is_logged_with_how_long_it_took_and_where_serve_started_its_replica(steady):
    """A's RUNNING event (its first deploy, in the fixture) says how long it took from argusd's
    apply to serving, split where Serve started its replica, from what Serve reports, and how
    that replica spent its start, from the line it wrote to its own log (read through Ray's log
    API); argusctl logs prints it."""
    lines = run_argusctl("logs", steady.a["model_id"], "-o", "json", env=steady.env).stdout.splitlines()
    events = [json.loads(line) for line in lines if line.strip()]
    running = next(e for e in events if e["event_type"] == "RUNNING" and e["payload"].get("generation") == 1)
    phases = running["payload"]
    # A vLLM replica cannot start in 5 s here; Serve builds and places it in well under a minute.
    assert phases["replica_start_s"] > 5 and 0 <= phases["placed_s"] < 60, phases
    assert abs(phases["placed_s"] + phases["replica_start_s"] - phases["deploy_s"]) <= 0.2, phases
    # The replica's own phases: its imports take seconds, vLLM's engine more; both fit in the
    # replica's start as argusd saw it (Serve's start time is the controller's clock, the replica's
    # phases its own: one machine here, so within a second).
    imports, engine = phases["replica_imports_s"], phases["replica_engine_s"]
    assert imports > 1 and engine > 5 and imports + engine <= phases["replica_start_s"] + 1, phases
    table = run_argusctl("logs", steady.a["model_id"], env=steady.env).stdout
    assert (f"serves, {phases['deploy_s']:g} s after it was sent to Ray Serve (Serve's build and placement "
            f"{phases['placed_s']:g} s, then the replica's start {phases['replica_start_s']:g} s: its process "
            f"and imports {imports:g} s, vLLM's engine {engine:g} s)") in table, table


def test_a_model_vllm_cannot_start_fails_alone_with_vllms_reason(steady):
    """Pushed just before A (in the fixture), valid for the spec policy, impossible for vLLM
    (SmolLM2 has 8192 positions): FAILED with Serve's message and left out of Serve's config,
    while A started next to it and serves; the delete converges."""
    try:
        deadline = time.monotonic() + 900
        while steady.status("bad")["state"] != "FAILED":
            assert time.monotonic() < deadline, steady.status("bad")
            time.sleep(3)
        bad = steady.status("bad")
        assert "max_model_len (1000000) is greater than" in bad["error_summary"], bad
        deadline = time.monotonic() + 120
        while f"LLMServer:{bad['model_key']}" in deployment_names(steady.client):  # left out after it failed
            assert time.monotonic() < deadline, "the FAILED model is still deployed"
            time.sleep(2)
        assert f"LLMServer:{steady.a['model_key']}" in deployment_names(steady.client)
        assert completion(steady.a["model_id"]) == steady.expected["base"]
        gone = steady.ctl("delete", "bad", "--wait", "--timeout", "300")
        assert gone.returncode == 0 and "zd/bad: DELETED" in gone.stdout, gone.stdout + gone.stderr
        assert listed_models() == [steady.a["model_id"]]
    finally:
        steady.delete_if_there("bad")


def test_another_model_wakes_from_zero_for_its_requests_goes_idle_is_suspended_and_deleted_and_a_never_notices(steady):
    """B, autoscaled with min_replicas 0, deploys without a replica (no cold start) while A
    answers a steady stream; N concurrent requests (plain and streaming) to B at zero are held
    while it wakes and all answer; B goes back to zero when idle; suspended it answers 503 and
    holds nothing; resumed it is back at zero; deleted it is gone. A never fails a request and
    keeps its replica throughout (issue 24: scaling another model to and from zero, suspending
    and deleting it disturb nothing)."""
    a = steady.a
    spec = (f"model_id: churn\nmodel_source: {SOURCE}\nautoscaling:\n  min_replicas: 0\n  max_replicas: 1\n"
            "  scale_down_delay_s: 10\n")
    try:
        with undisturbed(steady):
            applied = time.monotonic()
            result = steady.apply("churn", spec)
            assert result.returncode == 0 and "zd/churn: RUNNING" in result.stdout, result.stdout + result.stderr
            print(f"WAKE churn: apply --wait at zero replicas took {time.monotonic() - applied:.1f} s")
            b = steady.status("churn")
            assert not replicas_of(steady.client, b["model_key"])          # nothing started, no GPU held
            assert listed_models() == sorted([a["model_id"], b["model_id"]])
            answers = wake(b["model_id"], clients=4)
            assert [status for status, _, _ in answers] == [200] * 4, answers
            first = min(took for _, took, _ in answers)
            print(f"WAKE churn: {len(answers)} requests at zero -> first answer {first:.1f} s "
                  f"(A's apply --wait -> RUNNING in this run: {steady.a_started_in:.1f} s, beside the adapter "
                  "reference's own vLLM start)")
            # WOKE is the event of the first tick that sees B's replica running, which can come
            # just after the answers (a CI run asked once, before that tick).
            deadline = time.monotonic() + 60
            while '"WOKE"' not in (logs := run_argusctl("logs", b["model_id"], "-o", "json", env=steady.env).stdout):
                assert time.monotonic() < deadline, logs[-2000:]
                time.sleep(2)
            deadline = time.monotonic() + 240   # scale_down_delay_s 10 + Serve's look-back window
            while replicas_of(steady.client, b["model_key"]):
                assert time.monotonic() < deadline, "B did not go back to zero replicas"
                time.sleep(3)
            assert steady.status("churn")["state"] == "RUNNING"
            result = steady.ctl("suspend", "churn", "--wait")
            assert result.returncode == 0 and "zd/churn: SUSPENDED" in result.stdout, result.stdout + result.stderr
            status, body = post("chat/completions", {"model": b["model_id"], "max_tokens": 4,
                                                     "messages": [{"role": "user", "content": "Hi"}]})
            assert status == 503 and b"suspended by zd" in body, (status, body[:500])
            result = steady.ctl("resume", "churn", "--wait")
            assert result.returncode == 0 and "zd/churn: RUNNING" in result.stdout, result.stdout + result.stderr
            assert not replicas_of(steady.client, steady.status("churn")["model_key"])   # back at zero
            result = steady.ctl("delete", "churn", "--wait")
            assert result.returncode == 0, result.stdout + result.stderr
        assert listed_models() == [a["model_id"]]
    finally:
        steady.delete_if_there("churn")


def wake(model_id: str, clients: int) -> list[tuple[int, float, str]]:
    """`clients` requests at once (every other one streamed): (status, seconds to the answer's
    end, an excerpt) each."""
    import concurrent.futures

    def one(i: int) -> tuple[int, float, str]:
        started = time.monotonic()
        body = {"model": model_id, "max_tokens": 4, "stream": bool(i % 2),
                "messages": [{"role": "user", "content": "Hi"}]}
        status, text = post("chat/completions", body, timeout=600)   # a cold start on 2 busy cores
        ok_stream = not body["stream"] or text.rstrip().endswith(b"data: [DONE]")
        return (status if ok_stream else -status), time.monotonic() - started, text[:200].decode(errors="replace")

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(clients)))


def test_an_adapter_answers_as_plain_vllm_seconds_after_its_commit_and_never_disrupts_a(steady):
    expected, a = steady.expected, steady.a
    try:
        with undisturbed(steady):
            committed = time.monotonic()
            result = steady.apply("tutor", "model_id: tutor\nbase_model: steady\nmodel_source: $HOME/adapters/a1\n")
            assert result.returncode == 0, result.stdout + result.stderr
            tutor = steady.status("tutor")
            assert completion(tutor["model_id"]) == expected["adapter"]
            print(f"adapter: commit -> RUNNING -> first answer in {time.monotonic() - committed:.1f} s")
            assert completion(a["model_id"]) == expected["base"]
            cards = {m["id"]: m for m in json.loads(urllib.request.urlopen("http://127.0.0.1:8000/v1/models",
                                                                            timeout=30).read())["data"]}
            assert cards[tutor["model_id"]]["metadata"]["base_model"] == a["model_id"]
            # Changed weights (a new folder): the same id answers with them, no restart.
            result = steady.apply("tutor", "model_id: tutor\nbase_model: steady\n"
                                           "model_source: $HOME/adapters/a1-v2\n")
            assert result.returncode == 0, result.stdout + result.stderr
            assert completion(tutor["model_id"]) not in (expected["adapter"], expected["base"])
            result = steady.ctl("delete", "tutor", "--wait")
            assert result.returncode == 0, result.stdout + result.stderr
        assert listed_models() == [a["model_id"]]
    finally:
        steady.delete_if_there("tutor")


def test_an_adapter_folder_vllm_cannot_load_fails_with_vllms_reason_and_never_disrupts_a(steady):
    try:
        with undisturbed(steady):
            result = steady.apply("broken", "model_id: broken\nbase_model: steady\n"
                                            "model_source: $HOME/adapters/broken\n")
            assert result.returncode != 0 and steady.status("broken")["state"] == "FAILED", \
                result.stdout + result.stderr
            assert "Failed to load lora model" in steady.status("broken")["error_summary"], steady.status("broken")
            assert completion(steady.a["model_id"]) == steady.expected["base"]
            result = steady.ctl("delete", "broken", "--wait")
            assert result.returncode == 0, result.stdout + result.stderr
    finally:
        steady.delete_if_there("broken")


def test_new_weights_written_into_an_adapters_folder_answer_as_plain_vllm_with_them(steady):
    """The long-prefix prompt answers as plain vLLM does with the new weights (vLLM 0.32 keys
    prefix-cache blocks by LoRA name and path, 0.29 by name alone; the replica loads changed
    weights under a new name, from a copy of its own)."""
    adapters, expected = steady.adapters, steady.expected
    shutil.copytree(adapters / "a1", adapters / "live")
    try:
        with undisturbed(steady):
            result = steady.apply("live", "model_id: live\nbase_model: steady\nmodel_source: $HOME/adapters/live\n")
            assert result.returncode == 0, result.stdout + result.stderr
            live_id = steady.status("live")["model_id"]
            assert completion(live_id, LONG_PROMPT) == expected["long"]
            assert completion(live_id, LONG_PROMPT) == expected["long"]   # now from the prefix cache
            changed = time.monotonic()
            shutil.copyfile(adapters / "a1-v2" / "adapter_model.safetensors",
                            adapters / "live" / "adapter_model.safetensors")
            assert completion(live_id, LONG_PROMPT) == expected["long-v2"]
            print(f"adapter: new weights in the same folder answered in {time.monotonic() - changed:.1f} s")
            result = steady.ctl("delete", "live", "--wait")
            assert result.returncode == 0, result.stdout + result.stderr
    finally:
        steady.delete_if_there("live")


def test_an_adapter_folder_swapped_into_another_users_tree_is_refused_and_failed(steady):
    """The folder swapped for a symlink to another user's adapter, with argusd stopped so that
    the replica's own check answers: refused with the reason, nothing loaded; then argusd,
    back, FAILS it. A never fails a request meanwhile."""
    home, env, adapters, repo_root = steady.home, steady.env, steady.adapters, steady.repo_root
    shutil.copytree(adapters / "a1", adapters / "moved")
    try:
        with undisturbed(steady):
            result = steady.apply("moved", "model_id: moved\nbase_model: steady\n"
                                           "model_source: $HOME/adapters/moved\n")
            assert result.returncode == 0, result.stdout + result.stderr
            moved_id = steady.status("moved")["model_id"]
            assert completion(moved_id, LONG_PROMPT) == steady.expected["long"]
            assert subprocess.run(["scripts/argusd_up.sh", "stop"], cwd=repo_root, env=env).returncode == 0
            os.rename(adapters / "moved", adapters / "moved-old")
            os.symlink(steady.eve, adapters / "moved")
            code, body = post("completions", {"model": moved_id, "prompt": LONG_PROMPT, "max_tokens": 4})
            assert code != 200 and b"users/eve/adapters/a1 is in user 'eve'" in body, (code, body[:2000])
            print(f"adapter swapped into another user's tree: the replica answered {code}")
            start_argusd(home, env)
            deadline = time.monotonic() + 180   # a restarted argusd may first wait out a lease
            while steady.status("moved")["state"] != "FAILED":
                assert time.monotonic() < deadline, steady.status("moved")
                time.sleep(2)
            assert "users/eve/adapters/a1" in steady.status("moved")["error_summary"], steady.status("moved")
            result = steady.ctl("delete", "moved", "--wait")
            assert result.returncode == 0, result.stdout + result.stderr
        assert listed_models() == [steady.a["model_id"]]
    finally:
        start_argusd(home, env)
        steady.delete_if_there("moved")


def test_killing_one_of_the_two_front_end_replicas_fails_at_most_the_requests_it_held(steady):
    """kill -9 one of the front end's two replicas under a stream of requests from 3 clients."""
    client, model_id = steady.client, steady.a["model_id"]
    fronts = front_end_replicas(client)
    assert len(fronts) == 2, fronts
    probers = [Prober(model_id) for _ in range(3)]
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
    assert listed_models() == [model_id]


def test_killing_the_serve_controller_fails_nothing_and_keeps_as_replica(steady):
    """Serve restarts its controller; the replicas never stop serving and argus changes nothing."""
    client, a = steady.client, steady.a
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
    assert steady.status("steady")["state"] == "RUNNING", steady.status("steady")


def test_a_killed_replica_of_a_is_replaced_and_a_is_never_failed(steady):
    """Serve replaces A's own (only) replica; argus keeps A in the config, says DEPLOYING with the
    reason while Serve has no running replica of it (or RUNNING with the reason while one still
    counts as running), and it answers again. (The whole Ray head restarting under a running
    argusd: tests/e2e/test_quickstart_e2e.py.)"""
    client, a, status = steady.client, steady.a, steady.status
    (replica,) = replicas_of(client, a["model_key"])
    os.kill(replica[1], signal.SIGKILL)
    deadline = time.monotonic() + 600
    while True:   # one argusctl per poll: each costs CPU the replacement's cold start needs
        now = status("steady")
        assert now["state"] in ("RUNNING", "DEPLOYING"), now  # never FAILED
        replaced = replicas_of(client, a["model_key"])
        if replaced and replica not in replaced and now["state"] == "RUNNING" and chat_ok(a["model_id"]):
            break
        assert time.monotonic() < deadline, "the killed replica was not replaced"
        time.sleep(3)
    logs = run_argusctl("logs", a["model_id"], "-o", "json", env=steady.env).stdout
    assert '"REPLICAS_LOST"' in logs or '"DEGRADED"' in logs, logs[-2000:]


def test_argus_apps_removed_behind_its_back_are_applied_again_and_another_teams_app_is_left_alone(steady):
    """Another team deploys its own Serve app next to argus's; then someone removes argus's own
    apps (the front end and the lease) behind argusd's back, leaving A's model app: argusd applies
    them again (a new front end answers for A, on A's very same replica), and the other team's app
    keeps its very replica (checked once more after argus's last applies and deletes, at the end of
    the module). A model's own app removed as well (Serve has no replica of it: REPLICAS_LOST,
    redeployed, a cold start) is the same judge: a table in tests/unit/test_reconcile_plan.py
    (test_drift_is_repaired, test_a_running_model_serve_does_not_run_is_not_running) and, on the
    real stack, the whole Ray head restarted under argusd in tests/e2e/test_quickstart_e2e.py."""
    from daemon.replicas.names import FRONTEND_APP, LEASE_APP
    client, a = steady.client, steady.a
    steady.team_b_pid = deploy_foreign(client)
    fronts, replicas = front_end_replicas(client), replicas_of(client, a["model_key"])
    apps = client.get_applications()["applications"]
    assert fronts and replicas and {FRONTEND_APP, LEASE_APP} <= set(apps), sorted(apps)
    kept = [app["deployed_app_config"] for name, app in apps.items()   # A's (in whichever slot) and team-b's
            if name not in (FRONTEND_APP, LEASE_APP) and app.get("deployed_app_config")]
    client.put_config({"proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": 8000},
                       "applications": kept})
    deadline = time.monotonic() + 300
    while True:
        apps = client.get_applications().get("applications") or {}
        lease = (apps.get(LEASE_APP) or {}).get("deployed_app_config")
        new_fronts = front_end_replicas(client)
        if lease and new_fronts and not new_fronts & fronts and chat_ok_quietly(a["model_id"]):
            break   # applied again: a front end of new replicas routes to A, and the lease is back
        assert steady.status("steady")["state"] == "RUNNING", steady.status("steady")   # A's replica serves on
        assert time.monotonic() < deadline, sorted(apps)
        time.sleep(2)
    assert replicas_of(client, a["model_key"]) == replicas   # no cold start: A kept its replica
    assert steady.status("steady")["model_key"] == a["model_key"]
    assert foreign_pid() == steady.team_b_pid


STEADY = f"model_id: steady\nmodel_source: {SOURCE}\nadapters:\n  max_rank: 8\n  max_loaded: 2\n"
# The rollout's new weights: the same model in a new folder (hard links), so the answers stay
# the plain-vLLM reference's and the new generation provably reads the new path.
V2 = "SmolLM2-135M-Instruct-v2"
ROLLED = (STEADY.replace("max_loaded: 2", "max_loaded: 3").replace(SOURCE, f"{SOURCE}-v2")
          + "engine_kwargs:\n  max_num_seqs: 8\n")


def rolling(steady: Steady, *extra: str):
    """While the block runs, A (and the models in `extra`) answer plain and streaming requests:
    none fails, none is a 404. Yields the time the block started (for change->switched)."""
    return no_failed_requests(steady.a["model_id"], *extra)


def a_apps(client, model_key: str) -> list[str]:
    """The Serve apps that hold A's deployment (two while a generation starts beside the other)."""
    return sorted(name for name, app in (client.get_applications().get("applications") or {}).items()
                  if f"LLMServer:{model_key}" in (app.get("deployments") or {}))


def settle_to_one_app(steady: Steady) -> list[str]:
    deadline = time.monotonic() + 120
    while len(apps := a_apps(steady.client, steady.a["model_key"])) != 1:   # the old generation drained
        assert time.monotonic() < deadline, apps
        time.sleep(2)
    return apps


def switched_after(steady: Steady, since_wall: float) -> float:
    """Seconds from the change's commit to the newest SWITCHED event."""
    out = run_argusctl("logs", steady.a["model_id"], "-o", "json", env=steady.env).stdout
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    switched = [e for e in events if e["event_type"] == "SWITCHED"]
    assert switched, events[-5:]
    from daemon.core.records import parse_iso
    return parse_iso(switched[-1]["time"]).timestamp() - since_wall


def test_new_weights_engine_and_adapter_settings_roll_out_beside_a_and_survive_argusd_killed_mid_rollout(steady):
    """A rollout of A itself, by one commit that changes its weights (a new folder), its
    engine_kwargs and its LoRA settings (one new generation, one cold start, for the three kinds
    of change): the new generation starts in the other app, reading the new folder; argusd is
    killed (-9) while it starts and started again, and completes the rollout from the store and
    what Serve runs (issue 23.5); A's adapter is loaded on the new generation and answers its
    probe before the switch, A's and the adapter's requests move to it, and the old one drains;
    plain and streaming requests on A and on the adapter never fail, none is a 404."""
    adapter = steady.adapters / "a1"
    try:
        result = steady.apply("tutor", f"model_id: tutor\nbase_model: steady\nmodel_source: {adapter}\n")
        assert result.returncode == 0 and "zd/tutor: RUNNING" in result.stdout, result.stdout + result.stderr
        tutor = steady.status("tutor")["model_id"]
        before = a_apps(steady.client, steady.a["model_key"])
        wall = time.time()
        with rolling(steady, tutor):
            (steady.work / "steady.yaml").write_text(ROLLED)
            result = steady.ctl("apply", "-f", str(steady.work / "steady.yaml"))
            assert result.returncode == 0, result.stdout + result.stderr
            deadline = time.monotonic() + 300
            while len(a_apps(steady.client, steady.a["model_key"])) < 2:   # the new generation is starting
                assert time.monotonic() < deadline, a_apps(steady.client, steady.a["model_key"])
                time.sleep(1)
            argusd = int((steady.home / "state" / "argusd.pid").read_text())
            killed = time.time()
            os.kill(argusd, signal.SIGKILL)
            gone_by = time.monotonic() + 30
            while alive(argusd):   # reaped, so argusd_up.sh does not take it for a running argusd
                assert time.monotonic() < gone_by, f"argusd {argusd} still there after kill -9"
                time.sleep(0.2)
            print("ROLLOUT: argusd killed while the new generation starts")
            start_argusd(steady.home, steady.env)
            assert int((steady.home / "state" / "argusd.pid").read_text()) != argusd
            deadline = time.monotonic() + 900
            while (a := steady.status("steady"))["applied_generation"] != a["generation"] or a["state"] != "RUNNING":
                assert a["state"] in ("RUNNING", "DEPLOYING"), a   # never FAILED: the serving generation serves on
                assert time.monotonic() < deadline, a
                time.sleep(3)
            after = settle_to_one_app(steady)
        assert switched_after(steady, killed) > 0, "the switch came before argusd was killed: nothing was resumed"
        print(f"ROLLOUT weights + engine_kwargs + adapters: change->switched {switched_after(steady, wall):.1f} s")
        assert after != before
        a = steady.status("steady")
        assert a["applied_generation"] == a["generation"] and a["state"] == "RUNNING", a
        assert a["resolved"]["model_source"].endswith(f"/hf/{V2}"), a["resolved"]
        assert deployment_source(steady.client, a["model_key"]).endswith(f"/hf/{V2}")   # what Serve runs
        assert completion(a["model_id"]) == steady.expected["base"]
        assert completion(tutor) == steady.expected["adapter"]
        assert steady.status("tutor")["state"] == "RUNNING"
    finally:
        steady.delete_if_there("tutor")


def test_a_generation_of_a_that_cannot_start_is_rolled_back_and_a_fix_rolls_out(steady):
    """A change vLLM refuses at start (the fixture's `bad` engine arguments): the new generation
    never takes a request, is removed, and A is FAILED with the reason and the generation that
    serves on; the commit that fixes it goes out (here: back to what serves, in place)."""
    serving = steady.status("steady")["generation"]
    with rolling(steady):
        result = steady.apply("steady", ROLLED + "  max_model_len: 1000000\n"
                              "  hf_overrides:\n    max_position_embeddings: 8192\n")
        assert result.returncode != 0 and "zd/steady: FAILED" in result.stdout, result.stdout + result.stderr
        a = steady.status("steady")
        assert a["error_summary"].startswith(f"generation {serving + 1} failed: "), a
        assert "max_model_len (1000000) is greater than" in a["error_summary"], a
        assert a["error_summary"].endswith(f"; serving generation {serving}"), a
        settle_to_one_app(steady)                                         # the failed one's replicas went
        shown = run_argusctl("status", env=steady.env).stdout
        assert f"generation {serving + 1} failed" in shown, shown
        result = steady.apply("steady", ROLLED)
        assert result.returncode == 0 and "zd/steady: RUNNING" in result.stdout, result.stdout + result.stderr
    a = steady.status("steady")
    assert a["applied_generation"] == a["generation"] == serving + 2
    assert completion(a["model_id"]) == steady.expected["base"]


def test_as_model_folder_swapped_into_another_users_tree_stops_its_next_replica_and_fails_a(steady):
    """Last (it ends A): with argusd stopped, so that only the replica decides, A's next replica
    refuses to start with the reason and starts no engine; argusd, back, FAILS A with it."""
    home, env, client, a = steady.home, steady.env, steady.client, steady.a
    model_dir = Path(steady.status("steady")["resolved"]["model_source"])   # the folder A's generation reads
    steady.serving_dir = model_dir   # for the fixture's clean-up if this test stops half-way
    assert subprocess.run(["scripts/argusd_up.sh", "stop"], cwd=steady.repo_root, env=env).returncode == 0
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
        start_argusd(home, env)
        deadline = time.monotonic() + 180
        while steady.status("steady")["state"] != "FAILED":
            assert time.monotonic() < deadline, steady.status("steady")
            time.sleep(2)
        assert str(eve_model) in steady.status("steady")["error_summary"], steady.status("steady")
    finally:
        os.unlink(model_dir)
        os.rename(eve_model, model_dir)
        start_argusd(home, env)
    gone = steady.ctl("delete", "steady", "--wait")
    assert gone.returncode == 0 and "zd/steady: DELETED" in gone.stdout, gone.stdout + gone.stderr
    listed = json.loads(run_argusctl("status", "-o", "json", "--user", "zd", env=env).stdout)["models"]
    assert listed == [], listed   # every delete converged


def test_another_teams_app_kept_its_replica_through_every_apply_repair_and_delete(steady):
    assert steady.team_b_pid is not None, "the drift test did not deploy the other team's app"
    team_b = steady.client.get_applications()["applications"]["team-b"]
    assert team_b["status"] == "RUNNING" and team_b["deployed_app_config"]["import_path"] == FOREIGN["import_path"]
    assert foreign_pid() == steady.team_b_pid


# Another team's app: any importable Serve app will do; this one ships in the Ray wheel and
# answers with its replica's pid, so a restart would show.
FOREIGN = {"name": "team-b", "route_prefix": "/team-b", "import_path": "ray.serve._private.test_utils:get_pid_entrypoint"}


def foreign_pid() -> int:
    with urllib.request.urlopen("http://127.0.0.1:8000/team-b", timeout=30) as response:
        return int(response.read())


def deploy_foreign(client: ServeClient) -> int:
    """PUT the foreign app next to whatever runs (as its team would, declaratively). Serve's
    REST API has no compare-and-set: a PUT that lands between argusd's read and its own write
    is lost, so the team puts it again, as a real team would."""
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


def remove_foreign(client: ServeClient) -> None:
    """Leave the cluster as the next test expects it: without the other team's app."""
    apps = client.get_applications().get("applications") or {}
    if "team-b" in apps:
        client.put_config({"proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": 8000},
                           "applications": [app["deployed_app_config"] for name, app in apps.items()
                                            if name != "team-b" and app.get("deployed_app_config")]})


def model_app(client, model_key: str) -> dict:
    """Serve's status of the app that holds the model's deployment, in whichever of its two
    slots it is ({} when none does)."""
    for app in (client.get_applications().get("applications") or {}).values():
        if f"LLMServer:{model_key}" in (app.get("deployments") or {}):
            return app
    return {}


def deployment_source(client, model_key: str) -> str:
    """The model folder in the Serve config of the app that holds the model's deployment."""
    return model_app(client, model_key)["deployed_app_config"]["args"]["llm_config"]["model_loading_config"][
        "model_source"]


def deployment_message(client, model_key: str) -> str:
    """Serve's message of the model's deployment."""
    return ((model_app(client, model_key).get("deployments") or {}).get(f"LLMServer:{model_key}") or {}).get(
        "message") or ""


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

#!/usr/bin/env python3
"""Wake against apply (issue 24): ONE model, nothing else starting, in one run.

1. `argusctl apply --wait` of a fixed one-replica spec -> the first token of a streamed chat
   request (timed from the start of the apply: commit, admission, a vLLM cold start);
2. the same spec changed in place to `autoscaling: {min_replicas: 0, max_replicas: 1,
   scale_down_delay_s: N}` (no restart: the same replica keeps serving), left idle until Serve
   took its replica away and `argusctl status` says "idle", then one request -> its first
   token (the wake), `--wakes` times;
3. idle again, then `--clients` requests at once (every other one streamed): all must answer.

Before the apply, Serve and argus's front end are already up (as on any running argus): a
model at zero replicas is applied and deleted first, which starts Serve without starting vLLM.

Real Ray Serve + vLLM on CPU: needs .venv-serve, the small model (scripts/prepare_model.py,
or ARGUS_BENCH_MODEL=<a prepared folder>) and a Ray head (scripts/ray_up.sh). Run it alone,
under the machine's lock: flock /tmp/argus-vllm.lock .venv/bin/python bench/wake_bench.py.
About 8 min on 2 cores. Results: docs/benchmarks.md, "Scale to zero".

Usage: .venv/bin/python bench/wake_bench.py [--wakes 2] [--clients 4] [--delay 10] [--out r.json]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench_home import argus_home  # noqa: E402

from daemon.serving.client import ServeClient  # noqa: E402
from helpers import replicas_of  # noqa: E402

SOURCE = "$HOME/common/hf/SmolLM2-135M-Instruct"
ENDPOINT = "http://127.0.0.1:8000/v1"
FIXED = f"model_id: w\nmodel_source: {SOURCE}\n"


def autoscaled(delay_s: int) -> str:
    return FIXED + f"autoscaling:\n  min_replicas: 0\n  max_replicas: 1\n  scale_down_delay_s: {delay_s}\n"


def first_token(model_id: str, stream: bool = True, timeout_s: float = 900) -> tuple[int, float, float]:
    """One chat request: (HTTP status, seconds to its first token, seconds to its end). Streamed:
    the first token is the first chunk with content; plain: the whole answer (max_tokens 1)."""
    body = json.dumps({"model": model_id, "max_tokens": 8 if stream else 1, "temperature": 0, "stream": stream,
                       "messages": [{"role": "user", "content": "Hi"}]}).encode()
    request = urllib.request.Request(f"{ENDPOINT}/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    started = time.monotonic()
    first = None
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            if not stream:
                ok = bool(json.loads(response.read())["choices"])
                took = time.monotonic() - started
                return (response.status if ok else -response.status), took, took
            done = False
            for line in response:
                line = line.strip()
                if line == b"data: [DONE]":
                    done = True
                elif line.startswith(b"data: ") and first is None:
                    delta = json.loads(line[6:])["choices"][0].get("delta") or {}
                    if delta.get("content"):
                        first = time.monotonic() - started
            end = time.monotonic() - started
            return (response.status if done and first is not None else -response.status), first or end, end
    except urllib.error.HTTPError as exc:
        took = time.monotonic() - started
        return exc.code, took, took


def wait_until(what: str, check, timeout_s: float, every_s: float = 2.0) -> float:
    """Seconds until check() is true; SystemExit after timeout_s."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise SystemExit(f"wake_bench: {what} not within {timeout_s:.0f} s")
        time.sleep(every_s)
    return time.monotonic() - started


def run(tmp: Path, wakes: int, clients: int, delay_s: int) -> dict:
    home = tmp / "home"
    env, ctl = argus_home(home)
    status = lambda: json.loads(ctl("status", "w", "-o", "json").stdout)["model"]  # noqa: E731
    client = ServeClient("http://127.0.0.1:8265")
    spec = home / "w.yaml"
    result: dict = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": f"{os.cpu_count()} cores",
                    "scale_down_delay_s": delay_s, "wakes": []}
    print(f"home: {home} (argusd's log: {home / 'state' / 'argusd.log'})", flush=True)

    def apply(text: str) -> float:
        spec.write_text(text)
        started = time.monotonic()
        done = ctl("apply", "-f", str(spec), "--wait")
        if done.returncode != 0:
            raise SystemExit(f"wake_bench: apply failed:\n{done.stdout}{done.stderr}")
        return time.monotonic() - started

    def idle(key: str) -> float:
        """Seconds until Serve runs no replica of the model and status says idle."""
        return wait_until("idle at zero replicas",
                          lambda: not replicas_of(client, key) and status()["replicas"]["why"] == "idle", 600)

    subprocess.run([str(ROOT / "scripts/argusd_up.sh")], env=env, check=True, cwd=ROOT)
    try:
        assert ctl("init", "--user", "bench", "--name", "bench", "--email", "bench@argus.local").returncode == 0
        # Serve and the front end up first, without a vLLM start: a model at zero, then gone.
        result["serve_up_s"] = round(apply(autoscaled(delay_s)), 1)
        gone = ctl("delete", "w", "--wait")
        assert gone.returncode == 0, gone.stdout + gone.stderr
        time.sleep(5)
        print(f"Serve and the front end up (a model at zero applied and deleted): {result['serve_up_s']} s",
              flush=True)

        started = time.monotonic()
        result["apply_wait_s"] = round(apply(FIXED), 1)
        model = status()
        code, ttft, _ = first_token(model["model_id"])
        assert code == 200, code
        result["apply_first_token_s"] = round(time.monotonic() - started, 1)
        result["apply_request_ttft_s"] = round(ttft, 2)
        print(f"(a) apply --wait of a fixed replica: RUNNING after {result['apply_wait_s']} s, first token "
              f"{result['apply_first_token_s']} s after the apply began", flush=True)

        before = replicas_of(client, model["model_key"])
        result["to_autoscaled_s"] = round(apply(autoscaled(delay_s)), 1)
        result["to_autoscaled_restarted"] = bool(before - replicas_of(client, model["model_key"]))
        print(f"in place to autoscaling 0-1: {result['to_autoscaled_s']} s, replica restarted: "
              f"{result['to_autoscaled_restarted']}", flush=True)

        for n in range(wakes):
            went_idle = idle(model["model_key"])
            time.sleep(2)
            earlier = status()["replicas"]["last_wake"]
            code, ttft, end = first_token(model["model_id"])
            assert code == 200, code
            # argusd records the wake (WOKE, with its duration) on its next look at Serve.
            wait_until("argusd recording the wake", lambda: status()["replicas"]["last_wake"] != earlier, 120)
            took = status()["replicas"]["last_wake"]
            row = {"idle_after_s": round(went_idle, 1), "first_token_s": round(ttft, 1), "answer_s": round(end, 1),
                   "argus_wake_s": took and took.get("took_s")}
            result["wakes"].append(row)
            print(f"(b) wake {n + 1}: idle at zero after {row['idle_after_s']} s of waiting; one request -> first "
                  f"token {row['first_token_s']} s (argus's own wake figure: {row['argus_wake_s']} s)", flush=True)

        if clients:
            idle(model["model_key"])
            time.sleep(2)
            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                answers = list(pool.map(lambda i: first_token(model["model_id"], stream=bool(i % 2)), range(clients)))
            result["concurrent"] = {"clients": clients, "answered": sum(code == 200 for code, _, _ in answers),
                                    "statuses": [code for code, _, _ in answers],
                                    "first_token_s": round(min(t for _, t, _ in answers), 1),
                                    "last_answer_s": round(max(e for _, _, e in answers), 1)}
            print(f"(c) {clients} requests at once at zero: {result['concurrent']}", flush=True)
        ctl("delete", "w", "--wait")
    finally:
        subprocess.run([str(ROOT / "scripts/argusd_up.sh"), "stop"], env=env, cwd=ROOT)
    return result


def table(r: dict) -> str:
    lines = ["| step (one model, nothing else starting) | time |", "|---|---|",
             f"| (a) `apply --wait` of a fixed one-replica spec -> RUNNING | {r['apply_wait_s']} s |",
             f"| (a) `apply --wait` begun -> first token | **{r['apply_first_token_s']} s** |",
             f"| in place to `autoscaling` 0-1 -> RUNNING (replica restarted: "
             f"{'yes' if r['to_autoscaled_restarted'] else 'no'}) | {r['to_autoscaled_s']} s |"]
    for n, w in enumerate(r["wakes"], 1):
        lines.append(f"| (b) wake {n}: one request at zero -> first token (idle reached after {w['idle_after_s']} s; "
                     f"argus's wake figure {w['argus_wake_s']} s) | **{w['first_token_s']} s** |")
    c = r.get("concurrent")
    if c:
        lines.append(f"| (c) {c['clients']} requests at once at zero: {c['answered']} of {c['clients']} answered "
                     f"-> first token / last answer | {c['first_token_s']} s / {c['last_answer_s']} s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wakes", type=int, default=2, help="single-request wakes, one after the other")
    parser.add_argument("--clients", type=int, default=4, help="requests at once to the model at zero (0: none)")
    parser.add_argument("--delay", type=int, default=10, help="autoscaling.scale_down_delay_s")
    parser.add_argument("--out", type=Path, help="write the result JSON here")
    options = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="argus-wake-"))   # kept: argusd's log is in it
    result = run(tmp, options.wakes, options.clients, options.delay)
    print(json.dumps(result))
    print(table(result))
    if options.out:
        options.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

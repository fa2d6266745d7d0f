#!/usr/bin/env python3
"""LoRA adapter benchmark: commit -> first answer for an adapter on a running base model,
side by side with deploying the same weights merged into a full model; and the base model's
requests while adapters come and go (failed, restarts).

Real Ray Serve + vLLM on CPU: needs .venv-serve, the small model and a Ray head
(scripts/setup_serving.sh, scripts/prepare_model.py, scripts/ray_up.sh). ~8 min.

Usage: .venv/bin/python bench/adapter_bench.py [--adapters 5]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from daemon.serving.client import ServeClient  # noqa: E402
from helpers import Prober, replicas_of  # noqa: E402

SOURCE = "$HOME/common/hf/SmolLM2-135M-Instruct"
SERVING_PYTHON = str(ROOT / ".venv-serve" / "bin" / "python")


def first_answer(model_id: str, deadline_s: float = 900) -> float:
    """Seconds until the endpoint answers a completion by this id."""
    body = json.dumps({"model": model_id, "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}).encode()
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        try:
            request = urllib.request.Request("http://127.0.0.1:8000/v1/completions", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=120) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(model_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapters", type=int, default=5)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="argus-adapter-bench-"))
    env = dict(os.environ, ARGUS_HOME=str(home), ARGUS_CONFIG=str(ROOT / "configs" / "local.yaml"))
    model_dir = home / "private" / "hf" / "SmolLM2-135M-Instruct"
    prepared = Path(os.environ.get("ARGUS_BENCH_MODEL", Path.home() / ".argus/private/hf/SmolLM2-135M-Instruct"))
    if prepared.is_dir():  # a copy, not a symlink: argus refuses paths that escape the root
        shutil.copytree(prepared, model_dir)
    else:
        subprocess.run([SERVING_PYTHON, "scripts/prepare_model.py", "--dest", str(model_dir)], cwd=ROOT, check=True)
    adapters = home / "private" / "users" / "bench" / "adapters"
    for i in range(args.adapters):
        subprocess.run([SERVING_PYTHON, "scripts/make_test_adapter.py", str(model_dir), str(adapters / f"a{i}"), str(i)],
                       cwd=ROOT, check=True, capture_output=True)
    merged = home / "private" / "users" / "bench" / "merged"
    subprocess.run([SERVING_PYTHON, "scripts/make_test_adapter.py", "--merge", str(model_dir), str(adapters / "a0"),
                    str(merged)], cwd=ROOT, check=True, capture_output=True)

    def ctl(*a: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(ROOT / ".venv/bin/argusctl"), *a], env=env, capture_output=True, text=True,
                              timeout=1800)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    status = lambda name: json.loads(ctl("status", name, "-o", "json").stdout)["model"]  # noqa: E731
    subprocess.run([str(ROOT / "scripts/argusd_up.sh")], env=env, check=True, cwd=ROOT)
    client = ServeClient("http://127.0.0.1:8265")
    try:
        ctl("init", "--user", "bench", "--name", "bench", "--email", "bench@argus.local")
        base_spec, spec = home / "base.yaml", home / "spec.yaml"
        base_spec.write_text(f"model_id: base\nmodel_source: {SOURCE}\nadapters:\n  max_rank: 8\n  max_loaded: 2\n")
        ctl("apply", "-f", str(base_spec), "--wait")
        base = status("base")
        before = replicas_of(client, base["model_key"])
        prober = Prober(base["model_id"])
        prober.start()
        time.sleep(3)
        started = time.monotonic()
        adapter_s = []
        for i in range(args.adapters):
            spec.write_text(f"model_id: tuned{i}\nbase_model: base\nmodel_source: $HOME/adapters/a{i}\n")
            committed = time.monotonic()
            ctl("apply", "-f", str(spec))   # the commit; then ask until it answers
            model_id = json.loads(ctl("status", f"tuned{i}", "-o", "json").stdout)["model"]["model_id"]
            first_answer(model_id)
            adapter_s.append(time.monotonic() - committed)
            ctl("delete", f"tuned{i}", "--wait")
        time.sleep(3)
        prober.stop.set()
        prober.join(timeout=70)
        requests, failed, longest = prober.window(started, time.monotonic())
        restarted = replicas_of(client, base["model_key"]) != before

        spec.write_text("model_id: merged\nmodel_source: $HOME/merged\n")
        committed = time.monotonic()
        ctl("apply", "-f", str(spec))
        model_id = json.loads(ctl("status", "merged", "-o", "json").stdout)["model"]["model_id"]
        first_answer(model_id)
        merged_s = time.monotonic() - committed
        ctl("delete", "merged", "--wait")
        ctl("delete", "base", "--wait")
    finally:
        subprocess.run([str(ROOT / "scripts/argusd_up.sh"), "stop"], env=env, cwd=ROOT)
    result = {"adapter_commit_to_first_answer_s": [round(s, 2) for s in adapter_s],
              "adapter_p50_s": round(statistics.median(adapter_s), 2),
              "merged_model_commit_to_first_answer_s": round(merged_s, 1),
              "base_requests_during_adapter_changes": requests, "base_failed": failed,
              "base_longest_gap_s": longest, "base_replica_restarted": restarted}
    print(json.dumps(result))
    print(f"\n| | commit -> first answer |\n|---|---|\n"
          f"| adapter on a running base (p50 of {len(adapter_s)}) | {result['adapter_p50_s']} s |\n"
          f"| the same weights merged into a full model | {result['merged_model_commit_to_first_answer_s']} s |\n\n"
          f"Base model during {len(adapter_s)} adapter adds and deletes: {requests} requests, {failed} failed, "
          f"replica restarted: {restarted}.")


if __name__ == "__main__":
    main()

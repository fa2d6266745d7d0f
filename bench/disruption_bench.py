#!/usr/bin/env python3
"""Zero-disruption benchmark: while model A answers a steady stream of chat requests,
model B is added, its engine_kwargs edited, scaled to 2 and deleted. For each change: how
many of A's replicas were restarted (replica id or pid changed) and how many of A's
requests failed, with the longest time A could not answer.

Real Ray Serve + vLLM on CPU: needs .venv-serve, the small model and a Ray head
(scripts/setup_serving.sh, scripts/prepare_model.py, scripts/ray_up.sh). ~15 min.

Usage: .venv/bin/python bench/disruption_bench.py
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench_home import argus_home  # noqa: E402

from daemon.serving.client import ServeClient  # noqa: E402
from helpers import Prober, replicas_of  # noqa: E402

SOURCE = "$HOME/common/hf/SmolLM2-135M-Instruct"


def run(tmp: Path) -> list[dict]:
    home = tmp / "bench"
    env, ctl = argus_home(home)
    subprocess.run([str(ROOT / "scripts/argusd_up.sh")], env=env, check=True, cwd=ROOT)
    client = ServeClient("http://127.0.0.1:8265")
    rows = []
    try:
        assert ctl("init", "--user", "bench", "--name", "bench", "--email", "bench@argus.local").returncode == 0
        spec_a, spec_b = home / "a.yaml", home / "b.yaml"
        spec_a.write_text(f"model_id: a\nmodel_source: {SOURCE}\n")
        result = ctl("apply", "-f", str(spec_a), "--wait")
        assert result.returncode == 0, result.stdout + result.stderr
        status = json.loads(ctl("status", "a", "-o", "json").stdout)["model"]
        prober = Prober(status["model_id"])
        prober.start()
        time.sleep(5)
        steps = [
            ("add a model", lambda: (spec_b.write_text(f"model_id: b\nmodel_source: {SOURCE}\n"),
                                     ctl("apply", "-f", str(spec_b), "--wait"))[1]),
            ("edit its engine_kwargs", lambda: (spec_b.write_text(f"model_id: b\nmodel_source: {SOURCE}\n"
                                                                  "engine_kwargs:\n  max_model_len: 1024\n"),
                                               ctl("apply", "-f", str(spec_b), "--wait"))[1]),
            ("scale it to 2", lambda: ctl("scale", "b", "--replicas", "2", "--wait")),
            ("delete it", lambda: ctl("delete", "b", "--wait")),
        ]
        for name, step in steps:
            before = replicas_of(client, status["model_key"])
            started = time.monotonic()
            result = step()
            time.sleep(5)  # let any restart of A show
            ended = time.monotonic()
            # A restarted by the change comes back with other replica ids: wait for it to be whole.
            deadline = time.monotonic() + 600
            while len(replicas_of(client, status["model_key"])) < len(before) and time.monotonic() < deadline:
                time.sleep(2)
            after = replicas_of(client, status["model_key"])
            requests, failed, longest = prober.window(started, max(ended, time.monotonic()))
            rows.append({"change": name, "ok": result.returncode == 0,
                         "seconds": round(ended - started), "other_replicas_restarted": len(before - after),
                         "requests_to_other": requests, "failed": failed, "longest_outage_s": round(longest, 1)})
            print(json.dumps(rows[-1]), flush=True)
        prober.stop.set()
        prober.join(timeout=70)
        ctl("delete", "a", "--wait")
    finally:
        subprocess.run([str(ROOT / "scripts/argusd_up.sh"), "stop"], env=env, cwd=ROOT)
        client.put_config({"applications": []})
        time.sleep(10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="argus-disruption-") as name:
        rows = run(Path(name))
    print("\n| change to model B | took | A's replicas restarted | requests to A | failed | "
          "longest outage of A |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['change']}{'' if r['ok'] else ' (FAILED)'} | {r['seconds']} s | "
              f"{r['other_replicas_restarted']} | {r['requests_to_other']} | {r['failed']} | "
              f"{r['longest_outage_s']} s |")


if __name__ == "__main__":
    main()

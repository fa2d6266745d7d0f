#!/usr/bin/env python3
"""Rollout benchmark: while model A answers plain and streaming chat requests (one after the
other, each), A itself is changed: an engine_kwargs edit with the default `surge`, then the
same kind of edit with `rollout: {strategy: recreate}` (the in-place replace argus did before
rollouts); with --all also `adapters:` enabled and a generation vLLM refuses at start (rolled
back), both surge, between those two. For
each change: requests to A and how many failed (and how many of those were 404s), the longest
time A could not answer, and change -> settled seconds (`argusctl apply --wait`: switched,
or FAILED for the rollback).

Real Ray Serve + vLLM on CPU: needs .venv-serve, the small model and a Ray head
(scripts/setup_serving.sh, scripts/prepare_model.py or ARGUS_BENCH_MODEL=<a prepared folder>,
scripts/ray_up.sh); run it alone, under the machine's lock (flock /tmp/argus-vllm.lock ...).
About 8 min on 2 cores (--all: ~15). Results: docs/benchmarks.md, "Rollouts".

Usage: .venv/bin/python bench/rollout_bench.py [--all]
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

from helpers import Prober  # noqa: E402

SOURCE = "$HOME/common/hf/SmolLM2-135M-Instruct"
BASE = f"model_id: a\nmodel_source: {SOURCE}\n"
SURGE_EDIT = ("surge", "edit engine_kwargs", BASE + "engine_kwargs:\n  max_num_seqs: 8\n")
MORE = [   # --all
    ("surge", "enable adapters", BASE + "engine_kwargs:\n  max_num_seqs: 8\nadapters:\n  max_rank: 8\n"),
    ("surge", "a generation vLLM refuses (rolled back)",
     BASE + "engine_kwargs:\n  max_model_len: 1000000\n  hf_overrides:\n    max_position_embeddings: 8192\n"),
]
RECREATE_EDIT = ("recreate", "edit engine_kwargs",
                 BASE + "engine_kwargs:\n  max_num_seqs: 4\nrollout:\n  strategy: recreate\n")


def run(tmp: Path, steps: list[tuple[str, str, str]]) -> list[dict]:
    home = tmp / "bench"
    env, ctl = argus_home(home)
    subprocess.run([str(ROOT / "scripts/argusd_up.sh")], env=env, check=True, cwd=ROOT)
    rows = []
    spec = home / "a.yaml"
    try:
        assert ctl("init", "--user", "bench", "--name", "bench", "--email", "bench@argus.local").returncode == 0
        spec.write_text(BASE)
        result = ctl("apply", "-f", str(spec), "--wait")
        assert result.returncode == 0, result.stdout + result.stderr
        model_id = json.loads(ctl("status", "a", "-o", "json").stdout)["model"]["model_id"]
        probers = [Prober(model_id), Prober(model_id, stream=True)]
        for prober in probers:
            prober.start()
        time.sleep(5)
        for strategy, name, text in steps:
            started = time.monotonic()
            spec.write_text(text)
            result = ctl("apply", "-f", str(spec), "--wait")
            settled = time.monotonic()
            time.sleep(10)   # the old generation drains; requests keep flowing
            ended = time.monotonic()
            windows = [p.window(started, ended) for p in probers]
            errors = [e for p in probers for e in p.errors]
            # apply --wait's own line for the model ("bench/a: RUNNING"), not its hints after it.
            outcome = [line for line in result.stdout.splitlines() if line.startswith("bench/a: ")][-1:]
            rows.append({"strategy": strategy, "change": name, "outcome": outcome,
                         "seconds": round(settled - started), "requests": sum(w[0] for w in windows),
                         "failed": sum(w[1] for w in windows), "404s": sum(e.startswith("404") for e in errors),
                         "503s": sum(e.startswith("503") for e in errors),
                         "longest_outage_s": round(max(w[2] for w in windows), 1),
                         # when clients were first refused, from the change: before or after the
                         # old generation stopped (compare with Serve's controller log)
                         "first_failure_after_s": min((round(b - started, 1) for p in probers
                                                       for b, _, ok in p.results if not ok and b >= started),
                                                      default=None)})
            for prober in probers:
                prober.errors.clear()
            print(json.dumps(rows[-1]), flush=True)
        for prober in probers:
            prober.stop.set()
            prober.join(timeout=70)
        ctl("delete", "a", "--wait")
    finally:
        subprocess.run([str(ROOT / "scripts/argusd_up.sh"), "stop"], env=env, cwd=ROOT)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| strategy | change to A | change -> settled | requests to A | failed | of which 404 / 503 | "
             "longest outage | first failure after |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        first = "-" if r["first_failure_after_s"] is None else f"{r['first_failure_after_s']} s"
        lines.append(f"| {r['strategy']} | {r['change']} ({' '.join(r['outcome'])}) | {r['seconds']} s | "
                     f"{r['requests']} | {r['failed']} | {r['404s']} / {r['503s']} | {r['longest_outage_s']} s | "
                     f"{first} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="also enable adapters and a refused generation")
    options = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="argus-rollout-"))   # kept: argusd's log is in it
    print(f"home: {tmp / 'bench'} (argusd's log: {tmp / 'bench' / 'state' / 'argusd.log'})", flush=True)
    rows = run(tmp, [SURGE_EDIT, *(MORE if options.all else []), RECREATE_EDIT])
    print(table(rows))


if __name__ == "__main__":
    main()

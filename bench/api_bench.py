#!/usr/bin/env python3
"""API write benchmark: how long a write through argusd's management API takes until its
202 (the commit made, pushed through the hook, and recorded by argusd), against the anchor of
the same change made with `argusctl apply` (commit + push from the user's clone, then polled
until recorded). argusd runs --sync-only with the API on, over a repo `argusctl init` made.

Usage: .venv/bin/python bench/api_bench.py [--writes 20]
Prints a markdown table for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers import ApiDaemon, run_argusctl  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def wait_recorded(api: ApiDaemon, name: str, replicas: int) -> None:
    """The anchor's wait: poll `argusctl status` until argusd recorded the change, as --wait does."""
    while True:
        listed = json.loads(run_argusctl("status", "-o", "json", env=api.env).stdout)["models"]
        if any(m["model_id_suffix"] == name and m["resolved"]["num_replicas"] == replicas for m in listed):
            return
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        api = ApiDaemon(Path(tmp), {"alice": "alice@argus.local"})
        try:
            token = api.token("alice")
            rows = []
            keys: list[str] = []
            api_times, cli_times = [], []
            for i in range(args.writes):  # create: POST vs argusctl apply
                spec = f"model_id: m{i}\nmodel_source: $HOME/common/hf/m\n"
                started = time.perf_counter()
                status, out, _ = api.http("POST", "/api/v2/serve/models", token=token, body=spec,
                                          ctype="application/yaml")
                api_times.append(time.perf_counter() - started)
                assert status == 202 and out["state"] != "PENDING", out
                keys.append(out["model_key"])
                path = Path(tmp) / f"cli-{i}.yaml"
                path.write_text(spec.replace(f"m{i}", f"cli-{i}"))
                started = time.perf_counter()
                result = run_argusctl("apply", "-f", str(path), "--workdir", str(Path(tmp) / "work"), env=api.env)
                assert result.returncode == 0, result.stderr
                wait_recorded(api, f"cli-{i}", 1)
                cli_times.append(time.perf_counter() - started)
            rows.append(("create", api_times, cli_times))
            api_times, cli_times = [], []
            for i, key in enumerate(keys):  # scale: PATCH vs argusctl scale
                started = time.perf_counter()
                status, out, _ = api.http("PATCH", f"/api/v2/serve/models/{key}", token=token, body={"num_replicas": 2})
                api_times.append(time.perf_counter() - started)
                assert status == 202 and out["state"] != "PENDING", out
                started = time.perf_counter()
                result = run_argusctl("scale", f"cli-{i}", "--replicas", "2", "--workdir", str(Path(tmp) / "work"),
                                      env=api.env)
                assert result.returncode == 0, result.stderr
                wait_recorded(api, f"cli-{i}", 2)
                cli_times.append(time.perf_counter() - started)
            rows.append(("scale", api_times, cli_times))
        finally:
            api.stop()
    print(f"| write ({args.writes} each) | API: request -> 202 recorded, p50 / p99 | "
          "argusctl apply + status poll until recorded, p50 / p99 |")
    print("|---|---|---|")
    for kind, api_times, cli_times in rows:
        print(f"| {kind} | {statistics.median(api_times) * 1000:.0f} / {pct(api_times, 0.99) * 1000:.0f} ms | "
              f"{statistics.median(cli_times) * 1000:.0f} / {pct(cli_times, 0.99) * 1000:.0f} ms |")


if __name__ == "__main__":
    main()

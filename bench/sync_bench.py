#!/usr/bin/env python3
"""Sync benchmark (issue: store and sync daemon).

(a) push-to-recorded latency over N pushes with the watcher (argusd as a process, poll
    interval 60 s so only the watchdog can make it fast): time from `git push` returning
    to the commit being recorded in the store, p50/p99: with --sync-only, and with reconcile
    on against a Ray dashboard that answers at once, in 3 s per call, or never (real HTTP,
    tests/dashboard_stub.py; argusd's Serve client gives up after 15 s);
(b) a full sync of S specs across U users in one commit, into an empty store;
(c) a one-file commit on top of that tree.

Usage: .venv/bin/python bench/sync_bench.py [--pushes 100] [--users 1000] [--specs 10000]
Prints a markdown table for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.gitrepo import GitRepo  # noqa: E402
from daemon.store import Store  # noqa: E402
from daemon.sync.syncer import Syncer  # noqa: E402
from dashboard_stub import DashboardStub  # noqa: E402
from helpers import GitOps, spec, write_config, spec_policy  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def cursor_of(db: Path) -> str | None:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        row = conn.execute("SELECT commit_sha FROM sync_cursor WHERE id=1").fetchone()
        conn.close()
        return row[0] if row else None
    except sqlite3.Error:
        return None


def bench_push_latency(tmp: Path, pushes: int, dashboard: str | None = None) -> list[float]:
    """`dashboard` None: --sync-only; else reconcile runs against that dashboard."""
    name = "lat" if dashboard is None else f"lat-{abs(hash(dashboard))}"
    gitops = GitOps(tmp / name)
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("start")
    gitops.push()
    db = tmp / f"{name}.db"
    config = write_config(tmp / f"{name}.yaml", root=tmp / "private", db=db, repo=gitops.bare, poll_seconds=60,
                          dashboard_url=dashboard or "http://127.0.0.1:8265")
    mode = ["--sync-only"] if dashboard is None else []
    daemon = subprocess.Popen([sys.executable, "-m", "daemon.argusd", *mode, "--config", str(config),
                               "--log-level", "WARNING"], stderr=subprocess.DEVNULL)
    try:
        head = gitops.git("rev-parse", "HEAD").strip()
        deadline = time.monotonic() + 30
        while cursor_of(db) != head:
            assert time.monotonic() < deadline, "daemon did not start"
            time.sleep(0.01)
        latencies = []
        for i in range(pushes):
            gitops.write(f"models.d/u{i % 10}/m{i}.yaml", spec(f"m{i}", replicas=1 + i % 2))
            sha = gitops.commit(f"push {i}")
            gitops.push()
            pushed = time.perf_counter()
            while cursor_of(db) != sha:
                if time.perf_counter() - pushed > 10:
                    raise RuntimeError(f"push {i} not recorded within 10 s")
                time.sleep(0.001)
            latencies.append(time.perf_counter() - pushed)
        return latencies
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def make_tree(gitops: GitOps, users: int, specs: int) -> None:
    per_user = max(1, specs // users)
    for u in range(users):
        for k in range(per_user):
            gitops.write(f"models.d/user{u:04d}/model{k:02d}.yaml",
                         f"model_id: model{k:02d}\nmodel_source: $HOME/common/hf/Model-{k}\n"
                         f"num_replicas: 1\ngpus_per_replica: 1\nengine_kwargs:\n  max_model_len: 4096\n")


def bench_full_and_one_file(tmp: Path, users: int, specs: int) -> tuple[float, float, int]:
    gitops = GitOps(tmp / "big")
    make_tree(gitops, users, specs)
    gitops.commit("big tree")
    gitops.push()
    policy = spec_policy(root="/private")
    syncer = Syncer(Store.open(tmp / "big.db"), GitRepo(gitops.bare), "main", policy)
    started = time.perf_counter()
    result = syncer.sync_once()
    full = time.perf_counter() - started
    recorded = len(syncer.store.list_models())
    assert recorded == specs, (recorded, result)
    one_file = []
    for i in range(5):
        gitops.write("models.d/user0500/model03.yaml",
                     f"model_id: model03\nmodel_source: $HOME/common/hf/Model-3\nnum_replicas: {2 + i % 2}\n")
        gitops.commit(f"scale {i}")
        gitops.push()
        started = time.perf_counter()
        assert syncer.sync_once().commits == 1
        one_file.append(time.perf_counter() - started)
    return full, statistics.median(one_file), recorded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=100)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--specs", type=int, default=10000)
    parser.add_argument("--serve-pushes", type=int, default=50, help="pushes per Serve mode (0: skip)")
    args = parser.parse_args()
    ms = lambda s: f"{s * 1000:.1f} ms"  # noqa: E731
    serve_rows = []
    with tempfile.TemporaryDirectory(prefix="argus-bench-") as tmp_name:
        tmp = Path(tmp_name)
        latencies = bench_push_latency(tmp, args.pushes)
        for mode, delay in (("healthy", 0.0), ("slow: 3 s per call", 3.0), ("hanging", None)):
            if not args.serve_pushes:
                break
            with DashboardStub(delay) as dashboard:
                lat = bench_push_latency(tmp, args.serve_pushes, dashboard.url)
            serve_rows.append((f"push-to-recorded p50 / p99, Serve {mode}",
                               f"{ms(statistics.median(lat))} / {ms(percentile(lat, 99))}", "p99 < 100 ms"))
        full, one_file, recorded = bench_full_and_one_file(tmp, args.users, args.specs)
    rows = [
        ("push-to-recorded p50 (watcher, --sync-only)", ms(statistics.median(latencies)), "<= 100 ms"),
        ("push-to-recorded p99 (watcher, --sync-only)", ms(percentile(latencies, 99)), "<= 500 ms"),
        *serve_rows,
        (f"full sync, {recorded} specs / {args.users} users", ms(full), "<= 5 s"),
        ("one-file commit on that tree (median of 5)", ms(one_file), "<= 50 ms"),
    ]
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.pushes} pushes")
    print("\n| measure | result | target |\n|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")


if __name__ == "__main__":
    main()

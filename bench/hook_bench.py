#!/usr/bin/env python3
"""What the pre-receive hook costs a valid push: median `git push` time of a one-spec commit
into a bare repo without the hook and with it (N pushes each, 100 specs already in the tree).

Usage: .venv/bin/python bench/hook_bench.py [--pushes 20]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from helpers import GitOps, spec, write_config  # noqa: E402


def push_times(tmp: Path, pushes: int, hooked: bool) -> list[float]:
    gitops = GitOps(tmp / ("hooked" if hooked else "plain"))
    for i in range(100):
        gitops.write(f"models.d/u{i % 10}/m{i}.yaml", spec(f"m{i}"))
    gitops.commit("tree")
    gitops.push()
    if hooked:
        config = write_config(tmp / "c.yaml", root=tmp / "private", db=tmp / "s.db", repo=gitops.bare)
        subprocess.run([sys.executable, "-m", "argusctl", "--config", str(config), "hook", "install"], check=True,
                       capture_output=True)
    times = []
    for i in range(pushes):
        gitops.write(f"models.d/u{i % 10}/m{i}.yaml", spec(f"m{i}", replicas=1 + (i % 2)))
        gitops.commit(f"push {i}")
        started = time.perf_counter()
        gitops.push()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="argus-hook-bench-") as name:
        plain = statistics.median(push_times(Path(name), args.pushes, hooked=False))
        hooked = statistics.median(push_times(Path(name), args.pushes, hooked=True))
    print("| measure | result |\n|---|---|")
    print(f"| git push, no hook (median of {args.pushes}) | {plain * 1000:.0f} ms |")
    print(f"| git push with the argus pre-receive hook (median of {args.pushes}) | {hooked * 1000:.0f} ms |")
    print(f"| cost of the hook | {(hooked - plain) * 1000:.0f} ms |")


if __name__ == "__main__":
    main()

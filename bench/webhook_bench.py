"""Push to recorded for a repo on a forge: a webhook delivery vs polling.

A real forge on 127.0.0.1 (git-http-backend behind lighttpd, token auth, as the tests use:
scripts/setup_forge_servers.sh installs it) and a real argusd (--sync-only) following it.
Latency is from the push to the forge returning to the commit being recorded (the sync
cursor). Webhook: argusd polls every 60 s and a GitHub-format delivery is sent right after
each push. Polling: no delivery, gitops.poll_seconds as given (5 s: the dev profile's value);
pushes land at random moments of the poll cycle.

  .venv/bin/python bench/webhook_bench.py [--pushes 20] [--poll 5]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

import test_webhooks as hooks  # noqa: E402  (the tests' forge and argusd, reused as is)


def measure(forge: "hooks.Forge", pushes: int, webhook: bool, tag: str) -> list[float]:
    out = []
    for i in range(pushes):
        if not webhook:
            time.sleep(random.uniform(0, forge.cfg.gitops.poll_seconds))  # a random phase of the poll cycle
        sha = forge.push(f"{tag}{i}")
        started = time.monotonic()
        if webhook:
            body, headers = hooks.delivery("github", sha)
            assert hooks.send(forge, "github", body, headers)[0] == 202
        while forge.recorded() != sha:
            time.sleep(0.005)
        out.append((time.monotonic() - started) * 1000)
    return out


def run(poll: float, pushes: int, webhook: bool) -> list[float]:
    tmp = Path(tempfile.mkdtemp(prefix="webhook-bench-"))
    original = hooks.write_config

    def with_poll(*args, **kwargs):
        kwargs["poll_seconds"] = 60 if webhook else poll
        return original(*args, **kwargs)

    hooks.write_config = with_poll
    forge = hooks.Forge(tmp)
    hooks.write_config = original
    try:
        return measure(forge, pushes, webhook, "w" if webhook else "p")
    finally:
        forge.stop()


def summary(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return f"| {name} | {statistics.median(ms):.0f} ms | {p(0.9):.0f} ms | {ms[-1]:.0f} ms |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--poll", type=float, default=5.0)
    args = parser.parse_args()
    webhook = run(args.poll, args.pushes, webhook=True)
    polling = run(args.poll, args.pushes, webhook=False)
    print("| path | p50 | p90 | max |\n|---|---|---|---|")
    print(summary("webhook (poll 60 s)", webhook))
    print(summary(f"polling every {args.poll:g} s", polling))


if __name__ == "__main__":
    main()

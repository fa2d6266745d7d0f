#!/usr/bin/env python3
"""argusctl's cost: status and diff on a large tree, and (--startup) what every command pays to start.

Default: builds U users x S specs each plus R rejected specs in one commit, records it with the
real Syncer, then times the real CLI as a user runs it (a child process, median of 3):
`argusctl status`, `argusctl status -o json` and `argusctl diff` (the clone's HEAD against
the store). Both used to be quadratic in users x rejections.

--startup: `argusctl --help` and `argusctl lint` of one example spec against
`python -c "import typer"` (the floor of any Typer CLI), paired: A and B run in turn, and the
ratio of their CPU seconds (user + sys, the kernel's accounting of each finished child) is taken
pair by pair, so a machine whose speed drifts still gives a fair ratio. Prints the medians.
A third row runs a Typer app whose one command takes lint's parameters and does nothing: what
Typer itself costs to run a command (Typer 0.29 checks every parameter with a pydantic
TypeAdapter, so running any command imports pydantic), the floor under `argusctl lint`.
.pyc files are written and used (PYTHONDONTWRITEBYTECODE is dropped), as in a user's install.

Usage: .venv/bin/python bench/cli_bench.py [--users 5000] [--specs-per-user 2] [--rejections 2000]
       .venv/bin/python bench/cli_bench.py --startup [--runs 15]
Prints a markdown table for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
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
from helpers import GitOps, write_config, spec_policy  # noqa: E402


def timed(args: list[str], env: dict) -> tuple[float, int]:
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "argusctl", *args], env=env, capture_output=True, text=True)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), done.returncode


def cpu_seconds(command: list[str], env: dict) -> float:
    """User + sys CPU seconds of one run of `command` (its exit code must be 0)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# A Typer command with argusctl lint's parameters (and the --config callback) that does nothing.
TYPER_COMMAND_FLOOR = """
import enum
from typing import List, Optional
import typer
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
class Output(str, enum.Enum):
    table = "table"
    json = "json"
@app.callback()
def main(ctx: typer.Context, config: Optional[str] = typer.Option(None, "--config", envvar="ARGUS_CONFIG")) -> None:
    pass
@app.command()
def lint(ctx: typer.Context, paths: List[str] = typer.Argument(...), user: Optional[str] = typer.Option(None, "--user"),
         workdir: Optional[str] = typer.Option(None, "--workdir", envvar="ARGUS_WORKDIR"),
         output: Output = typer.Option(Output.table, "--output", case_sensitive=False)) -> None:
    pass
@app.command()
def schema() -> None:
    pass
app()
"""


def startup(runs: int) -> None:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "ARGUS_CONFIG": str(root / "configs" / "local.yaml"), "ARGUS_HOME": tempfile.mkdtemp()}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's install has its .pyc files; compiling is not start-up
    argusctl = str(Path(sys.executable).parent / "argusctl")  # the console script a user runs
    floor = [sys.executable, "-c", "import typer"]
    spec = str(root / "models.d" / "bob" / "smollm2.yaml")
    commands = {"argusctl --help": [argusctl, "--help"],
                "argusctl lint (one spec)": [argusctl, "lint", spec],
                "Typer command with lint's parameters, doing nothing": [sys.executable, "-c", TYPER_COMMAND_FLOOR,
                                                                        "lint", spec]}
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{runs} pairs after one warm-up each; CPU seconds (user + sys) of the whole process")
    print("\n| command | CPU s (median) | `python -c \"import typer\"` | ratio (median of pairs) |\n|---|---|---|---|")
    for name, command in commands.items():
        cpu_seconds(command, env), cpu_seconds(floor, env)  # warm-up: page cache, .pyc files
        pairs = [(cpu_seconds(command, env), cpu_seconds(floor, env)) for _ in range(runs)]
        a, b = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
        ratio = statistics.median(x / y for x, y in pairs)
        print(f"| {name} | {a:.3f} | {b:.3f} | {ratio:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--specs-per-user", type=int, default=2)
    parser.add_argument("--rejections", type=int, default=2000)
    parser.add_argument("--startup", action="store_true", help="Time what every command pays to start.")
    parser.add_argument("--runs", type=int, default=15, help="--startup: pairs of runs.")
    args = parser.parse_args()
    if args.startup:
        startup(args.runs)
        return
    with tempfile.TemporaryDirectory(prefix="argus-cli-bench-") as tmp_name:
        tmp = Path(tmp_name)
        gitops = GitOps(tmp / "g")
        for u in range(args.users):
            for k in range(args.specs_per_user):
                gitops.write(f"models.d/user{u:05d}/m{k}.yaml",
                             f"model_id: m{k}\nmodel_source: $HOME/common/hf/Model-{k}\nnum_replicas: 1\n")
        for r in range(args.rejections):
            gitops.write(f"models.d/user{r % args.users:05d}/broken{r}.yaml", "model_id: x\nnum_replicas: 0\n")
        gitops.commit("big tree")
        gitops.push()
        db = tmp / "s.db"
        config = write_config(tmp / "c.yaml", root=Path("/private"), db=db, repo=gitops.bare)
        config.write_text(config.read_text() + f"  workdir: {gitops.work}\n")
        syncer = Syncer(Store.open(db), GitRepo(gitops.bare), "main", spec_policy(root="/private"))
        started = time.perf_counter()
        syncer.sync_once()
        full = time.perf_counter() - started
        models, rejections = len(syncer.store.list_models()), len(syncer.store.rejections())
        syncer.store.close()
        env = {**os.environ, "ARGUS_CONFIG": str(config)}
        status_table, code1 = timed(["status"], env)
        status_json, code2 = timed(["status", "-o", "json"], env)
        diff, code3 = timed(["diff"], env)
        assert (code1, code2, code3) == (0, 0, 0), (code1, code2, code3)
        for u in range(0, args.users, max(1, args.users // 500)):  # 500 users scale a model in the clone
            gitops.write(f"models.d/user{u:05d}/m0.yaml", "model_id: m0\nmodel_source: $HOME/common/hf/Model-0\n"
                                                          "num_replicas: 2\n")
        gitops.commit("500 users scale m0")  # not pushed: diff shows what argusd would change
        diff_changed, code4 = timed(["diff"], env)
        assert code4 == 1, code4
    s = lambda v: f"{v:.2f} s"  # noqa: E731
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.users} users x {args.specs_per_user} specs = {models} models, {rejections} rejected specs "
          f"(full sync {s(full)})")
    print("\n| command | median of 3 | target |\n|---|---|---|")
    for name, value in (("argusctl status", status_table), ("argusctl status -o json", status_json),
                        ("argusctl diff (HEAD = recorded)", diff),
                        ("argusctl diff (500 users changed in the clone)", diff_changed)):
        print(f"| {name} | {s(value)} | < 2 s |")


if __name__ == "__main__":
    main()

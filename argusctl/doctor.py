"""`argusctl doctor`: is this machine ready to serve? Each problem with its fix."""
from __future__ import annotations

from typing import Optional

import typer

from argusctl.common import EXIT_FAILED, Output, OutputOption, load_config, print_json


def doctor(
    ctx: typer.Context,
    python: Optional[str] = typer.Option(None, "--python",
                                         help="Interpreter to check Ray/vLLM imports with (default: .venv-serve)."),
    nodes: bool = typer.Option(True, "--nodes/--no-nodes",
                               help="Probe every live Ray node (a short Ray job): it imports what argus "
                                    "deploys, with the expected Ray and vLLM; its /dev/shm size; on the GPUs "
                                    "free on each node (never those in use), torch sees them and a small "
                                    "matmul runs."),
    output: Output = OutputOption,
) -> None:
    """Check the config, the Ray/vLLM imports, Ray and Serve, every node, the HTTP port, GPUs and their usage view, store and repo.

    Exit 0 when nothing failed (warnings allowed), 1 when a check failed.
    """
    from daemon.config import default_config_path
    from argusctl.ops.doctor import FAIL, OK, run_checks

    config = load_config(ctx)
    path = ctx.ensure_object(dict).get("config_path") or str(default_config_path())
    checks = run_checks(config, path, python, nodes=nodes)
    if output is Output.json:
        print_json([c.to_dict() for c in checks])
    else:
        from tabulate import tabulate

        rows = [[c.status.upper(), c.name, c.detail + (f"\n-> {c.fix}" if c.fix and c.status != OK else "")]
                for c in checks]
        typer.echo(tabulate(rows, headers=["", "CHECK", "DETAIL"], tablefmt="plain"))
    if any(c.status == FAIL for c in checks):
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command()(doctor)

"""The argusctl entry point: one Typer app, one module per command group."""
from __future__ import annotations

import sqlite3
from typing import Optional

import typer

from daemon.errors import ArgusError

from argusctl import diff, doctor, hook, lint, status, token, write
from argusctl.common import fail

app = typer.Typer(
    name="argusctl",
    help="GitOps model serving on Ray Serve LLM: lint, apply, scale, delete, status, logs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main(
    ctx: typer.Context,
    config: Optional[str] = typer.Option(None, "--config", "-c", envvar="ARGUS_CONFIG",
                                         help="Platform config file (default: configs/local.yaml)."),
) -> None:
    """GitOps model serving on Ray Serve LLM and vLLM."""
    ctx.ensure_object(dict)["config_path"] = config


lint.register(app)
status.register(app)
doctor.register(app)
write.register(app)
hook.register(app)
diff.register(app)
token.register(app)


def run() -> None:
    from daemon.store import unusable

    try:
        try:
            app(prog_name="argusctl")
        except sqlite3.DatabaseError as exc:  # a store that broke after it was opened
            raise unusable(None, exc) from None
    except ArgusError as error:
        try:
            fail(error)
        except typer.Exit as exit_:
            raise SystemExit(exit_.exit_code) from None

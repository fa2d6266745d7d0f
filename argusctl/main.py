"""The argusctl entry point: one Typer app, one module per command group."""
from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from daemon.errors import ArgusError

from argusctl import diff, doctor, lint, status, token, write
from argusctl.hook import cli as hook
from argusctl.common import fail

app = typer.Typer(
    name="argusctl",
    help="GitOps model serving on Ray Serve LLM: lint, apply, scale, suspend, delete, status, logs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help, not Rich's boxes: importing and laying out Rich took twice as long as
    # importing Typer itself, on every --help and usage error. Subcommands inherit the width.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
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
    # argus uses no pydantic plugins. Unless told not to, pydantic looks for them in every
    # installed package's metadata when it builds its first model validator (every command that
    # reads the config builds some): 14 M instructions in .venv's 50 packages, 42 M in
    # .venv-serve's 190. A setting of the user's own wins. What argusctl starts (git, and
    # through git argus's hook) inherits it.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        try:
            app(prog_name="argusctl")
        except Exception as exc:
            # A store that broke after it was opened. sqlite3 is looked up, not imported: a
            # command that never imported it (--help, lint) cannot have raised its errors.
            sqlite3 = sys.modules.get("sqlite3")
            if sqlite3 is None or not isinstance(exc, sqlite3.DatabaseError):
                raise
            from daemon.store import unusable

            raise unusable(None, exc) from None
    except ArgusError as error:
        try:
            fail(error)
        except typer.Exit as exit_:
            raise SystemExit(exit_.exit_code) from None

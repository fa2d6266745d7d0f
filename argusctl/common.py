"""What every command shares: output format, config loading, and mapping engine errors
to one stderr line and a documented exit code."""
from __future__ import annotations

import enum
import re
import sys
from typing import Any, NoReturn

import typer

from daemon.errors import ArgusError, Fault

# Exit codes (docs/cli.md): kept stable for scripts.
EXIT_OK = 0
EXIT_FAILED = 1       # invalid input, a refused change, a failed check, a failed model, a diff
EXIT_USAGE = 2        # bad arguments or paths
EXIT_ENVIRONMENT = 3  # config, store, git repo or cluster not usable
EXIT_NOT_FOUND = 4    # no such model
EXIT_TIMEOUT = 5      # --wait ran out of time
EXIT_CONFLICT = 6     # someone else changed the same spec meanwhile; nothing changed: run it again

# Whose fault -> exit code: the twin of daemon/api/http.py's HTTP_STATUS, one table in the docs.
EXIT_CODES: dict[Fault, int] = {
    Fault.INPUT: EXIT_FAILED,
    Fault.NOT_ALLOWED: EXIT_FAILED,
    Fault.UNAUTHENTICATED: EXIT_FAILED,
    Fault.USAGE: EXIT_USAGE,
    Fault.NOT_FOUND: EXIT_NOT_FOUND,
    Fault.CONFLICT: EXIT_CONFLICT,
    Fault.ENVIRONMENT: EXIT_ENVIRONMENT,
}


class Output(str, enum.Enum):
    table = "table"
    json = "json"


OutputOption = typer.Option(Output.table, "--output", "-o",
                            help="Output format: table or json (indented on a terminal, one line when piped).",
                            case_sensitive=False)


def exit_code_for(error: ArgusError) -> int:
    return EXIT_CODES[error.fault]


# Control characters (C0, DEL, C1) and bidi overrides: what a user wrote into an author name,
# a file name or a spec must not move the cursor, retitle or clear an operator's terminal.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(value: object) -> str:
    """`value` as text safe for a terminal: every control character escaped (ESC -> \\x1b)."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(value))


def fail(error: ArgusError) -> NoReturn:
    message = str(error)
    lines = message.splitlines() or [type(error).__name__]
    typer.echo(f"argusctl: error: {printable(lines[0])}", err=True)
    for line in lines[1:]:
        typer.echo(f"  {printable(line)}", err=True)
    raise typer.Exit(exit_code_for(error))


def print_json(data: Any) -> None:
    """Indented for a person at a terminal; one line for a pipe (jq, scripts): Python's fast
    C encoder does not indent, and 10,000 models took seconds through the indenting one."""
    import json

    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(data, indent=indent, sort_keys=True, default=str) + "\n")


def load_config(ctx: typer.Context):
    """The config named by --config / ARGUS_CONFIG, loaded once per invocation."""
    from daemon.config import load_config as _load

    obj = ctx.ensure_object(dict)
    if "config" not in obj:
        obj["config"] = _load(obj.get("config_path"))
    return obj["config"]

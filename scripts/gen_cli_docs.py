#!/usr/bin/env python3
"""Write docs/cli.md from the commands' own --help (tests/integration/test_docs.py keeps it current).

Usage: .venv/bin/python scripts/gen_cli_docs.py [--check]
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
COMMANDS = [[], ["lint"], ["schema"], ["status"], ["logs"], ["doctor"], ["init"], ["apply"], ["scale"],
            ["delete"], ["diff"], ["hook", "install"], ["hook", "pre-receive"], ["token", "create"],
            ["token", "list"], ["token", "revoke"]]
HEADER = """# argusctl reference

Generated from each command's `--help` by `scripts/gen_cli_docs.py`; do not edit by hand.

Errors go to stderr as `argusctl: error: ...` naming the fix. Exit codes (every command; an
error's code says whose fault it is, the same answer the HTTP API gives as a status, see
docs/api.md):

| exit | whose fault | HTTP |
| --- | --- | --- |
| 0 | ok | 2xx |
| 1 | input: a spec or request is invalid; not allowed: the repo's hook refused the change, a path outside your roots (the API also: no or an unknown token); also a failed check, a failed model, a diff | 400 `yaml_invalid`, 401, 403, 413, 415, 422 |
| 2 | usage: bad arguments, flags or paths; a clone with uncommitted or unpushed changes | 400 `bad_request` |
| 3 | environment: the config, store, GitOps repo or cluster is not usable (an operator fixes it) | 503 |
| 4 | not found: no such model | 404 |
| 5 | `--wait` timed out | - |
| 6 | conflict: someone else changed the same spec meanwhile; nothing changed, run it again | 409 |
"""


def help_text(args: list[str]) -> str:
    """What `argusctl ARGS --help` prints on a 100-column terminal (in-process: one Python for
    every command instead of one process each)."""
    from typer.testing import CliRunner

    from argusctl.main import app

    result = CliRunner().invoke(app, [*args, "--help"], prog_name="argusctl", terminal_width=100)
    if result.exit_code != 0:
        raise SystemExit(f"argusctl {' '.join(args)} --help exited {result.exit_code}: {result.output}")
    return "\n".join(line.rstrip() for line in result.stdout.strip("\n").splitlines())


def render() -> str:
    parts = [HEADER]
    for args in COMMANDS:
        title = "argusctl " + " ".join(args) if args else "argusctl"
        text = help_text(args)
        parts.append(f"## {title}\n\n```text\n{text}\n```\n")
    return "\n".join(parts)


def main() -> None:
    target = ROOT / "docs" / "cli.md"
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if target.exists() and target.read_text() == text else 1)
    target.write_text(text)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

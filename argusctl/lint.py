"""`argusctl lint` and `argusctl schema`."""
from __future__ import annotations

import functools
from typing import List, Optional

import typer

from argusctl.common import EXIT_FAILED, Output, OutputOption, load_config, print_json, printable


def lint(
    ctx: typer.Context,
    paths: List[str] = typer.Argument(..., help="Spec files or directories (e.g. models.d) to check."),
    user: Optional[str] = typer.Option(None, "--user", "-u",
                                       help="Treat every file as this user's (default: models.d/<user>/ in the "
                                            "path, else your clone's user, as apply does)."),
    workdir: Optional[str] = typer.Option(None, "--workdir", envvar="ARGUS_WORKDIR",
                                          help="Your GitOps clone (default: gitops.workdir from the config)."),
    output: Output = OutputOption,
) -> None:
    """Check ServingSpec files: one `path:line:col: message` line per problem.

    Exit 0 when every spec is valid, 1 when any is invalid, 2 on usage errors.
    """
    from argusctl.ops.lint import lint_paths
    from daemon.core.spec import SpecPolicy

    config = load_config(ctx)
    policy = SpecPolicy.from_config(config)
    # Asked only for a file outside models.d/ (a clone lookup loads git), and once.
    report = lint_paths(paths, policy, user, None if user else functools.cache(lambda: _clone_user(ctx, workdir)),
                        users=frozenset(owners) if (owners := config.owners()) else None, quotas=config.gpu_quota)
    if output is Output.json:
        print_json(report.to_dict())
    else:
        for problem in report.problems:
            typer.echo(printable(problem))
        invalid = len(report.invalid_files)
        noun = "file" if len(report.files) == 1 else "files"
        summary = f"{len(report.files)} {noun} checked: {len(report.files) - invalid} valid, {invalid} invalid"
        if report.problems:
            summary += f" ({len(report.problems)} problem{'s' if len(report.problems) != 1 else ''})"
        typer.echo(summary)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def _clone_user(ctx: typer.Context, workdir: Optional[str]) -> Optional[str]:
    """The user apply would commit as (the clone's argus.user, the same lookup), or None when
    there is no clone; a --workdir given that is not one is a usage error."""
    from argusctl.write import _clone
    from daemon.errors import GitError, UsageError

    try:
        return _clone(ctx, workdir, None)[1].user
    except (GitError, UsageError):
        if workdir is not None:
            raise
        return None


def schema(ctx: typer.Context) -> None:
    """Print the JSON Schema of ServingSpec (for editor validation), with this platform's limits."""
    from daemon.core.spec import SpecPolicy, spec_json_schema

    print_json(spec_json_schema(SpecPolicy.from_config(load_config(ctx))))


def register(app: typer.Typer) -> None:
    app.command()(lint)
    app.command()(schema)

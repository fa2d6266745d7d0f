"""`argusctl hook install` and the hook itself (`argusctl hook pre-receive`)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from argusctl.common import EXIT_FAILED, load_config, printable

hook_app = typer.Typer(help="Server-side validation of pushes (a pre-receive hook in the bare repo).",
                       no_args_is_help=True, rich_markup_mode=None)


@hook_app.command("install")
def install(
    ctx: typer.Context,
    repo: Optional[str] = typer.Option(None, "--repo", help="The bare GitOps repo (default: gitops.repo)."),
) -> None:
    """Install the pre-receive hook that refuses invalid specs and changes by the wrong author."""
    from daemon.config import default_config_path
    from argusctl.hook.checks import hook_command, install as do_install
    from daemon.errors import UsageError

    config = load_config(ctx)
    if repo is None and config.gitops.location.remote:
        raise UsageError(f"gitops.repo is a forge ({config.gitops.repo}), where no argus hook runs: argusd alone "
                         "enforces validity and ownership there (docs/operating.md, 'Remote repos and webhooks')")
    config_path = ctx.ensure_object(dict).get("config_path") or str(default_config_path())
    hook = do_install(Path(os.path.expanduser(repo or config.gitops.repo)), hook_command(config_path))
    typer.echo(f"installed {hook}")


@hook_app.command("pre-receive")
def pre_receive(ctx: typer.Context) -> None:
    """Run by git on the server: read `old new ref` lines, refuse the push with the reasons."""
    from daemon.gitrepo import GitRepo
    from argusctl.hook.checks import check_push
    from daemon.core.spec import SpecPolicy

    config = load_config(ctx)
    updates = [tuple(line.split()) for line in sys.stdin.read().splitlines() if len(line.split()) == 3]
    import tempfile

    from daemon.remote import prepare_signatures

    with tempfile.TemporaryDirectory(prefix="argus-hook-") as tmp:  # signers: gitops.require_signed
        repo = GitRepo(os.environ.get("GIT_DIR", "."), signatures=prepare_signatures(config, Path(tmp)))
        problems = check_push(repo, updates, config.gitops.branch, SpecPolicy.from_config(config), config.owners(),
                              config.gpu_quota)
    if problems:
        typer.echo(f"argus: push refused: {len(problems)} problem(s); fix them, amend and push again", err=True)
        for problem in problems:
            typer.echo(f"argus: {printable(problem)}", err=True)
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.add_typer(hook_app, name="hook")

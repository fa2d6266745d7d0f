"""`argusctl init`, `apply`, `scale`, `delete`: change the GitOps repo as the user."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from daemon.core.states import ModelState

from argusctl.common import EXIT_FAILED, EXIT_TIMEOUT, Output, OutputOption, load_config, print_json, printable

WorkdirOption = typer.Option(None, "--workdir", envvar="ARGUS_WORKDIR",
                             help="Your GitOps clone (default: gitops.workdir from the config).")
UserOption = typer.Option(None, "--user", "-u", help="Act as this user (default: the clone's argus.user).")
DryRunOption = typer.Option(False, "--dry-run", help="Show the change as a diff; touch nothing.")
WaitOption = typer.Option(False, "--wait", help="Block until the model settles (RUNNING, FAILED or gone).")
RunWaitOption = typer.Option(False, "--wait", help="Block until the model settles (RUNNING or FAILED); once it "
                             "runs, print the id a client sends as `model` and a curl line.")
TimeoutOption = typer.Option(900.0, "--timeout", help="Seconds --wait waits before giving up (exit 5).")


def _workdir(config, workdir: Optional[str]) -> Path:
    return Path(os.path.expanduser(workdir or config.gitops.workdir))


def _clone(ctx: typer.Context, workdir: Optional[str], user: Optional[str]):
    from argusctl.ops.write import open_clone

    config = load_config(ctx)
    return config, open_clone(_workdir(config, workdir), user, config.gitops.branch)


def init(
    ctx: typer.Context,
    user: str = typer.Option(..., "--user", "-u", help="Your user id: the directory models.d/<user>/."),
    workdir: Optional[str] = WorkdirOption,
    name: Optional[str] = typer.Option(None, "--name", help="git user.name for your commits."),
    email: Optional[str] = typer.Option(None, "--email", help="git user.email for your commits."),
) -> None:
    """Create the GitOps repo (a bare repo argusd watches, if missing) and your working clone."""
    from argusctl.ops.write import init as do_init

    config = load_config(ctx)
    repo = config.gitops.repo if config.gitops.location.remote else Path(os.path.expanduser(config.gitops.repo))
    clone = do_init(repo, _workdir(config, workdir), user, config.gitops.branch, name, email)
    typer.echo(f"GitOps repo: {config.gitops.repo}")
    typer.echo(f"Your clone:  {clone.path} (user {clone.user}); put specs in {clone.user_dir}/")


def _report(config, clone, change, output: Output, wait: bool, timeout: float,
            deleting: bool = False) -> None:
    if output is Output.json:
        result = change.to_dict()
    else:
        result = None
        if change.diff:
            typer.echo(change.diff.rstrip("\n"))
        verb = "would be" if change.commit is None and change.action != "unchanged" else ""
        typer.echo(f"{clone.user}/{change.model_id}: {change.action} {verb}".rstrip()
                   + (f" ({change.commit[:12]})" if change.commit else ""))
    code = 0
    if wait and (change.commit is not None or change.action == "unchanged"):
        row, reason = wait_until_settled(config, clone.user, change, timeout, deleting, quiet=output is Output.json)
        state = row.state if row is not None else "absent"
        if output is Output.json:
            result["final_state"], result["reason"] = state, reason
        else:
            typer.echo(f"{clone.user}/{change.model_id}: {state}" + (f": {reason}" if reason else ""))
        code = EXIT_TIMEOUT if reason == "timed out" else EXIT_FAILED if state == ModelState.FAILED or reason else 0
        if not deleting and row is not None and state == ModelState.RUNNING:
            _how_to_call(config, row.model_id, result)
    if output is Output.json:
        print_json(result)
    if code:
        raise typer.Exit(code)


def _how_to_call(config, public_id: str, result: dict | None) -> None:
    """What a client sends once the model runs: its public id as `model`, on the one endpoint."""
    import json

    from daemon.config import openai_base_url

    base_url = openai_base_url(config)
    if result is not None:
        result["model"], result["openai_base_url"] = public_id, base_url
        return
    body = json.dumps({"model": public_id, "messages": [{"role": "user", "content": "Hi"}]})
    typer.echo(printable(f"model: {public_id}  (send this as \"model\" to {base_url})"))
    typer.echo(printable(f"  curl {base_url}/chat/completions -H 'Content-Type: application/json' -d '{body}'"))


def wait_until_settled(config, user: str, change, timeout: float, deleting: bool, quiet: bool):
    """Poll the store until our commit is recorded and the model leaves the transient states."""
    from daemon.errors import NotFoundError, StoreError
    from daemon.store import Store

    deadline = time.monotonic() + timeout
    tty = sys.stderr.isatty() and not quiet
    last = None
    while True:
        row = None
        try:
            store = Store.open_readonly(config.state.db)
            try:
                row = store.find_model(change.model_id, user_id=user)
            except NotFoundError:
                row = None
            rejected = {r.spec_path: r for r in store.rejections(user)}.get(change.path)
            store.close()
        except StoreError:
            rejected = None
        if rejected is not None and (change.commit is None or rejected.commit_sha == change.commit):
            return row, "spec rejected: " + "; ".join(str(p) for p in rejected.problems)
        recorded = row is not None and (change.commit is None or row.commit_sha == change.commit)
        if deleting and (row is None or (recorded and row.state == ModelState.DELETED)):
            return row, None
        if not deleting and recorded and row.state in (ModelState.RUNNING, ModelState.FAILED):
            return row, row.error_summary if row.state == ModelState.FAILED else None
        state = row.state if recorded else "waiting for argusd"
        if recorded and row.state == ModelState.QUEUED and row.error_summary:
            state = f"{row.state}: {printable(row.error_summary)}"   # why it waits (resources, its base)
        if not quiet and state != last:
            typer.echo(("\r" if tty else "") + f"... {state}", err=True, nl=not tty)
            last = state
        if time.monotonic() > deadline:
            if tty:
                typer.echo("", err=True)
            return row, "timed out"
        time.sleep(0.5)


def apply(
    ctx: typer.Context,
    file: Path = typer.Option(..., "--filename", "-f", help="The spec file to apply.", exists=False),
    workdir: Optional[str] = WorkdirOption, user: Optional[str] = UserOption,
    dry_run: bool = DryRunOption, wait: bool = RunWaitOption, timeout: float = TimeoutOption,
    output: Output = OutputOption,
) -> None:
    """Create or change a model from a spec file: lint, commit as you, push.

    Your clone must have no uncommitted changes nor commits of its own that are not pushed (a
    write would push them too: exit 2 says how many). A push that loses a race with another
    push is made again on top of it (the edit redone and linted there; never forced, never
    merged); if the other change touched the same spec, nothing is pushed, your clone gets
    theirs, and the command exits 6: look, then run it again. A write that fails for any
    reason (a git hook, no git identity, an interrupt) leaves your clone as it was. Two commands
    writing through one clone take turns.
    """
    from daemon.errors import UsageError
    from daemon.core.spec import SpecPolicy
    from argusctl.ops.write import apply as do_apply

    config, clone = _clone(ctx, workdir, user)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UsageError(f"{file}: {exc.strerror}") from None
    change = do_apply(clone, data, str(file), SpecPolicy.from_config(config), dry_run)
    _report(config, clone, change, output, wait and not dry_run, timeout)


def scale(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model suffix or full public id."),
    replicas: int = typer.Option(..., "--replicas", "-r", min=1, help="The new number of replicas."),
    workdir: Optional[str] = WorkdirOption, user: Optional[str] = UserOption,
    dry_run: bool = DryRunOption, wait: bool = RunWaitOption, timeout: float = TimeoutOption,
    output: Output = OutputOption,
) -> None:
    """Set a model's num_replicas: commit as you, push.

    Only that value of your spec file changes: comments, quoting, flow or block style and
    layout stay as you wrote them. Races and failures as for apply.
    """
    from daemon.core.spec import SpecPolicy
    from argusctl.ops.write import scale as do_scale

    config, clone = _clone(ctx, workdir, user)
    change = do_scale(clone, model, replicas, SpecPolicy.from_config(config), dry_run)
    _report(config, clone, change, output, wait and not dry_run, timeout)


def delete(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model suffix or full public id."),
    workdir: Optional[str] = WorkdirOption, user: Optional[str] = UserOption,
    dry_run: bool = DryRunOption, wait: bool = WaitOption, timeout: float = TimeoutOption,
    output: Output = OutputOption,
) -> None:
    """Delete a model: remove its spec, commit as you, push. Races and failures as for apply."""
    from argusctl.ops.write import delete as do_delete

    config, clone = _clone(ctx, workdir, user)
    change = do_delete(clone, model, dry_run)
    _report(config, clone, change, output, wait and not dry_run, timeout, deleting=True)


def register(app: typer.Typer) -> None:
    for command in (init, apply, scale, delete):
        app.command()(command)

"""`argusctl init`, `apply`, `scale`, `suspend`, `resume`, `delete`: change the GitOps repo as the user."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from daemon.core.states import ModelState, StrEnum

from argusctl.common import EXIT_FAILED, EXIT_TIMEOUT, Output, OutputOption, load_config, print_json, printable

WorkdirOption = typer.Option(None, "--workdir", envvar="ARGUS_WORKDIR",
                             help="Your GitOps clone (default: gitops.workdir from the config).")
UserOption = typer.Option(None, "--user", "-u", help="Act as this user (default: the clone's argus.user).")
DryRunOption = typer.Option(False, "--dry-run", help="Show the change as a diff; touch nothing.")
WaitOption = typer.Option(False, "--wait", help="Block until the model settles (RUNNING, FAILED or gone).")
RunWaitOption = typer.Option(False, "--wait", help="Block until the model settles (RUNNING or FAILED); once it "
                             "runs, print the id a client sends as `model` and a curl line.")
SuspendWaitOption = typer.Option(False, "--wait", help="Block until the model is SUSPENDED (its replicas "
                                 "gone, its GPUs free).")
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


class WaitGoal(StrEnum):
    """Where `--wait` stops, once argusd has recorded the commit (or refused the spec)."""

    RUN = "run"              # apply, scale, resume: RUNNING, or FAILED
    SUSPEND = "suspend"      # suspend: SUSPENDED
    GONE = "gone"            # delete: DELETED, or no row at all


def settled(goal: WaitGoal, state: ModelState | None, recorded: bool) -> bool:
    """Whether `--wait` is done: `state` is the model's (None: argusd has no row for it),
    `recorded` whether that row is at the commit the command made. A state the goal does
    not end in is on the way (SUSPENDED while a resume starts, RUNNING while a suspend
    removes the replicas)."""
    if goal is WaitGoal.GONE:
        return state is None or (recorded and state == ModelState.DELETED)
    if goal is WaitGoal.SUSPEND:
        return recorded and state == ModelState.SUSPENDED
    return recorded and state in (ModelState.RUNNING, ModelState.FAILED)


def _report(config, clone, change, output: Output, wait: bool, timeout: float,
            goal: WaitGoal = WaitGoal.RUN, unchanged_why: str | None = None) -> None:
    """Print what a write did, then (with --wait) wait for `goal`. `unchanged_why`: what a
    command that changed nothing says (suspend: "already suspended")."""
    if output is Output.json:
        result = change.to_dict()
    else:
        result = None
        if change.diff:
            typer.echo(change.diff.rstrip("\n"))
        verb = "would be" if change.commit is None and change.action != "unchanged" else ""
        why = unchanged_why if change.action == "unchanged" else None
        typer.echo(f"{clone.user}/{change.model_id}: {change.action} {verb}".rstrip()
                   + (f" ({change.commit[:12]})" if change.commit else "") + (f" ({why}; nothing to commit)" if why else ""))
    code = 0
    if wait and (change.commit is not None or change.action == "unchanged"):
        row, reason = wait_until_settled(config, clone.user, change, timeout, goal, quiet=output is Output.json)
        state = row.state if row is not None else "absent"
        if output is Output.json:
            result["final_state"], result["reason"] = state, reason
        else:
            typer.echo(f"{clone.user}/{change.model_id}: {state}" + (f": {reason}" if reason else ""))
        code = EXIT_TIMEOUT if reason == "timed out" else EXIT_FAILED if state == ModelState.FAILED or reason else 0
        if goal is WaitGoal.RUN and row is not None and state == ModelState.RUNNING:
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


# (the model's row or None, the rejection of its spec or None), as argusd has them now
ReadModel = Callable[[], tuple[Any, Any]]


def _store_reader(config, user: str, change) -> ReadModel:
    def read() -> tuple[Any, Any]:
        from daemon.errors import NotFoundError, StoreError
        from daemon.store import Store

        row = None
        try:
            store = Store.open_readonly(config.state.db)
            try:
                try:
                    row = store.find_model(change.model_id, user_id=user)
                except NotFoundError:
                    row = None
                return row, {r.spec_path: r for r in store.rejections(user)}.get(change.path)
            finally:
                store.close()
        except StoreError:   # argusd is writing it, or it is not there yet: ask again
            return row, None
    return read


def wait_until_settled(config, user: str, change, timeout: float, goal: WaitGoal, quiet: bool,
                       read: ReadModel | None = None, poll_s: float = 0.5):
    """Poll the store until our commit is recorded and the model reaches `goal` (settled)."""
    read = read or _store_reader(config, user, change)
    deadline = time.monotonic() + timeout
    tty = sys.stderr.isatty() and not quiet
    last = None
    while True:
        row, rejected = read()
        if rejected is not None and (change.commit is None or rejected.commit_sha == change.commit):
            return row, "spec rejected: " + "; ".join(str(p) for p in rejected.problems)
        recorded = row is not None and (change.commit is None or row.commit_sha == change.commit)
        if settled(goal, row.state if row is not None else None, recorded):
            return row, row.error_summary if row is not None and row.state == ModelState.FAILED else None
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
        time.sleep(poll_s)


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
    _report(config, clone, change, output, wait and not dry_run, timeout, WaitGoal.GONE)


def suspend(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model suffix or full public id."),
    workdir: Optional[str] = WorkdirOption, user: Optional[str] = UserOption,
    dry_run: bool = DryRunOption, wait: bool = SuspendWaitOption, timeout: float = TimeoutOption,
    output: Output = OutputOption,
) -> None:
    """Suspend a model: set `suspended: true` in its spec, commit as you, push.

    The model keeps its public id, history and adapters but runs no replica and holds no GPU;
    its requests get 503 "suspended by <you> in <commit>" until `argusctl resume`. A model
    that is suspended already is left as it is (no commit, exit 0). Only that line of your
    spec file changes. Races and failures as for apply.
    """
    _suspend_or_resume(ctx, model, True, workdir, user, dry_run, wait, timeout, output)


def resume(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model suffix or full public id."),
    workdir: Optional[str] = WorkdirOption, user: Optional[str] = UserOption,
    dry_run: bool = DryRunOption, wait: bool = RunWaitOption, timeout: float = TimeoutOption,
    output: Output = OutputOption,
) -> None:
    """Resume a suspended model: remove `suspended: true` from its spec, commit as you, push.

    argus deploys it again as a new model would be (it waits QUEUED while its GPUs are taken).
    A model that is not suspended is left as it is (no commit, exit 0). Only that line of
    your spec file changes. Races and failures as for apply.
    """
    _suspend_or_resume(ctx, model, False, workdir, user, dry_run, wait, timeout, output)


def _suspend_or_resume(ctx: typer.Context, model: str, suspended: bool, workdir: Optional[str],
                       user: Optional[str], dry_run: bool, wait: bool, timeout: float, output: Output) -> None:
    from daemon.core.spec import SpecPolicy
    from argusctl.ops.write import set_suspended

    config, clone = _clone(ctx, workdir, user)
    change = set_suspended(clone, model, suspended, SpecPolicy.from_config(config), dry_run)
    _report(config, clone, change, output, wait and not dry_run, timeout,
            WaitGoal.SUSPEND if suspended else WaitGoal.RUN,
            unchanged_why="already suspended" if suspended else "not suspended")


def register(app: typer.Typer) -> None:
    for command in (init, apply, scale, suspend, resume, delete):
        app.command()(command)

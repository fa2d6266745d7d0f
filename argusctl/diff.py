"""`argusctl diff`: what argusd would change if your branch head were synced."""
from __future__ import annotations

import os
from typing import Optional

import typer

from argusctl.common import EXIT_FAILED, Output, OutputOption, load_config, print_json, printable


def describe(change, models: dict) -> dict:
    """One change as {sign, model, what, detail} for people and for -o json."""
    from daemon.sync.plan import ClearRejection, CreateModel, DeleteModel, MoveModel, RejectSpec, UpdateModel

    if isinstance(change, CreateModel):
        r = change.resolved
        return {"sign": "+", "model": f"{r.user_id}/{r.model_id_suffix}", "what": "new",
                "detail": f"{r.num_replicas} replica(s) x {r.gpus_per_replica} GPU(s) from {r.model_source}"}
    if isinstance(change, UpdateModel):
        detail = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in sorted(change.changes.items()))
        return {"sign": "~", "model": f"{change.resolved.user_id}/{change.resolved.model_id_suffix}",
                "what": change.kind, "detail": detail}
    row = models.get(getattr(change, "model_key", None))
    name = f"{row.user_id}/{row.model_id_suffix}" if row else change.spec_path
    if isinstance(change, DeleteModel):
        return {"sign": "-", "model": name, "what": "deleted", "detail": change.spec_path}
    if isinstance(change, MoveModel):
        return {"sign": "~", "model": name, "what": "moved", "detail": f"now in {change.spec_path}"}
    if isinstance(change, RejectSpec):
        kept = " (the model keeps its last good spec)" if change.model_key else ""
        return {"sign": "!", "model": change.spec_path, "what": "rejected", "detail": "; ".join(str(p) for p in change.problems) + kept}
    if isinstance(change, ClearRejection):
        return {"sign": "~", "model": change.spec_path, "what": "fixed", "detail": "no longer rejected"}
    return {"sign": "?", "model": "", "what": type(change).__name__, "detail": ""}


def diff(
    ctx: typer.Context,
    workdir: Optional[str] = typer.Option(None, "--workdir", envvar="ARGUS_WORKDIR",
                                          help="Your GitOps clone (default: gitops.workdir)."),
    ref: str = typer.Option("HEAD", "--ref", help="The commit to compare (default: your clone's HEAD)."),
    output: Output = OutputOption,
) -> None:
    """Show new, changed, scaled, deleted and rejected models versus what argusd recorded.

    Exit 0 when there is no difference, 1 when there are differences (like kubectl diff).
    """
    from pathlib import Path

    from argusctl.ops.write import require_clone
    from daemon.errors import UsageError
    from daemon.gitrepo import GitRepo
    from daemon.core.spec import SpecPolicy
    from daemon.store import Store
    from daemon.sync.syncer import Syncer

    config = load_config(ctx)
    path = os.path.expanduser(workdir or config.gitops.workdir)
    require_clone(Path(path))   # the same check and exit code (3) as apply, scale and delete
    repo = GitRepo(path)
    sha = repo.resolve(ref)
    if sha is None:
        raise UsageError(f"{ref} is not a commit in {path}")
    store = Store.open_readonly(config.state.db)
    changes = Syncer(store, repo, config.gitops.branch, SpecPolicy.from_config(config),
                     owners=config.owners()).plan_tree(sha)
    models = {m.model_key: m for m in store.list_models()}
    rows = [describe(c, models) for c in changes]
    if output is Output.json:
        print_json({"ref": sha, "changes": rows})
    elif not rows:
        typer.echo(f"no differences: {sha[:12]} is what argusd has recorded")
    else:
        for row in rows:
            typer.echo(printable(f"{row['sign']} {row['model']:<32} {row['what']:<9} {row['detail']}"))
    if rows:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command()(diff)

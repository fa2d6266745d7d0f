"""`argusctl status [MODEL]` and `argusctl logs MODEL`: read the store, never block the daemon."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Optional

import typer

from daemon.core.states import CLUSTER_EVENTS, SERVE_CONFIRMED_STATES, EventType, ModelState

from argusctl.common import (EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_OK, Output, OutputOption, load_config, print_json,
                             printable)

EVENTS_IN_DETAIL = 10


def age(timestamp: str, now: datetime | None = None) -> str:
    """kubectl-style age: 45s, 12m, 3h, 2d."""
    from daemon.store import parse_iso

    seconds = int(((now or datetime.now(timezone.utc)) - parse_iso(timestamp)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def cluster_down(store) -> dict | None:
    """Since when (and why) argusd cannot reach Ray's dashboard, or None while it can."""
    last = store.last_cluster_event(CLUSTER_EVENTS)
    if last is None or last.event_type != EventType.CLUSTER_UNREACHABLE:
        return None
    return {"since": last.time, "message": last.payload.get("message", "")}


def shown_state(state: ModelState, down: dict | None) -> str:
    """The stored state, unless it is one only Serve can confirm and Serve cannot be reached."""
    return "UNKNOWN" if down is not None and state in SERVE_CONFIRMED_STATES else state


def shown_reason(state: ModelState, reason: str, down: dict | None) -> str:
    if down is None or state not in SERVE_CONFIRMED_STATES:
        return reason
    return f"cluster unreachable since {down['since'][:19]}Z; last seen {state}" + (f"; {reason}" if reason else "")


def model_exit_code(state: ModelState, rejected: bool, down: bool) -> int:
    """What `status MODEL` exits with (docs/cli.md): 1 when the model failed or its latest spec
    was rejected (what runs is not what was committed), 3 when Serve cannot be reached to
    confirm its state (shown UNKNOWN), else 0. A listing always exits 0."""
    if state == ModelState.FAILED or rejected:
        return EXIT_FAILED
    if shown_state(state, {} if down else None) == "UNKNOWN":
        return EXIT_ENVIRONMENT
    return EXIT_OK


def _open_store(ctx: typer.Context):
    from daemon.store import Store

    return Store.open_readonly(load_config(ctx).state.db)


def status(
    ctx: typer.Context,
    model: Optional[str] = typer.Argument(None, help="A model: suffix, full model id, or model key."),
    user: Optional[str] = typer.Option(None, "--user", "-u", help="Only this user's models."),
    all_: bool = typer.Option(False, "--all", "-a", help="Include DELETED models."),
    output: Output = OutputOption,
) -> None:
    """List models with their state, or show one model in detail with its recent events.

    Exit 0 for a listing. For one MODEL: 1 when it FAILED or its latest spec was rejected, 3 when
    Ray Serve cannot be reached to confirm its state (UNKNOWN), else 0.
    """
    from daemon.config import openai_base_url
    from daemon.core.describe import describe_event, problem_text, reason_of, replicas_line, replicas_text

    config = load_config(ctx)
    store = _open_store(ctx)
    base_url = openai_base_url(config)
    rejections = {r.spec_path: r for r in store.rejections(user)}
    down = cluster_down(store)
    cluster = {"reachable": down is None, **(down or {})}
    views = _replica_views(store)
    if model is not None:
        row = store.find_model(model, user_id=user)
        events = store.events(model_key=row.model_key, spec_path=row.spec_path, limit=EVENTS_IN_DETAIL)
        rejection = rejections.get(row.spec_path) if row.live else None
        code = model_exit_code(row.state, rejection is not None, down is not None)
        if output is Output.json:
            print_json({"openai_base_url": base_url, "cluster": cluster,
                        "model": {**row.to_dict(), "state_shown": shown_state(row.state, down),
                                  "replicas": views(row)},
                        "rejection": rejection.to_dict() if rejection else None,
                        "events": [e.to_dict() for e in events]})
            raise typer.Exit(code)
        r = row.resolved
        fields = [("Model", row.model_id), ("User", row.user_id), ("State", shown_state(row.state, down)),
                  ("Reason", shown_reason(row.state, reason_of(row, rejection), down)),
                  ("Replicas", replicas_line(views(row))),
                  *([("Autoscaling", r["autoscaling"])] if r.get("autoscaling") else []),
                  *([("Suspended", "yes: set suspended: false to resume")] if r.get("suspended") else []),
                  ("GPUs per replica", r["gpus_per_replica"]), ("Source", r["model_source"]),
                  ("Engine kwargs", r["engine_kwargs"] or "{}"),
                  *([("Base model", f"{r['base_model']} (a LoRA adapter: runs on its replicas)")]
                    if r.get("base_model") else []),
                  *([("Adapters", r["adapters"])] if r.get("adapters") else []),
                  ("Spec", row.spec_path),
                  ("Generation", f"{row.generation} (applied: {row.applied_generation or '-'})"),
                  ("Last commit", f"{row.commit_sha[:12]} by {row.commit_author}"),
                  ("Created", row.created_at), ("Updated", row.updated_at), ("Key", row.model_key),
                  ("Endpoint", f"{base_url}  (model: {row.model_id})")]
        width = max(len(k) for k, _ in fields)
        for key, value in fields:
            typer.echo(f"{key + ':':<{width + 1}} {printable(value)}")
        typer.echo("\nEvents:")
        for e in events:
            typer.echo(f"  {e.time[:19]}Z  {e.event_type:<18} {printable(describe_event(e))}")
        raise typer.Exit(code)

    rows = store.list_models(user_id=user, include_deleted=all_)
    rows.sort(key=lambda m: (m.user_id, m.model_id))
    live_paths = {m.spec_path for m in rows if m.live}
    stray = [rj for path, rj in rejections.items() if path not in live_paths]
    lease = store.lease_view()
    if lease is not None:
        lease = lease_status(lease, _last_reconcile(load_config(ctx).state.db), config.serving.serve.lease_seconds,
                             datetime.now(timezone.utc))
    from daemon.remote import fetch_line, fetch_summary

    fetched = fetch_summary(config)  # a remote gitops.repo: how argusd's fetches of it go
    if output is Output.json:
        print_json({"openai_base_url": base_url, "daemon": lease, "cluster": cluster, "gitops_fetch": fetched,
                    "models": [{**m.to_dict(), "state_shown": shown_state(m.state, down), "replicas": views(m),
                                "reason": shown_reason(m.state, reason_of(m, rejections.get(m.spec_path)
                                                                          if m.live else None), down)}
                               for m in rows],
                    "rejected_specs": [r.to_dict() for r in stray]})
        return
    from tabulate import tabulate

    # An adapter has no replicas or GPUs of its own: "-" (it runs on its base's).
    # REPLICAS: "2", or autoscaled "1 of 0-3" (what the store knows: 0 while idle); GPUS: reserved.
    table = [[m.model_id, m.user_id, shown_state(m.state, down), replicas_text(views(m)),
              "-" if m.resolved.get("base_model") else
              (0 if m.resolved.get("suspended") else m.resolved["num_replicas"] * m.resolved["gpus_per_replica"]),
              age(m.updated_at),
              _clip(printable(shown_reason(m.state, reason_of(m, rejections.get(m.spec_path) if m.live else None),
                                           down)))] for m in rows]
    typer.echo(f"OpenAI base URL: {base_url}")
    if lease is not None:
        typer.echo(f"argusd: {daemon_line(lease)}")
    if fetched is not None:
        typer.echo(printable(fetch_line(fetched)))
    if down is not None:
        typer.echo(f"Ray Serve: unreachable since {down['since'][:19]}Z ({printable(down['message'])}); "
                   "states below are the last ones seen")
    if table:
        typer.echo(tabulate(table, headers=["MODEL", "USER", "STATE", "REPLICAS", "GPUS", "UPDATED", "REASON"],
                            tablefmt="plain"))
    else:
        typer.echo("No models." if not user else f"No models for user {user}.")
    if stray:
        typer.echo("\nRejected specs (not applied):")
        for r in stray:
            typer.echo(f"  {_clip(printable(problem_text(r.problems[0])), 160)}")


def _replica_views(store):
    """model row -> its replicas as describe.replicas_view reads them from the store's events."""
    from daemon.core.describe import replicas_view
    from daemon.core.states import EventType

    newest = store.last_events()
    scaled = store.last_events_of((EventType.IDLE, EventType.WOKE))
    woke = store.last_events_of((EventType.WOKE,))
    return lambda row: replicas_view(row, newest.get(row.model_key), scaled.get(row.model_key),
                                     woke.get(row.model_key))


def _last_reconcile(db: str) -> datetime | None:
    """When this store's argusd last finished a reconcile tick that reached Serve: it touches its
    writer lock file then (daemon/argusd.py). None: no argusd ever ran on this store."""
    import os

    from daemon.store import WriterLock

    try:
        return datetime.fromtimestamp(os.stat(WriterLock(db).path).st_mtime, timezone.utc)
    except OSError:
        return None


def lease_status(view: dict, last_reconcile: datetime | None, lease_seconds: float, now: datetime) -> dict:
    """The stored lease view with what follows from the time: an active daemon renews its lease
    only in ticks that reach Serve, so its lease has expired once `lease_seconds` have passed
    since the last such tick (it was killed, stopped, or cannot reach Serve). `expired`: None
    when unknown (no tick recorded, or the view names another daemon's lease)."""
    from daemon.core.states import Role

    expires = last_reconcile + timedelta(seconds=lease_seconds) if last_reconcile is not None else None
    stale = expires is not None and lease_seconds > 0 and now >= expires
    mine = view["role"] in (Role.ACTIVE, Role.CLAIMING)
    return {**view, "last_reconcile": _iso(last_reconcile), "expires": _iso(expires) if mine else None,
            "expired": (stale if mine else None) if expires is not None else None, "stale": stale}


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None


def daemon_line(lease: dict) -> str:
    """Which argusd reconciles the cluster, as this store's argusd last saw the lease."""
    from daemon.serving.lease import Role, display_name

    me = printable(display_name(lease["me"]))
    since = f" since {lease['since'][:19]}Z"
    live = "(`argusctl doctor` reads the lease live)"
    if lease.get("stale"):
        last = f"{lease['last_reconcile'][:19]}Z"
        if lease["role"] in (Role.ACTIVE, Role.CLAIMING):
            was = "the active one" if lease["role"] == Role.ACTIVE else "claiming the lease"
            return (f"this store's daemon ({me}) was {was}{since}; its lease expired at "
                    f"{lease['expires'][:19]}Z (no reconcile since {last}: argusd stopped or cannot reach Serve) {live}")
        holder = printable(display_name(lease["holder"])) if lease["holder"] else "none"
        return f"this store's daemon ({me}) stood by; active then: {holder} (as of {last}: no reconcile since) {live}"
    if lease["role"] == Role.ACTIVE:
        return f"this store's daemon ({me}) is the active one{since}"
    if lease["role"] == Role.CLAIMING:
        return f"this store's daemon ({me}) is claiming the lease{since}"
    holder = printable(display_name(lease["holder"])) if lease["holder"] else "none"
    return f"this store's daemon ({me}) stands by; active: {holder}{since} {live}"


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def logs(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="A model: suffix, full model id, or model key."),
    user: Optional[str] = typer.Option(None, "--user", "-u", help="Resolve a suffix among this user's models."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events until interrupted."),
    tail: Optional[int] = typer.Option(None, "--tail", help="Only the last N events.", min=1),
    output: Output = OutputOption,
) -> None:
    """A model's events, newest last: what git changed, what the daemon did, and why."""
    store = _open_store(ctx)
    row = store.find_model(model, user_id=user)
    events = store.events(model_key=row.model_key, spec_path=row.spec_path, limit=tail)
    _print_events(events, output)
    if not follow:
        return
    last = events[-1].id if events else 0
    try:
        while True:
            time.sleep(0.5)
            new = store.events(model_key=row.model_key, spec_path=row.spec_path, after_id=last)
            if new:
                _print_events(new, output)
                last = new[-1].id
    except KeyboardInterrupt:
        return


def _print_events(events, output: Output) -> None:
    import json

    from daemon.core.describe import describe_event

    for e in events:
        if output is Output.json:  # one JSON object per line, so --follow streams
            typer.echo(json.dumps(e.to_dict(), sort_keys=True))
        else:
            typer.echo(f"{e.time[:19]}Z  {e.event_type:<18} {printable(describe_event(e))}")


def register(app: typer.Typer) -> None:
    app.command()(status)
    app.command()(logs)

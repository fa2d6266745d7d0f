"""`argusctl token create/list/revoke`: API tokens for argusd's management API and web UI."""
from __future__ import annotations

from typing import Optional

import typer

from argusctl.common import Output, OutputOption, load_config, print_json, printable

app = typer.Typer(help="API tokens for argusd's HTTP API and web UI (each writes as its user).",
                  no_args_is_help=True, rich_markup_mode=None)


def _store(ctx: typer.Context):
    from daemon.api.tokens import TokenStore, tokens_path

    return TokenStore(tokens_path(load_config(ctx).state.db))


@app.command()
def create(
    ctx: typer.Context,
    user: str = typer.Option(..., "--user", "-u", help="The user the token acts as (models.d/<user>/)."),
    admin: bool = typer.Option(False, "--admin", help="Also read every user's models and the admin status."),
    name: Optional[str] = typer.Option(None, "--name", help="git author name for this user's API writes "
                                                           "(default: the user id)."),
    email: Optional[str] = typer.Option(None, "--email", help="git author email (default: the first of the user's "
                                                             "git_identities in the config, else <user>@argus.local)."),
    output: Output = OutputOption,
) -> None:
    """Make a token. It is printed once, as the last line; only its hash is kept."""
    from daemon.core.spec import validate_user_id
    from daemon.errors import UsageError

    config = load_config(ctx)
    try:
        validate_user_id(user)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    owners = config.owners()
    allowed = owners.get(user, ())
    if owners and user not in owners:
        raise UsageError(f"user {user!r} is not in the config's users map, so the repo would refuse their commits; "
                         "add them there first")
    if email is not None and allowed and email not in allowed:
        raise UsageError(f"{email} is not one of {user}'s git_identities ({', '.join(allowed)}): the repo would "
                         "refuse the commits; pick one of those or add it to the config")
    email = email or (allowed[0] if allowed else f"{user}@argus.local")
    info, token = _store(ctx).create(user, admin, name or user, email)
    if output is Output.json:
        print_json({**info.to_dict(), "token": token})
        return
    typer.echo(f"Token {info.token_id} for {user}{' (admin)' if admin else ''}, committing as "
               f"{printable(info.git_name)} <{printable(info.git_email)}>. Keep it secret; it is not shown again:",
               err=True)
    typer.echo(token)


@app.command("list")
def list_(ctx: typer.Context, output: Output = OutputOption) -> None:
    """Every token (never the token itself): id, user, admin, git identity, created, revoked."""
    tokens = _store(ctx).list()
    if output is Output.json:
        print_json({"tokens": [t.to_dict() for t in tokens]})
        return
    from tabulate import tabulate

    if not tokens:
        typer.echo("No tokens. Make one with `argusctl token create --user <user>`.")
        return
    typer.echo(tabulate([[t.token_id, t.user, "yes" if t.admin else "", printable(f"{t.git_name} <{t.git_email}>"),
                          t.created_at, t.revoked_at or ""] for t in tokens],
                        headers=["ID", "USER", "ADMIN", "COMMITS AS", "CREATED", "REVOKED"], tablefmt="plain"))


@app.command()
def revoke(ctx: typer.Context, token_id: str = typer.Argument(..., help="The token's id (argusctl token list).")) -> None:
    """Revoke a token: its requests and UI sessions get 401 from the next request on."""
    info = _store(ctx).revoke(token_id)
    typer.echo(f"Token {info.token_id} of {info.user} revoked.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="token")

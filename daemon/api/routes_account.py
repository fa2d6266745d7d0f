"""Who you are: /api/v2/whoami, and the UI's sign-in and sign-out (the session cookie)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from daemon.api.dependencies import SESSION_COOKIE, SESSION_SECONDS, ApiContext, context, reader, ui_only
from daemon.api.tokens import Identity
from daemon.errors import UnauthenticatedError

router = APIRouter()


def local_page(target: str) -> str:
    """Where the UI may send someone after signing in: its own pages only."""
    return target if target.startswith("/ui/") else "/ui/serving"


class SignIn(BaseModel):
    """The body of POST /ui/session (the sign-in page sends it)."""

    model_config = ConfigDict(strict=True, extra="forbid")
    token: str
    next: str = "/ui/serving"


@router.get("/api/v2/whoami", tags=["auth"])
def whoami(who: Identity = Depends(reader), ctx: ApiContext = Depends(context)) -> dict:
    return {"user": who.user, "admin": who.admin, "git_identity": f"{who.git_name} <{who.git_email}>",
            "openai_base_url": ctx.openai_base_url}


@router.post("/ui/session", include_in_schema=False, dependencies=[Depends(ui_only)])
def ui_session(body: SignIn, ctx: ApiContext = Depends(context)) -> Response:
    """Sign in (the login page's script): the session cookie and the page to open."""
    token = body.token.strip()
    if ctx.tokens.authenticate(token) is None:
        raise UnauthenticatedError("That token is unknown or revoked; ask an admin for a new one.")
    response = JSONResponse({"next": local_page(body.next)})
    response.set_cookie(SESSION_COOKIE, ctx.sessions.open(token), max_age=SESSION_SECONDS, httponly=True,
                        secure=True, samesite="strict", path="/")
    return response


@router.post("/ui/logout", include_in_schema=False, dependencies=[Depends(ui_only)])
def ui_logout(request: Request, ctx: ApiContext = Depends(context)) -> Response:
    ctx.sessions.close(request.cookies.get(SESSION_COOKIE, ""))
    response = JSONResponse({"next": "/ui/login"})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response

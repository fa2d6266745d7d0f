"""The web UI's pages: one HTML shell per page, filled in by static/app.js from
the API. Sign-in and sign-out are in routes_account."""
from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any, Callable, Optional

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from daemon.api.dependencies import ApiContext, context, session_identity
from daemon.api.routes_account import local_page
from daemon.api.tokens import Identity
from daemon.errors import NotFoundError

STATIC_TYPES = {"app.js": "text/javascript", "app.css": "text/css"}

router = APIRouter(include_in_schema=False)


def static_text(name: str) -> str:
    return resources.files("daemon.api").joinpath("static", name).read_text()


def page(ctx: ApiContext, title: str, body_class: str, who: Optional[Identity], data: dict[str, Any],
         status_code: int = 200) -> HTMLResponse:
    user = (f'<span class="who">{html.escape(who.user)}{" (admin)" if who.admin else ""}</span>'
            '<form method="post" action="/ui/logout" id="sign-out"><button class="link">Sign out</button></form>'
            ) if who else ""
    nav = ('<nav><a class="brand" href="/ui/serving">argus</a><a href="/ui/serving" class="nav-item">Serving</a>'
           f'<a href="/ui/serving/new" class="nav-item">New model</a><div class="spacer"></div>{user}</nav>'
           if who else '<nav><a class="brand" href="/ui/serving">argus</a></nav>')
    text = (static_text("page.html").replace("{{title}}", html.escape(title)).replace("{{nav}}", nav)
            .replace("{{page}}", body_class)
            .replace("{{data}}", html.escape(json.dumps({**data, "openai_base_url": ctx.openai_base_url})))
            .replace("{{openai_base_url}}", html.escape(ctx.openai_base_url)))
    return HTMLResponse(text, status_code=status_code, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                       "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'"})


def signed_in(request: Request, who: Optional[Identity], render: Callable[[Identity], Response]) -> Response:
    if who is None:
        return RedirectResponse(f"/ui/login?next={request.url.path}", status_code=303)
    return render(who)


@router.get("/")
@router.get("/ui")
def ui_root() -> Response:
    return RedirectResponse("/ui/serving", status_code=303)


@router.get("/ui/login")
def ui_login(next: str = "/ui/serving", ctx: ApiContext = Depends(context)) -> Response:  # noqa: A002
    return page(ctx, "Sign in", "login", None, {"next": local_page(next)})


@router.get("/ui/serving")
def ui_list(request: Request, who: Optional[Identity] = Depends(session_identity),
            ctx: ApiContext = Depends(context)) -> Response:
    return signed_in(request, who, lambda w: page(ctx, "Serving", "list", w, {"user": w.user, "admin": w.admin}))


@router.get("/ui/serving/new")
def ui_new(request: Request, who: Optional[Identity] = Depends(session_identity),
           ctx: ApiContext = Depends(context)) -> Response:
    return signed_in(request, who, lambda w: page(ctx, "New model", "new", w, {"user": w.user}))


@router.get("/ui/serving/{model_key}")
def ui_detail(request: Request, model_key: str, who: Optional[Identity] = Depends(session_identity),
              ctx: ApiContext = Depends(context)) -> Response:
    return signed_in(request, who, lambda w: page(ctx, "Model", "detail", w, {"user": w.user, "model_key": model_key}))


def not_found_page(request: Request) -> HTMLResponse:
    """A page no route has: a page saying so (404), with the way back to the models."""
    ctx = context(request)
    who = session_identity(request)
    return page(ctx, "Not found", "notfound", who, {"path": request.url.path}, status_code=404)


@router.get("/ui/static/{name}")
def ui_static(name: str) -> Response:
    if name not in STATIC_TYPES:
        raise NotFoundError(f"no file {name}")
    return Response(static_text(name), media_type=STATIC_TYPES[name], headers={"Cache-Control": "no-cache"})

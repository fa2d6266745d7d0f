"""The management API and web UI over HTTP (FastAPI). It maps requests onto ModelService
and the engine's errors onto status codes; it decides nothing itself.

Auth: `Authorization: Bearer <token>` (argusctl token create), or the UI's session cookie
(HttpOnly, Secure, SameSite=Strict) made by signing in with a token. Every request that writes
a cookie or writes by cookie (sign-in, sign-out, a model change) must come from the UI's own
pages (`from_the_ui`), which a cross-site form or script cannot fake.

Writes run off the event loop (`WriteLanes`): their git work and the wait for argusd block a
worker thread, never the loop that answers everyone else.
"""
from __future__ import annotations

import asyncio
import functools
import html
import json
import secrets
import threading
import time
from importlib import resources
from typing import Any, Callable, Optional, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from daemon.api.service import ForbiddenError, ModelService
from daemon.api.tokens import Identity, TokenStore
from daemon.errors import (ArgusError, ConflictError, GitError, NotFoundError, ProblemKind, RefusedError, SpecError,
                           StoreError, UsageError)

SESSION_COOKIE = "argus_session"
SESSION_SECONDS = 12 * 3600
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
MAX_BODY = 1 << 20
UI_HEADER = "x-argus-ui"
# Worker threads for writes, apart from the pool that serves reads: a write holds one for its
# git work and up to RECORD_TIMEOUT_SECONDS of waiting for argusd. One user holds at most one.
WRITE_THREADS = 32
T = TypeVar("T")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, problems: Optional[list] = None):
        super().__init__(message)
        self.status, self.code, self.message, self.problems = status, code, message, problems


class ScaleRequest(BaseModel):
    """The body of PATCH. Strict, as specs are: "2", true and 2.0 are not a replica count, and a
    key this route does not know is an error, not something silently ignored."""

    model_config = ConfigDict(strict=True, extra="forbid")
    num_replicas: int = Field(..., ge=1, description="The new number of replicas.")


class SignIn(BaseModel):
    """The body of POST /ui/session (the sign-in page sends it)."""

    model_config = ConfigDict(strict=True, extra="forbid")
    token: str
    next: str = "/ui/serving"


def from_the_ui(headers: Any) -> Optional[str]:
    """Why a request that writes by cookie, or writes the cookie (sign-in, sign-out), is not
    from argus's own pages; None when it is. The one rule against cross-site requests.

    The UI's scripts send `X-Argus-UI: 1`. A form on another site cannot set a header, and a
    script there could only with a CORS preflight this app never grants. Browsers also say
    where a request comes from in `Sec-Fetch-Site`, which no page can set; anything but
    same-origin is refused. (Origin is not compared with Host: a TLS proxy in front rewrites
    one and not the other.)"""
    if headers.get(UI_HEADER) != "1":
        return "this must come from the argus UI (header X-Argus-UI: 1); scripts use a Bearer token"
    site = headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return f"a {site} request cannot use the argus UI's session; open the UI itself"
    return None


class WriteLanes:
    """Runs writes in worker threads, off the event loop, so one user's write (git, the hook,
    the wait for argusd) never stalls another user's request. One user's writes go one at a
    time (they share that user's clone); a user's queued writes wait on the loop, not in a
    thread, so they cannot take the threads other users' writes need."""

    def __init__(self, threads: int = WRITE_THREADS):
        self.threads = threads
        self._users: dict[str, asyncio.Lock] = {}
        self._limiter: Optional[anyio.CapacityLimiter] = None

    async def run(self, user: str, fn: Callable[..., T], *args: Any) -> T:
        if self._limiter is None:  # made on the loop that uses it
            self._limiter = anyio.CapacityLimiter(self.threads)
        async with self._users.setdefault(user, asyncio.Lock()):
            return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._limiter)


def status_of(exc: ArgusError) -> tuple[int, str]:
    """The HTTP status and error code for an engine error (the seed's M3.3 mapping)."""
    if isinstance(exc, SpecError):
        kinds = {p.kind for p in exc.problems}
        if ProblemKind.SYNTAX in kinds:
            return 400, "yaml_invalid"
        if ProblemKind.FORBIDDEN in kinds:
            return 403, "path_forbidden"
        return 422, "spec_invalid"
    if isinstance(exc, NotFoundError):
        return 404, "not_found"
    if isinstance(exc, (ForbiddenError, RefusedError)):
        return 403, "forbidden"
    if isinstance(exc, ConflictError):
        return 409, "conflict"
    if isinstance(exc, UsageError):
        return 400, "bad_request"
    if isinstance(exc, (GitError, StoreError)):
        return 503, "unavailable"
    return 500, "error"


class Sessions:
    """UI sign-ins: a random id in the cookie -> (token, expiry). Kept in memory: a restart of
    argusd signs everyone out, and a revoked token ends its sessions at the next request."""

    def __init__(self) -> None:
        self._by_id: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def open(self, token: str) -> str:
        session = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._by_id = {k: v for k, v in self._by_id.items() if v[1] > now}
            self._by_id[session] = (token, now + SESSION_SECONDS)
        return session

    def token(self, session: str) -> Optional[str]:
        with self._lock:
            found = self._by_id.get(session)
        return found[0] if found and found[1] > time.monotonic() else None

    def close(self, session: str) -> None:
        with self._lock:
            self._by_id.pop(session, None)


def static_text(name: str) -> str:
    return resources.files("daemon.api").joinpath("static", name).read_text()


def create_app(service: ModelService, tokens: TokenStore, openai_base_url: str) -> FastAPI:
    app = FastAPI(title="argus management API", version="2", openapi_url="/api/v2/openapi.json",
                  docs_url=None, redoc_url=None,
                  description="Every write is a git commit by the caller; argusd serves what git says.")
    sessions = Sessions()
    lanes = WriteLanes()

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        body: dict[str, Any] = {"error": exc.code, "message": exc.message}
        if exc.problems is not None:
            body["problems"] = exc.problems
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(body, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
                          for e in exc.errors())
        if request.method == "PATCH":
            where += '; send JSON {"num_replicas": N} with N a whole number >= 1 (e.g. {"num_replicas": 2})'
        return JSONResponse({"error": "invalid_request", "message": where}, status_code=422)

    @app.exception_handler(ArgusError)
    async def engine_error(_: Request, exc: ArgusError) -> JSONResponse:
        status, code = status_of(exc)
        body: dict[str, Any] = {"error": code, "message": str(exc)}
        if isinstance(exc, SpecError):
            body["message"] = "the spec is not valid; fix each problem at its line:col and send it again"
            body["problems"] = [p.to_dict() for p in exc.problems]
        return JSONResponse(body, status_code=status)

    def identity_of(request: Request, writing: bool = False) -> Identity:
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, "unauthenticated", "use `Authorization: Bearer <token>`")
            found = tokens.authenticate(token.strip())
        else:
            session = request.cookies.get(SESSION_COOKIE)
            token = sessions.token(session) if session else None
            if token is None:
                raise ApiError(401, "unauthenticated", "no token: send `Authorization: Bearer <token>` "
                               "(an admin makes one with `argusctl token create --user <you>`)")
            refused = from_the_ui(request.headers) if writing else None
            if refused is not None:
                raise ApiError(403, "forbidden", f"a write signed in by cookie: {refused}")
            found = tokens.authenticate(token)
        if found is None:
            raise ApiError(401, "unauthenticated", "this token is unknown or revoked; ask for a new one")
        return found

    async def yaml_body(request: Request) -> bytes:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in YAML_TYPES:
            raise ApiError(415, "unsupported_media_type",
                           f"send the spec as YAML with `Content-Type: application/yaml` (got {kind or 'none'})")
        body = await request.body()
        if len(body) > MAX_BODY:
            raise ApiError(413, "too_large", f"the spec is over {MAX_BODY} bytes")
        return body

    # -- the API (the seed's M3 routes) ------------------------------------------------------

    @app.get("/api/v2/whoami", tags=["auth"])
    def whoami(request: Request) -> dict:
        who = identity_of(request)
        return {"user": who.user, "admin": who.admin, "git_identity": f"{who.git_name} <{who.git_email}>",
                "openai_base_url": openai_base_url}

    @app.post("/api/v2/serve/models", status_code=202, tags=["models"],
              openapi_extra={"requestBody": {"required": True, "content": {"application/yaml": {
                  "schema": {"type": "string"}, "example": "model_id: chat\nmodel_source: $HOME/common/hf/Model\n"}}}})
    async def create_model(request: Request) -> dict:
        """Create or change a model from a ServingSpec (YAML). A commit by you; 202 once argusd recorded it."""
        who = await run_in_threadpool(identity_of, request, True)
        data = await yaml_body(request)
        return (await lanes.run(who.user, service.create, who, data)).to_dict()

    @app.post("/api/v2/serve/lint", tags=["models"])
    async def lint_spec(request: Request) -> dict:
        """Every problem of a spec as you would commit it (nothing is written)."""
        who = await run_in_threadpool(identity_of, request)
        data = await yaml_body(request)
        return {"problems": await run_in_threadpool(service.lint, who, data)}

    @app.get("/api/v2/serve/models", tags=["models"])
    def list_models(request: Request, user: Optional[str] = None, all: bool = False) -> dict:  # noqa: A002
        """Your models (an admin sees every user's; `?user=` filters). `all=true` includes DELETED ones."""
        who = identity_of(request)
        return {**service.list_models(who, user, include_deleted=all), "openai_base_url": openai_base_url}

    @app.get("/api/v2/serve/models/{model_key}", tags=["models"])
    def get_model(request: Request, model_key: str, after: int = 0, limit: int = 50) -> dict:
        """One model: its resolved spec, events (paged: `after` an event id) and live Serve status."""
        who = identity_of(request)
        return {**service.get_model(who, model_key, after=after, limit=max(1, min(limit, 500))),
                "openai_base_url": openai_base_url}

    @app.patch("/api/v2/serve/models/{model_key}", status_code=202, tags=["models"])
    async def scale_model(request: Request, model_key: str, body: ScaleRequest) -> dict:
        """Set num_replicas (a commit by you)."""
        who = await run_in_threadpool(identity_of, request, True)
        return (await lanes.run(who.user, service.scale, who, model_key, body.num_replicas)).to_dict()

    @app.delete("/api/v2/serve/models/{model_key}", status_code=202, tags=["models"])
    async def delete_model(request: Request, model_key: str) -> dict:
        """Delete a model: remove its spec (a commit by you)."""
        who = await run_in_threadpool(identity_of, request, True)
        if await request.body():
            raise ApiError(422, "invalid_request", "DELETE takes no body; send the request without one")
        return (await lanes.run(who.user, service.delete, who, model_key)).to_dict()

    @app.get("/api/v2/serve/status", tags=["admin"])
    def admin_status(request: Request) -> dict:
        """Admin only: Serve applications, cluster GPUs, the sync cursor and argusd's health."""
        return service.status(identity_of(request))

    # -- the UI (the seed's M7 pages) --------------------------------------------------------

    def page(title: str, body_class: str, who: Optional[Identity], data: dict[str, Any]) -> HTMLResponse:
        user = (f'<span class="who">{html.escape(who.user)}{" (admin)" if who.admin else ""}</span>'
                '<form method="post" action="/ui/logout" id="sign-out"><button class="link">Sign out</button></form>') if who else ""
        nav = ('<nav><a class="brand" href="/ui/serving">argus</a><a href="/ui/serving" class="nav-item">Serving</a>'
               f'<a href="/ui/serving/new" class="nav-item">New model</a><div class="spacer"></div>{user}</nav>'
               if who else '<nav><span class="brand">argus</span></nav>')
        text = (static_text("page.html").replace("{{title}}", html.escape(title)).replace("{{nav}}", nav)
                .replace("{{page}}", body_class)
                .replace("{{data}}", html.escape(json.dumps({**data, "openai_base_url": openai_base_url})))
                .replace("{{openai_base_url}}", html.escape(openai_base_url)))
        return HTMLResponse(text, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                           "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'"})

    def ui_identity(request: Request) -> Optional[Identity]:
        session = request.cookies.get(SESSION_COOKIE)
        token = sessions.token(session) if session else None
        return tokens.authenticate(token) if token else None

    def signed_in(request: Request, render: Callable[[Identity], Response]) -> Response:
        who = ui_identity(request)
        if who is None:
            return RedirectResponse(f"/ui/login?next={request.url.path}", status_code=303)
        return render(who)

    @app.get("/", include_in_schema=False)
    @app.get("/ui", include_in_schema=False)
    def ui_root() -> Response:
        return RedirectResponse("/ui/serving", status_code=303)

    def local_page(target: str) -> str:
        return target if target.startswith("/ui/") else "/ui/serving"

    @app.get("/ui/login", include_in_schema=False)
    def ui_login(request: Request, next: str = "/ui/serving") -> Response:  # noqa: A002
        return page("Sign in", "login", None, {"next": local_page(next)})

    def ui_only(request: Request) -> None:
        # Sign-in and sign-out write the cookie: the same rule as every write by cookie, or a
        # site could sign a visitor into its own account (login CSRF) or out of theirs.
        refused = from_the_ui(request.headers)
        if refused is not None:
            raise ApiError(403, "forbidden", f"signing in or out: {refused}")

    @app.post("/ui/session", include_in_schema=False, dependencies=[Depends(ui_only)])
    def ui_session(body: SignIn) -> Response:
        """Sign in (the login page's script): the session cookie and the page to open."""
        token = body.token.strip()
        if tokens.authenticate(token) is None:
            raise ApiError(401, "unauthenticated", "That token is unknown or revoked; ask an admin for a new one.")
        response = JSONResponse({"next": local_page(body.next)})
        response.set_cookie(SESSION_COOKIE, sessions.open(token), max_age=SESSION_SECONDS, httponly=True,
                            secure=True, samesite="strict", path="/")
        return response

    @app.post("/ui/logout", include_in_schema=False, dependencies=[Depends(ui_only)])
    def ui_logout(request: Request) -> Response:
        sessions.close(request.cookies.get(SESSION_COOKIE, ""))
        response = JSONResponse({"next": "/ui/login"})
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/ui/serving", include_in_schema=False)
    def ui_list(request: Request) -> Response:
        return signed_in(request, lambda who: page("Serving", "list", who, {"user": who.user, "admin": who.admin}))

    @app.get("/ui/serving/new", include_in_schema=False)
    def ui_new(request: Request) -> Response:
        return signed_in(request, lambda who: page("New model", "new", who, {"user": who.user}))

    @app.get("/ui/serving/{model_key}", include_in_schema=False)
    def ui_detail(request: Request, model_key: str) -> Response:
        return signed_in(request, lambda who: page("Model", "detail", who, {"user": who.user,
                                                                             "model_key": model_key}))

    @app.get("/ui/static/{name}", include_in_schema=False)
    def ui_static(name: str) -> Response:
        kinds = {"app.js": "text/javascript", "app.css": "text/css"}
        if name not in kinds:
            raise ApiError(404, "not_found", f"no file {name}")
        return Response(static_text(name), media_type=kinds[name], headers={"Cache-Control": "no-cache"})

    return app

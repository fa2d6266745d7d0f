"""What every router of the API and UI shares (FastAPI's "dependencies"): the context the app
runs with, who a request acts as, the one rule against cross-site requests, and the lanes
writes run in.

Auth: `Authorization: Bearer <token>` (argusctl token create), or the UI's session cookie
(HttpOnly, Secure, SameSite=Strict) made by signing in with a token. Every request that writes
a cookie or writes by cookie (sign-in, sign-out, a model change) must come from the UI's own
pages (`from_the_ui`), which a cross-site form or script cannot fake.

Writes run off the event loop (`WriteLanes`): their git work and the wait for argusd block a
worker thread, never the loop that answers everyone else. The identity dependencies are plain
functions, which FastAPI runs in its thread pool, so reading the token store never blocks the
loop either.
"""
from __future__ import annotations

import asyncio
import functools
import secrets
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Optional, TypeVar

import anyio
import anyio.to_thread
from fastapi import Request

from daemon.api.service import ModelService
from daemon.api.tokens import Identity, TokenStore
from daemon.errors import ArgusError, Fault, ForbiddenError, UnauthenticatedError

SESSION_COOKIE = "argus_session"
SESSION_SECONDS = 12 * 3600
UI_HEADER = "x-argus-ui"
# Worker threads for writes, apart from the pool that serves reads: a write holds one for its
# git work and up to RECORD_TIMEOUT_SECONDS of waiting for argusd. One user holds at most one.
WRITE_THREADS = 32
T = TypeVar("T")


class RequestShape(str, Enum):
    """What is wrong with an HTTP request before argus reads what it says; HTTP has a status of
    its own for each (the value is the API's error code)."""

    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    TOO_LARGE = "too_large"
    INVALID = "invalid_request"

    @property
    def status(self) -> int:
        return {RequestShape.UNSUPPORTED_MEDIA_TYPE: 415, RequestShape.TOO_LARGE: 413, RequestShape.INVALID: 422}[self]


class RequestError(ArgusError):
    """The request itself is not one this API takes (its media type, size or body): the caller's
    input, as a spec error is, with HTTP's own status for its shape."""

    fault = Fault.INPUT

    def __init__(self, shape: RequestShape, message: str):
        super().__init__(message)
        self.shape = shape


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


@dataclass
class ApiContext:
    """What the routers work with; one per app (in `app.state.argus`)."""

    service: ModelService
    tokens: TokenStore
    openai_base_url: str
    sessions: Sessions = field(default_factory=Sessions)
    lanes: WriteLanes = field(default_factory=WriteLanes)


def context(request: Request) -> ApiContext:
    return request.app.state.argus


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


def _identity(request: Request, writing: bool) -> Identity:
    ctx = context(request)
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthenticatedError("use `Authorization: Bearer <token>`")
        found = ctx.tokens.authenticate(token.strip())
    else:
        session = request.cookies.get(SESSION_COOKIE)
        token = ctx.sessions.token(session) if session else None
        if token is None:
            raise UnauthenticatedError("no token: send `Authorization: Bearer <token>` "
                                       "(an admin makes one with `argusctl token create --user <you>`)")
        refused = from_the_ui(request.headers) if writing else None
        if refused is not None:
            raise ForbiddenError(f"a write signed in by cookie: {refused}")
        found = ctx.tokens.authenticate(token)
    if found is None:
        raise UnauthenticatedError("this token is unknown or revoked; ask for a new one")
    return found


def reader(request: Request) -> Identity:
    """Who a request reads as (a Bearer token or the UI's session)."""
    return _identity(request, writing=False)


def writer(request: Request) -> Identity:
    """Who a request writes as; by cookie only from the UI's own pages."""
    return _identity(request, writing=True)


def session_identity(request: Request) -> Optional[Identity]:
    """Who is signed in to the UI, if anyone (pages redirect to the sign-in page otherwise)."""
    ctx = context(request)
    session = request.cookies.get(SESSION_COOKIE)
    token = ctx.sessions.token(session) if session else None
    return ctx.tokens.authenticate(token) if token else None


def ui_only(request: Request) -> None:
    """Sign-in and sign-out write the cookie: the same rule as every write by cookie, or a site
    could sign a visitor into its own account (login CSRF) or out of theirs."""
    refused = from_the_ui(request.headers)
    if refused is not None:
        raise ForbiddenError(f"signing in or out: {refused}")

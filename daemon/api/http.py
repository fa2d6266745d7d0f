"""The management API and web UI over HTTP (FastAPI): `create_app` puts together the routers
(one per resource, as FastAPI lays out bigger apps) and maps the engine's errors onto status
codes; it decides nothing itself.

- `dependencies`: who a request acts as, the one rule against cross-site requests, the lanes
  writes run in (off the event loop), the context the routers share.
- `routes_models`: /api/v2/serve/models and /lint; `routes_admin`: /api/v2/serve/status;
  `routes_account`: /api/v2/whoami and the UI's sign-in and sign-out; `routes_ui`: the pages;
  `routes_webhooks`: /api/v2/webhooks/<forge>, a forge's push makes argusd fetch now.
"""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from daemon.api import routes_account, routes_admin, routes_models, routes_ui, routes_webhooks
from daemon.api.dependencies import ApiContext, RequestError, RequestShape
from daemon.api.service import ModelService
from daemon.api.tokens import TokenStore
from daemon.errors import ArgusError, Fault, ProblemKind, SpecError

# Whose fault -> HTTP status and error code: the twin of argusctl/common.py's EXIT_CODES, one
# table in docs/api.md. Within a fault HTTP says a little more than an exit code can (below).
HTTP_STATUS: dict[Fault, tuple[int, str]] = {
    Fault.INPUT: (422, "spec_invalid"),
    Fault.USAGE: (400, "bad_request"),
    Fault.UNAUTHENTICATED: (401, "unauthenticated"),
    Fault.NOT_ALLOWED: (403, "forbidden"),
    Fault.NOT_FOUND: (404, "not_found"),
    Fault.CONFLICT: (409, "conflict"),
    Fault.ENVIRONMENT: (503, "unavailable"),
}


def status_of(exc: ArgusError) -> tuple[int, str]:
    """The HTTP status and error code for an error: its fault's, made finer where HTTP has a
    word of its own (a YAML syntax error, a path outside the user's roots, the request's shape)."""
    if isinstance(exc, RequestError):
        return exc.shape.status, exc.shape.value
    if isinstance(exc, SpecError):
        if exc.fault is Fault.NOT_ALLOWED:
            return 403, "path_forbidden"
        if any(p.kind is ProblemKind.SYNTAX for p in exc.problems):
            return 400, "yaml_invalid"
    return HTTP_STATUS[exc.fault]


async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    where = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
                      for e in exc.errors())
    if request.method == "PATCH":
        where += '; send JSON {"num_replicas": N} with N a whole number >= 1 (e.g. {"num_replicas": 2})'
    return await engine_error(request, RequestError(RequestShape.INVALID, where))


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Starlette's own answers (no such route, a method a route does not take): a page for a
    person in a browser, the API's error shape under /api/."""
    if exc.status_code == 404 and not request.url.path.startswith("/api/"):
        return routes_ui.not_found_page(request)
    code = "not_found" if exc.status_code == 404 else "method_not_allowed" if exc.status_code == 405 else "error"
    return JSONResponse({"error": code, "message": f"{exc.detail}: {request.method} {request.url.path}"},
                        status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def engine_error(_: Request, exc: ArgusError) -> JSONResponse:
    status, code = status_of(exc)
    body: dict[str, Any] = {"error": code, "message": str(exc)}
    if isinstance(exc, SpecError):
        body["message"] = "the spec is not valid; fix each problem at its line:col and send it again"
        body["problems"] = [p.to_dict() for p in exc.problems]
    headers = {"WWW-Authenticate": "Bearer"} if exc.fault is Fault.UNAUTHENTICATED else None
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(service: ModelService, tokens: TokenStore, openai_base_url: str) -> FastAPI:
    app = FastAPI(title="argus management API", version="2", openapi_url="/api/v2/openapi.json",
                  docs_url=None, redoc_url=None,
                  description="Every write is a git commit by the caller; argusd serves what git says.")
    app.state.argus = ApiContext(service, tokens, openai_base_url)
    app.add_exception_handler(RequestValidationError, request_invalid)
    app.add_exception_handler(ArgusError, engine_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for routes in (routes_account, routes_models, routes_admin, routes_ui, routes_webhooks):
        app.include_router(routes.router)
    return app

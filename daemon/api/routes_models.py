"""/api/v2/serve/models and /api/v2/serve/lint: the models of the caller.
Every write is a commit by the caller, run in the write lanes (off the event loop)."""
from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from daemon.api.dependencies import ApiContext, RequestError, RequestShape, context, reader, writer
from daemon.api.tokens import Identity

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
MAX_BODY = 1 << 20
SPEC_BODY = {"requestBody": {"required": True, "content": {"application/yaml": {
    "schema": {"type": "string"}, "example": "model_id: chat\nmodel_source: $HOME/common/hf/Model\n"}}}}

router = APIRouter(prefix="/api/v2/serve", tags=["models"])


class ScaleRequest(BaseModel):
    """The body of PATCH. Strict, as specs are: "2", true and 2.0 are not a replica count, and a
    key this route does not know is an error, not something silently ignored."""

    model_config = ConfigDict(strict=True, extra="forbid")
    num_replicas: int = Field(..., ge=1, description="The new number of replicas.")


async def yaml_body(request: Request) -> bytes:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in YAML_TYPES:
        raise RequestError(RequestShape.UNSUPPORTED_MEDIA_TYPE,
                           f"send the spec as YAML with `Content-Type: application/yaml` (got {kind or 'none'})")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise RequestError(RequestShape.TOO_LARGE, f"the spec is over {MAX_BODY} bytes")
    return body


@router.post("/models", status_code=202, openapi_extra=SPEC_BODY)
async def create_model(request: Request, who: Identity = Depends(writer),
                       ctx: ApiContext = Depends(context)) -> dict:
    """Create or change a model from a ServingSpec (YAML). A commit by you; 202 once argusd recorded it."""
    data = await yaml_body(request)
    return (await ctx.lanes.run(who.user, ctx.service.create, who, data)).to_dict()


@router.post("/lint")
async def lint_spec(request: Request, who: Identity = Depends(reader), ctx: ApiContext = Depends(context)) -> dict:
    """Every problem of a spec as you would commit it (nothing is written)."""
    data = await yaml_body(request)
    return {"problems": await run_in_threadpool(ctx.service.lint, who, data)}


@router.get("/models")
def list_models(user: Optional[str] = None, all: bool = False,  # noqa: A002
                who: Identity = Depends(reader), ctx: ApiContext = Depends(context)) -> dict:
    """Your models (an admin sees every user's; `?user=` filters). `all=true` includes DELETED ones."""
    return {**ctx.service.list_models(who, user, include_deleted=all), "openai_base_url": ctx.openai_base_url}


@router.get("/models/{model_key}")
def get_model(model_key: str, after: int = 0, limit: int = 50,
              who: Identity = Depends(reader), ctx: ApiContext = Depends(context)) -> dict:
    """One model: its resolved spec, events (paged: `after` an event id) and live Serve status."""
    return {**ctx.service.get_model(who, model_key, after=after, limit=max(1, min(limit, 500))),
            "openai_base_url": ctx.openai_base_url}


@router.get("/models/{model_key}/traffic")
def model_traffic(model_key: str, who: Identity = Depends(reader), ctx: ApiContext = Depends(context)) -> dict:
    """The model's requests, failures and mean latency over the last 30 minutes, one point per
    argusd tick, from Ray Serve's metrics. `available` false: `problem` says why there are none."""
    return ctx.service.traffic(who, model_key)


@router.patch("/models/{model_key}", status_code=202)
async def scale_model(model_key: str, body: ScaleRequest, who: Identity = Depends(writer),
                      ctx: ApiContext = Depends(context)) -> dict:
    """Set num_replicas (a commit by you)."""
    return (await ctx.lanes.run(who.user, ctx.service.scale, who, model_key, body.num_replicas)).to_dict()


async def no_body(request: Request, what: str) -> None:
    if await request.body():
        raise RequestError(RequestShape.INVALID, f"{what} takes no body; send the request without one")


@router.post("/models/{model_key}/suspend", status_code=202)
async def suspend_model(request: Request, model_key: str, who: Identity = Depends(writer),
                        ctx: ApiContext = Depends(context)) -> dict:
    """Suspend a model: `suspended: true` in its spec (a commit by you; none if it is suspended
    already). It keeps its id, history and adapters, and runs no replica until resumed."""
    await no_body(request, "POST .../suspend")
    return (await ctx.lanes.run(who.user, ctx.service.suspend, who, model_key)).to_dict()


@router.post("/models/{model_key}/resume", status_code=202)
async def resume_model(request: Request, model_key: str, who: Identity = Depends(writer),
                       ctx: ApiContext = Depends(context)) -> dict:
    """Resume a suspended model: `suspended: true` removed from its spec (a commit by you; none
    if it is not suspended). It deploys again as a new model would."""
    await no_body(request, "POST .../resume")
    return (await ctx.lanes.run(who.user, ctx.service.resume, who, model_key)).to_dict()


@router.delete("/models/{model_key}", status_code=202)
async def delete_model(request: Request, model_key: str, who: Identity = Depends(writer),
                       ctx: ApiContext = Depends(context)) -> dict:
    """Delete a model: remove its spec (a commit by you)."""
    await no_body(request, "DELETE")
    return (await ctx.lanes.run(who.user, ctx.service.delete, who, model_key)).to_dict()

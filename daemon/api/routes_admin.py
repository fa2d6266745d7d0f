"""/api/v2/serve/status: the platform as an admin sees it."""
from __future__ import annotations

from fastapi import APIRouter, Depends

from daemon.api.dependencies import ApiContext, context, reader
from daemon.api.tokens import Identity

router = APIRouter(prefix="/api/v2/serve", tags=["admin"])


@router.get("/status")
def admin_status(who: Identity = Depends(reader), ctx: ApiContext = Depends(context)) -> dict:
    """Admin only: Serve applications, cluster GPUs, the sync cursor and argusd's health."""
    return ctx.service.status(who)

"""/api/v2/webhooks/<forge>: a forge's push notification makes argusd fetch now instead of at
the next poll. GitHub (X-Hub-Signature-256), GitLab (X-Gitlab-Token), Gitea/Forgejo
(X-Gitea-Signature) and any sender signing the body with HMAC-SHA256 (X-Argus-Signature),
each with its secret from the file gitops.webhooks.<forge>.secret_file names (read at each
delivery: replacing the file rotates it). No bearer token: the signature is the proof.

What a delivery can do is only "fetch now", which is idempotent, so a replay does nothing
harmful; a delivery id seen before is answered and ignored, and deliveries coalesce into one
fetch (the daemon's wake is one event, and a failing forge's backoff holds). A wrong or
missing signature is 401 and wakes nothing.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from daemon.api.dependencies import ApiContext, context
from daemon.core.forge import SIGNATURE_HEADERS, Forge, delivery_id, read_secret, signature_valid

log = logging.getLogger("argusd")
router = APIRouter(prefix="/api/v2/webhooks", tags=["webhooks"])

MAX_BODY_BYTES = 5 * 1024 * 1024   # push payloads are small; a bigger body is refused unread
SEEN_DELIVERIES = 4096             # delivery ids remembered, to ignore redeliveries and replays


class DeliveryLog:
    """The delivery ids seen lately (bounded; the oldest forgotten first)."""

    def __init__(self, size: int = SEEN_DELIVERIES):
        self.size = size
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.lock = threading.Lock()

    def first_time(self, key: str) -> bool:
        with self.lock:
            if key in self.seen:
                self.seen.move_to_end(key)
                return False
            self.seen[key] = None
            if len(self.seen) > self.size:
                self.seen.popitem(last=False)
            return True


def _deliveries(request: Request) -> DeliveryLog:
    state = request.app.state
    if not hasattr(state, "webhook_deliveries"):
        state.webhook_deliveries = DeliveryLog()
    return state.webhook_deliveries


def _answer(status: int, error: str | None, message: str) -> JSONResponse:
    body = {"error": error, "message": message} if error else {"message": message}
    return JSONResponse(body, status_code=status)


@router.post("/{forge}")
async def receive(forge: str, request: Request, ctx: ApiContext = Depends(context)) -> JSONResponse:
    """A push (or any event) from a forge: fetch the GitOps repo now."""
    try:
        kind = Forge(forge)
    except ValueError:
        return _answer(404, "not_found", f"no webhook receiver {forge!r}; use one of: {', '.join(f.value for f in Forge)}")
    receiver = getattr(ctx.service.config.gitops.webhooks, kind.value)
    if receiver is None:
        return _answer(404, "not_found", f"the {kind.value} webhook is not configured; set "
                       f"gitops.webhooks.{kind.value}.secret_file in argusd's config")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        return _answer(413, "too_large", f"a webhook body must be at most {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():  # without Content-Length (chunked) too: never more than the limit held
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return _answer(413, "too_large", f"a webhook body must be at most {MAX_BODY_BYTES} bytes")
    body = bytes(body)
    try:
        with open(receiver.secret_file, "rb") as handle:
            secret = read_secret(handle.read(64 * 1024))
    except OSError as exc:
        log.error("webhook %s: cannot read %s (%s); deliveries are refused until it is readable",
                  kind.value, receiver.secret_file, exc.strerror)
        return _answer(503, "unavailable", "the webhook's secret cannot be read on the server; see argusd's log")
    headers = {name.lower(): value for name, value in request.headers.items()}
    if not signature_valid(kind, headers, body, secret):
        log.warning("webhook %s: refused a delivery from %s with a missing or wrong %s", kind.value,
                    request.client.host if request.client else "?", SIGNATURE_HEADERS[kind][0])
        return _answer(401, "unauthorized", f"missing or wrong {SIGNATURE_HEADERS[kind][0]}: the delivery must be "
                       "signed with the secret in gitops.webhooks." + kind.value + ".secret_file")
    delivery = delivery_id(kind, headers)
    if delivery is not None and not _deliveries(request).first_time(f"{kind.value}:{delivery}"):
        return _answer(200, None, f"delivery {delivery} was received before; nothing to do")
    ctx.service.wake()
    return _answer(202, None, "fetching the GitOps repo now")

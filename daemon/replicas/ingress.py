"""The one OpenAI endpoint's code, run inside the front end's Ray Serve replicas (its build,
frontend.py, names `ArgusFrontend` here by import path: names.FRONTEND_CLASS). It is Ray Serve
LLM's own `OpenAiIngress` (protocol, streaming, OpenAI-style errors) with two changes: it starts
with no models and learns them from its `user_config` (route_table.py), which Serve applies in
place by calling `reconfigure`, so adding, changing or removing a model never restarts the front
end or any other model; and it gives some answers itself (an unknown model, a model that is
starting) in OpenAI's error shape, with Retry-After where argusd set one, without calling any
replica. A model that may be at zero replicas (its route has hold_s) has its requests held while
Serve wakes it, up to hold_s (HeldHandle).
"""
from __future__ import annotations

import asyncio
import random
from typing import Any, Awaitable

from ray.serve.exceptions import RequestCancelledError
from starlette.requests import Request
from starlette.responses import JSONResponse

from daemon.replicas import ray_private
from daemon.replicas.names import CANARY_SUFFIX, FRONTEND_REQUESTS_METRIC
from daemon.replicas.ray_private import ModelCard, OpenAiIngress, make_fastapi_ingress
from daemon.replicas.route_table import (Answer, Entry, HandleSpec, Target, card_answer, handle_targets, hold_expired,
                                         parse_table, route)


class FrontendAnswer(Exception):
    """Raised while handling a request to answer it with `answer` (answer_response writes it)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.message)
        self.answer = answer


async def answer_response(request: Request, exc: Exception) -> JSONResponse:
    """The front end's own answer as the client gets it. Registered as the app's handler for
    FrontendAnswer, it runs before Ray's error middleware, which would put its internal
    exception text into the message and cannot set a header (Retry-After)."""
    answer = exc.answer if isinstance(exc, FrontendAnswer) else None
    if answer is None:   # only FrontendAnswer is routed here
        raise exc
    return JSONResponse(answer.body(), status_code=answer.status, headers=answer.headers())


class FirstChunkStream:
    """A streaming handle call whose first chunk argus watches (`_first_chunk`). After it the
    stream is Serve's own: its awaitable is handed back as is (no coroutine of ours per chunk on
    the hot path)."""

    _response: Any
    _first: bool

    def __aiter__(self) -> "FirstChunkStream":
        return self

    def __anext__(self) -> Awaitable[Any]:
        if not self._first:
            return self._response.__anext__()
        self._first = False
        return self._first_chunk()

    async def _first_chunk(self) -> Any:
        raise NotImplementedError


class HeldResponse(FirstChunkStream):
    """A streaming handle call to a model that may be at zero replicas. Serve's handle already
    queues a request while the deployment has no replica, and its router reports the queued
    request to the controller at once, which scales the deployment up from zero without its
    upscale delay (ray/serve/_private/router.py wrap_queued_request, autoscaling_policy.py
    _apply_default_params). This bounds that wait: if no replica has taken the request
    hold_s after it was sent, it is withdrawn from Serve's queue (cancelled before assignment:
    it never runs) and the client gets route_table.waking's 503. Once a replica has taken it,
    nothing is added: the timer is a call_later, not an await, and a generation is never cut."""

    def __init__(self, response: Any, model: str, hold_s: float) -> None:
        self._response, self._model, self._hold_s = response, model, hold_s
        self._first = True
        self._expired: Answer | None = None

    def _hold_ran_out(self) -> None:
        self._expired = hold_expired(self._model, self._hold_s, ray_private.assigned(self._response))
        if self._expired is not None:
            self._response.cancel()

    async def _first_chunk(self) -> Any:
        timer = asyncio.get_running_loop().call_later(self._hold_s, self._hold_ran_out)
        try:
            return await self._response.__anext__()
        except RequestCancelledError:
            if self._expired is not None:
                raise FrontendAnswer(self._expired) from None
            raise
        finally:
            timer.cancel()


class HeldHandle:
    """A model's handle whose calls are HeldResponses (the ingress calls `options(...)` and
    `<method>.remote(...)` on the handle it pins for a model id, ray_private.set_configured)."""

    def __init__(self, handle: Any, model: str, hold_s: float) -> None:
        self._handle, self._model, self._hold_s = handle, model, hold_s

    def options(self, **options: Any) -> "HeldHandle":
        return HeldHandle(self._handle.options(**options), self._model, self._hold_s)

    def __getattr__(self, method: str) -> "HeldHandle":
        return HeldHandle(getattr(self._handle, method), self._model, self._hold_s)

    def remote(self, *args: Any, **kwargs: Any) -> HeldResponse:
        return HeldResponse(self._handle.remote(*args, **kwargs), self._model, self._hold_s)


_REQUESTS: Any = None


def _count(target: Target, ok: bool) -> None:
    """One request to a generation, in FRONTEND_REQUESTS_METRIC (made on first use: inside a replica)."""
    global _REQUESTS
    if _REQUESTS is None:
        from ray.util.metrics import Counter
        _REQUESTS = Counter(FRONTEND_REQUESTS_METRIC, description="Requests the argus front end sent to a model "
                            "generation while a canary splits the model, by outcome of the first answer.",
                            tag_keys=("application", "deployment", "outcome"))
    _REQUESTS.inc(1.0, tags={"application": target.app, "deployment": target.deployment,
                             "outcome": "ok" if ok else "failed"})


class CountedResponse(FirstChunkStream):
    """A handle call whose outcome is counted by the generation it went to: failed when it raised
    (a replica's error, one that died, a hold that ran out) or its first chunk is a server error
    (5xx) the model server answered; a client's own error (4xx) is ok, a client that went away
    is not counted. After the first chunk the
    stream is Serve's own (FirstChunkStream)."""

    def __init__(self, response: Any, target: Target) -> None:
        self._response, self._target, self._first = response, target, True

    async def _first_chunk(self) -> Any:
        try:
            chunk = await self._response.__anext__()
        except (asyncio.CancelledError, RequestCancelledError):
            raise
        except StopAsyncIteration:
            _count(self._target, True)
            raise
        except Exception:
            _count(self._target, False)
            raise
        _count(self._target, not ray_private.is_server_error_response(chunk))
        return chunk


class CountedHandle:
    """A handle whose calls are CountedResponses (like HeldHandle)."""

    def __init__(self, handle: Any, target: Target) -> None:
        self._handle, self._target = handle, target

    def options(self, **options: Any) -> "CountedHandle":
        return CountedHandle(self._handle.options(**options), self._target)

    def __getattr__(self, method: str) -> "CountedHandle":
        return CountedHandle(getattr(self._handle, method), self._target)

    def remote(self, *args: Any, **kwargs: Any) -> CountedResponse:
        return CountedResponse(self._handle.remote(*args, **kwargs), self._target)


class ArgusIngress(OpenAiIngress):
    """OpenAiIngress whose model table comes from user_config: {"models": [serve_config.Route
    JSON: "model_id", "app", "deployment", "max_request_context_length", "base_model"?,
    "probe"?, "unavailable"?, "hold_s"?]}. An entry with base_model is a LoRA adapter: its requests go to
    the base's deployment with the adapter id as the multiplexed model id, which
    ArgusLLMServer loads into vLLM under that name. A probe entry (names.probe_id) is served
    but never listed; an `unavailable` entry is answered here (route_table.py); an entry with
    hold_s is served through a HeldHandle; an entry with a canary sends that share of its
    requests to the canary's handle (kept under names.canary_key)."""

    def __init__(self) -> None:
        super().__init__(llm_deployments={}, model_cards={})
        self._table: dict[str, Entry] = {}
        self._targets: dict[str, HandleSpec] = {}
        self._random = random.Random()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """A new table. An entry whose target is unchanged keeps its live handle; a changed
        target (a rollout's switch) gets a new handle for new requests, while requests already
        running hold the old one and finish on it."""
        table = parse_table(user_config)
        targets = handle_targets(table)   # an entry answered by the front end itself has none
        handles = {}
        current = ray_private.handles(self)
        for key, spec in targets.items():
            before = self._targets.get(key)
            kept = before is not None and before.target == spec.target and key in current
            handles[key] = current[key] if kept else ray_private.deployment_handle(spec.target.deployment,
                                                                                   spec.target.app)
            if not kept or before != spec:
                ray_private.forget_configured(self, key)
                self._pin(key, handles[key], spec)
        cards = {model_id: ray_private.model_card(model_id, entry.max_request_context_length, entry.base_model)
                 for model_id, entry in table.items() if entry.listed}
        for stale in ray_private.configured_ids(self) - set(handles):
            ray_private.forget_configured(self, stale)
        ray_private.set_tables(self, handles, cards)
        self._table, self._targets = table, targets

    def _pin(self, key: str, handle: Any, spec: HandleSpec) -> None:
        """The handle a key is served through when it is not Ray's default (a plain stream=True
        handle, which the ingress makes itself on first use): an adapter's names its multiplexed
        model id; a model that may be at zero is held; a canary's two generations are counted."""
        multiplexed_model_id = spec.target.multiplexed_model_id
        if multiplexed_model_id is None and spec.held_for is None and not spec.counted:
            return
        pinned: Any = handle.options(stream=True) if multiplexed_model_id is None else handle.options(
            stream=True, multiplexed_model_id=multiplexed_model_id)
        if spec.held_for is not None:
            pinned = HeldHandle(pinned, key.removesuffix(CANARY_SUFFIX), spec.held_for)   # its answer names the public id
        ray_private.set_configured(self, key, CountedHandle(pinned, spec.target) if spec.counted else pinned)

    async def _get_model_id(self, model: str | None) -> str:
        # Every OpenAI route that calls a model (chat, completions, embeddings, score, ...)
        # asks here first, before any response starts: a stream gets the answer's status too.
        routed = route(self._table, model, self._random.random())
        if isinstance(routed, Answer):
            raise FrontendAnswer(routed)
        return routed

    async def model_data(self, model: str) -> ModelCard:
        """GET /v1/models/{model}: Ray's route, answered from argus's table (a starting model
        says so; a probe id is unknown)."""
        found = card_answer(self._table, model)
        if isinstance(found, Answer):
            raise FrontendAnswer(found)
        entry = self._table[found]
        return ray_private.model_card(found, entry.max_request_context_length, entry.base_model)


def frontend_app() -> Any:
    """Ray Serve LLM's FastAPI app for the ingress, with the front end's own answers."""
    app = ray_private.openai_app()
    app.add_exception_handler(FrontendAnswer, answer_response)
    return app


# The front end's deployment class (names.FRONTEND_CLASS): ArgusIngress in Ray Serve LLM's FastAPI
# ingress, made once per replica process, where this module is imported.
ArgusFrontend = make_fastapi_ingress(ArgusIngress, app=frontend_app())

"""The one OpenAI endpoint, run inside Ray Serve (argusd names it in the Serve config:
daemon.replicas.names.BUILD_FRONTEND). It is Ray Serve LLM's own `OpenAiIngress` (protocol,
streaming, OpenAI-style errors) with two changes: it starts with no models and learns them from
its `user_config` (route_table.py), which Serve applies in place by calling `reconfigure`, so
adding, changing or removing a model never restarts the front end or any other model; and it
gives some answers itself (an unknown model, a model that is starting) in OpenAI's error shape,
with Retry-After where argusd set one, without calling any replica.
"""
from __future__ import annotations

from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from daemon.replicas import ray_private
from daemon.replicas.names import FRONTEND_DEPLOYMENT
from daemon.replicas.ray_private import ModelCard, OpenAiIngress, make_fastapi_ingress
from daemon.replicas.route_table import Answer, Entry, card_answer, parse_table, route


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


class ArgusIngress(OpenAiIngress):
    """OpenAiIngress whose model table comes from user_config: {"models": [serve_config.Route
    JSON: "model_id", "app", "deployment", "max_request_context_length", "base_model"?,
    "probe"?, "unavailable"?]}. An entry with base_model is a LoRA adapter: its requests go to
    the base's deployment with the adapter id as the multiplexed model id, which
    ArgusLLMServer loads into vLLM under that name. A probe entry (names.probe_id) is served
    but never listed; an `unavailable` entry is answered here (route_table.py)."""

    def __init__(self) -> None:
        super().__init__(llm_deployments={}, model_cards={})
        self._table: dict[str, Entry] = {}

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """A new table. An entry whose target is unchanged keeps its live handle; a changed
        target (a rollout's switch) gets a new handle for new requests, while requests already
        running hold the old one and finish on it."""
        table = parse_table(user_config)
        handles, cards = {}, {}
        current = ray_private.handles(self)
        for model_id, entry in table.items():
            target = entry.target
            if target is None:
                continue   # answered by the front end itself
            before = self._table.get(model_id)
            if before is not None and before.target == target and model_id in current:
                handles[model_id] = current[model_id]
            else:
                handles[model_id] = ray_private.deployment_handle(target.deployment, target.app)
                ray_private.forget_configured(self, model_id)
                if target.multiplexed_model_id is not None:
                    ray_private.set_configured(self, model_id, handles[model_id].options(
                        stream=True, multiplexed_model_id=target.multiplexed_model_id))
            if entry.listed:
                cards[model_id] = ray_private.model_card(model_id, entry.max_request_context_length,
                                                         entry.base_model)
        for stale in ray_private.configured_ids(self) - set(handles):
            ray_private.forget_configured(self, stale)
        ray_private.set_tables(self, handles, cards)
        self._table = table

    async def _get_model_id(self, model: str | None) -> str:
        # Every OpenAI route that calls a model (chat, completions, embeddings, score, ...)
        # asks here first, before any response starts: a stream gets the answer's status too.
        routed = route(self._table, model)
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


def build_frontend(args: dict[str, Any] | None = None) -> Any:
    """The front end app. Its replica count comes from the config's deployment options
    (serving.serve.frontend_replicas); every replica gets the same model table."""
    app = ray_private.openai_app()
    app.add_exception_handler(FrontendAnswer, answer_response)
    return serve.deployment(make_fastapi_ingress(ArgusIngress, app=app), name=FRONTEND_DEPLOYMENT, num_replicas=1,
                            max_ongoing_requests=1000).bind()

"""Code that runs inside Ray Serve for the per-model layout (loaded through import paths in
the declarative config; argusd and argusctl never import it, so it may import Ray).

- `build_model_app`: one Serve application per model, holding only that model's
  LLMServer deployment (Ray Serve LLM's own server, built by `build_llm_deployment`).
- `build_frontend`: the one OpenAI endpoint. It is Ray Serve LLM's own `OpenAiIngress`
  (protocol, streaming, OpenAI-style errors) with one change: it starts with no models and
  learns them from its `user_config`, which Serve applies in place by calling
  `reconfigure`. Adding, changing or removing a model therefore never restarts the front
  end or any other model.
"""
from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from ray import serve
from ray.llm._internal.serve.core.configs.openai_api_models import ModelCard, OpenAIHTTPException
from ray.llm._internal.serve.core.ingress.ingress import OpenAiIngress, make_fastapi_ingress
from ray.serve.llm import LLMConfig, build_llm_deployment

FRONTEND_DEPLOYMENT = "ArgusIngress"


class ArgusIngress(OpenAiIngress):
    """OpenAiIngress whose model table comes from user_config: {"models": [{"model_id",
    "app", "deployment", "max_request_context_length"}]} (only models that are RUNNING)."""

    def __init__(self) -> None:
        super().__init__(llm_deployments={}, model_cards={})
        self._targets: dict[str, tuple[str, str]] = {}

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        handles, cards, targets = {}, {}, {}
        for model in (user_config or {}).get("models", []):
            model_id, target = model["model_id"], (model["app"], model["deployment"])
            if self._targets.get(model_id) == target:
                handles[model_id] = self._default_serve_handles[model_id]  # keep its live handle
            else:
                handles[model_id] = serve.get_deployment_handle(target[1], app_name=target[0], _check_exists=False)
                self._configured_serve_handles.pop(model_id, None)
            targets[model_id] = target
            cards[model_id] = ModelCard(id=model_id, object="model", owned_by="organization-owner", permission=[],
                                        metadata={"model_id": model_id, "input_modality": "text",
                                                  "max_request_context_length": model.get("max_request_context_length")})
        for stale in set(self._configured_serve_handles) - set(handles):
            self._configured_serve_handles.pop(stale, None)
        self._default_serve_handles, self._model_cards, self._targets = handles, cards, targets

    async def _get_model_id(self, model: str | None) -> str:
        # Ray's ingress raises FastAPI's HTTPException here, which FastAPI answers as
        # {"detail": ...}; clients expect OpenAI's {"error": {...}}, which Ray's middleware
        # produces for OpenAIHTTPException.
        try:
            return await super()._get_model_id(model)
        except HTTPException as exc:
            kind = "NotFoundError" if exc.status_code == 404 else "BadRequestError"
            raise OpenAIHTTPException(status_code=exc.status_code, message=str(exc.detail), type=kind) from None


def build_frontend(args: dict[str, Any] | None = None) -> Any:
    """The front end app: one replica, so every request sees the same model table."""
    return serve.deployment(make_fastapi_ingress(ArgusIngress), name=FRONTEND_DEPLOYMENT, num_replicas=1,
                            max_ongoing_requests=1000).bind()


def build_model_app(args: dict[str, Any]) -> Any:
    """One model's app: its LLMServer deployment alone, no HTTP route of its own."""
    return build_llm_deployment(LLMConfig.model_validate(args["llm_config"]))

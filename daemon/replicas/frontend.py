"""The one OpenAI endpoint, run inside Ray Serve (argusd names it in the Serve config:
daemon.replicas.names.BUILD_FRONTEND). It is Ray Serve LLM's own `OpenAiIngress` (protocol,
streaming, OpenAI-style errors) with one change: it starts with no models and learns them from
its `user_config`, which Serve applies in place by calling `reconfigure`. Adding, changing or
removing a model therefore never restarts the front end or any other model.
"""
from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from ray import serve

from daemon.replicas import ray_private
from daemon.replicas.names import FRONTEND_DEPLOYMENT
from daemon.replicas.ray_private import OpenAiIngress, make_fastapi_ingress


class ArgusIngress(OpenAiIngress):
    """OpenAiIngress whose model table comes from user_config: {"models": [{"model_id",
    "app", "deployment", "max_request_context_length", "base_model"?}]} (only models that are
    RUNNING, and adapters being loaded or running). An entry with base_model is a LoRA
    adapter: its requests go to the base's deployment with the adapter id as the multiplexed
    model id, which ArgusLLMServer loads into vLLM under that name."""

    def __init__(self) -> None:
        super().__init__(llm_deployments={}, model_cards={})
        self._targets: dict[str, tuple[str, str, str | None]] = {}

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        handles, cards, targets = {}, {}, {}
        current = ray_private.handles(self)
        for model in (user_config or {}).get("models", []):
            base = model.get("base_model")
            model_id, target = model["model_id"], (model["app"], model["deployment"], base)
            if self._targets.get(model_id) == target:
                handles[model_id] = current[model_id]  # keep its live handle
            else:
                handles[model_id] = ray_private.deployment_handle(target[1], target[0])
                ray_private.forget_configured(self, model_id)
                if base is not None:
                    ray_private.set_configured(self, model_id, handles[model_id].options(
                        stream=True, multiplexed_model_id=model_id))
            targets[model_id] = target
            cards[model_id] = ray_private.model_card(model_id, model.get("max_request_context_length"), base)
        for stale in ray_private.configured_ids(self) - set(handles):
            ray_private.forget_configured(self, stale)
        ray_private.set_tables(self, handles, cards)
        self._targets = targets

    async def _get_model_id(self, model: str | None) -> str:
        # Ray's ingress raises FastAPI's HTTPException here, which FastAPI answers as
        # {"detail": ...}; clients expect OpenAI's {"error": {...}}.
        try:
            return await super()._get_model_id(model)
        except HTTPException as exc:
            raise ray_private.openai_error(exc.status_code, str(exc.detail)) from None


def build_frontend(args: dict[str, Any] | None = None) -> Any:
    """The front end app. Its replica count comes from the config's deployment options
    (serving.serve.frontend_replicas); every replica gets the same model table."""
    return serve.deployment(make_fastapi_ingress(ArgusIngress), name=FRONTEND_DEPLOYMENT, num_replicas=1,
                            max_ongoing_requests=1000).bind()

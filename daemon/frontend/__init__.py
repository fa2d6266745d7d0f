"""Code that runs inside Ray Serve for the per-model layout (loaded through import paths in
the declarative config; argusd and argusctl never import it, so it may import Ray; Ray's
private names it needs are in ray_private.py, and nothing else of argus).

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
from ray.serve.llm import LLMConfig, build_llm_deployment

from daemon.frontend import ray_private
from daemon.frontend.ray_private import OpenAiIngress, make_fastapi_ingress

FRONTEND_DEPLOYMENT = "ArgusIngress"


class ArgusIngress(OpenAiIngress):
    """OpenAiIngress whose model table comes from user_config: {"models": [{"model_id",
    "app", "deployment", "max_request_context_length"}]} (only models that are RUNNING)."""

    def __init__(self) -> None:
        super().__init__(llm_deployments={}, model_cards={})
        self._targets: dict[str, tuple[str, str]] = {}

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        handles, cards, targets = {}, {}, {}
        current = ray_private.handles(self)
        for model in (user_config or {}).get("models", []):
            model_id, target = model["model_id"], (model["app"], model["deployment"])
            if self._targets.get(model_id) == target:
                handles[model_id] = current[model_id]  # keep its live handle
            else:
                handles[model_id] = ray_private.deployment_handle(target[1], target[0])
                ray_private.forget_configured(self, model_id)
            targets[model_id] = target
            cards[model_id] = ray_private.model_card(model_id, model.get("max_request_context_length"))
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
    """The front end app: one replica, so every request sees the same model table."""
    return serve.deployment(make_fastapi_ingress(ArgusIngress), name=FRONTEND_DEPLOYMENT, num_replicas=1,
                            max_ongoing_requests=1000).bind()


@serve.deployment(name="ArgusLease", num_replicas=1, ray_actor_options={"num_cpus": 0})
class ArgusLease:
    """Holds argusd's lease (daemon/serving/lease.py) as its user_config; serves nothing."""

    def __init__(self) -> None:
        self.value: dict[str, Any] | None = None

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        self.value = user_config

    def __call__(self) -> dict[str, Any] | None:
        return self.value


def build_lease(args: dict[str, Any] | None = None) -> Any:
    return ArgusLease.bind()


def build_model_app(args: dict[str, Any]) -> Any:
    """One model's app: its LLMServer deployment alone, no HTTP route of its own."""
    return build_llm_deployment(LLMConfig.model_validate(args["llm_config"]))

"""Code that runs inside Ray Serve for the per-model layout (loaded through import paths in
the declarative config; argusd and argusctl never import it, so it may import Ray; Ray's
private names it needs are in ray_private.py, and nothing else of argus).

- `build_model_app`: one Serve application per model, holding only that model's
  LLMServer deployment (Ray Serve LLM's own server, built by `build_llm_deployment`, with
  one repair: `ArgusLLMServer`).
- `build_frontend`: the one OpenAI endpoint. It is Ray Serve LLM's own `OpenAiIngress`
  (protocol, streaming, OpenAI-style errors) with one change: it starts with no models and
  learns them from its `user_config`, which Serve applies in place by calling
  `reconfigure`. Adding, changing or removing a model therefore never restarts the front
  end or any other model.
"""
from __future__ import annotations

import asyncio
import logging
import logging.handlers
from typing import Any

from fastapi import HTTPException
from ray import serve
from ray.serve.llm import LLMConfig, LLMServer, build_llm_deployment

from daemon.frontend import ray_private
from daemon.frontend.ray_private import OpenAiIngress, make_fastapi_ingress

FRONTEND_DEPLOYMENT = "ArgusIngress"


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


SERVE_LOGGER = "ray.serve"


def serve_log_targets() -> list[tuple[logging.handlers.MemoryHandler, logging.Handler | None]]:
    """Serve's buffered log handlers in this process with the file handler each writes to."""
    return [(h, h.target) for h in logging.getLogger(SERVE_LOGGER).handlers
            if isinstance(h, logging.handlers.MemoryHandler)]


def restore_serve_log_targets(saved: list[tuple[logging.handlers.MemoryHandler, logging.Handler | None]]) -> int:
    """Give back each buffered handler the target that a logging reset took from it; returns
    how many were repaired. A closed FileHandler reopens its file on the next record."""
    repaired = 0
    for handler, target in saved:
        if handler.target is None and target is not None:
            handler.setTarget(target)
            repaired += 1
    return repaired


class ArgusLLMServer(LLMServer):
    """Ray Serve LLM's LLMServer, unchanged but for one repair. Starting the vLLM engine
    applies vLLM's logging config (`logging.config.dictConfig`), which closes every handler
    in the process, and closing Serve's MemoryHandler drops its file target. The replica then
    buffers its log records forever, and when the Serve controller restarts, its recovery
    call to the replica (`is_allocated` reads that target's file name) raises, so the
    controller replaces a healthy replica and the model is down for a cold start. Seen in
    argus's zero-disruption e2e with Ray 2.60 + vLLM 0.32."""

    async def __init__(self, *args: Any, **kwargs: Any) -> None:
        # LoRA adapters (a model whose spec has `adapters:`): the table argusd sends as
        # user_config, {public id: (folder, generation)}, and what this replica's vLLM holds.
        self._adapters: dict[str, tuple[str, int]] = {}
        self._loaded: dict[str, tuple[str, int]] = {}
        self._adapter_lock = asyncio.Lock()
        saved = serve_log_targets()
        try:
            await super().__init__(*args, **kwargs)
        finally:
            restore_serve_log_targets(saved)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve applies a new adapter table in place: nothing restarts. Adapters load on their
        first request; one that left the table is unloaded."""
        table = (user_config or {}).get("adapters") or {}
        self._adapters = {adapter_id: (entry["path"], int(entry["generation"])) for adapter_id, entry in table.items()}
        async with self._adapter_lock:
            for gone in [a for a in self._loaded if a not in self._adapters]:
                await ray_private.unload_adapter(self, gone)
                del self._loaded[gone]

    async def _maybe_resolve_lora_from_multiplex(self) -> None:
        """Ray's version loads adapters from cloud storage by id; argus's come from the table:
        a local folder per adapter id, loaded again (after an unload) when its generation
        changes, so changed weights never reuse the old ones or their cache."""
        adapter_id = serve.get_multiplexed_model_id()
        if not adapter_id:
            return
        wanted = self._adapters.get(adapter_id)
        if wanted is None:
            raise ray_private.openai_error(404, f'The model "{adapter_id}" does not exist on this base model.')
        async with self._adapter_lock:
            if self._loaded.get(adapter_id) == wanted:
                return
            if adapter_id in self._loaded:
                await ray_private.unload_adapter(self, adapter_id)
                del self._loaded[adapter_id]
            await ray_private.load_adapter(self, adapter_id, wanted[0])
            self._loaded[adapter_id] = wanted


def build_model_app(args: dict[str, Any]) -> Any:
    """One model's app: its LLMServer deployment alone, no HTTP route of its own. The
    deployment keeps Ray's name ("LLMServer:<model key>")."""
    return build_llm_deployment(LLMConfig.model_validate(args["llm_config"]), deployment_cls=ArgusLLMServer,
                                name_prefix="LLMServer:")

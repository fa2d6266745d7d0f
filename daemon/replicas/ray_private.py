"""Every private name of Ray that argus's replicas rely on, in one place (the apps' builds have
theirs in ray_build.py, which must not import this module's vLLM).

Ray Serve LLM's OpenAI ingress is public (`ray.serve.llm.ingress`), but teaching it models
at run time needs what it keeps private: its handle and model-card tables, its model
lookup, the model-card and OpenAI-error types, the FastAPI app it builds (with its
middleware) and a deployment handle that does not wait for the deployment to exist. The
model server needs LLMServer's adapter, request and stream-batching hooks and the node-
initialization callback. Those names change between Ray releases, so this module refuses to load on a Ray it was not tested
with, with a message that says what to install;
tests/integration/test_ray_contract.py pins each name against the Ray in the serving venv.
"""
from __future__ import annotations

import os
from typing import Any

import ray

# Refuses to load on a Ray argus was not tested with (one home for the check: ray_build.py).
from daemon.replicas.ray_build import TESTED_RAY

from ray import serve  # noqa: E402
from ray.llm._internal.common.callbacks.base import CallbackBase, CallbackConfig  # noqa: E402
from ray.llm._internal.serve.core.configs.llm_config import DiskMultiplexConfig  # noqa: E402
from ray.llm._internal.serve.core.configs.openai_api_models import (  # noqa: E402
    ErrorResponse, ModelCard, OpenAIHTTPException)
from ray.llm._internal.serve.core.ingress.ingress import init as _ray_openai_app  # noqa: E402
from ray.serve.llm.ingress import OpenAiIngress, make_fastapi_ingress  # noqa: E402 (public paths)

__all__ = ["OpenAiIngress", "make_fastapi_ingress", "ModelCard", "openai_app", "deployment_handle", "model_card",
           "openai_error", "handles", "forget_configured", "configured_ids", "set_configured", "set_tables",
           "load_adapter", "unload_adapter", "assigned", "is_server_error_response", "skip_node_init_on_one_node",
           "serve_from_folder", "stream_batch_interval_ms", "TESTED_RAY"]

# What the contract test checks: attributes OpenAiIngress sets in __init__ and uses per
# request, the methods argus overrides (its model lookup, and GET /v1/models/{model}'s route,
# whose parameter argus's version keeps), and the keyword the handle lookup needs.
INGRESS_ATTRIBUTES = ("_default_serve_handles", "_configured_serve_handles", "_model_cards")
INGRESS_METHODS = ("_get_model_id", "model_data")
# Every route that calls a model asks _get_model_id first (_get_response, which each of them
# runs before its response starts), so the front end's own answers cover them all.
MODEL_LOOKUP = ("_get_response", "model_id = await self._get_model_id(body.model)")
# The FastAPI app make_fastapi_ingress builds when given none is `init()`'s: argus builds the
# same app, adds its exception handler, and hands it over.
APP_BUILDER = ("make_fastapi_ingress", "app = init()")
# The ingress serves a model id through _configured_serve_handles when it holds one
# (set_configured pins an adapter's handle there).
CONFIGURED_LOOKUP = ("_get_configured_serve_handle", "if model_id not in self._configured_serve_handles")
HANDLE_KEYWORD = "_check_exists"
# A handle call's response holds the future of its assignment to a replica (done once a replica
# took it); the front end's hold of a model at zero ends on it (ingress.HeldResponse).
RESPONSE_ASSIGNMENT = "_replica_result_future"
# LoRA adapters: the LLMServer methods argus's server overrides (every request passes through
# _run_request, which resolves the adapter before it calls the engine), the engine's vLLM
# model registry, and its load/unload calls.
LLM_SERVER_METHODS = ("_maybe_resolve_lora_from_multiplex", "_run_request")
# A streamed answer: _run_request hands the engine's stream to _batch_output_stream (which argus's
# server overrides) when the request streams, and the interval comes from _get_batch_interval_ms.
STREAM_BATCHING = ("_batch_output_stream", "self._batch_output_stream(engine_stream)", "_get_batch_interval_ms")
ENGINE_ATTRIBUTES = ("_oai_models",)


def deployment_handle(deployment: str, app: str) -> Any:
    """A handle to another application's deployment, without waiting for it to exist (the
    front end learns a model in the same apply that creates it)."""
    return serve.get_deployment_handle(deployment, app_name=app, _check_exists=False)


def assigned(response: Any) -> bool:
    """Whether Serve has given a handle call (a DeploymentResponseGenerator) to a replica.
    Cancelling one that is not assigned withdraws it from the router's queue: it never runs."""
    return getattr(response, RESPONSE_ASSIGNMENT).done()


def is_server_error_response(chunk: Any) -> bool:
    """Whether a model server's first chunk is an error of its own it answered: an ErrorResponse
    (Ray Serve LLM's server hands the ingress vLLM's errors so, and the ingress,
    OpenAiIngress._process_llm_request, answers its `.error.code` as the HTTP status; with
    batching the chunk may be a list) with a code of 500 or more. A 4xx is the client's (bad
    parameters, a prompt over the context): it says nothing of the generation that answered it."""
    first = chunk[0] if isinstance(chunk, list) and chunk else chunk
    if not isinstance(first, ErrorResponse):
        return False
    code = getattr(first.error, "code", None)
    return not isinstance(code, int) or code >= 500   # no code to read: not the client's, as far as we know


def openai_app() -> Any:
    """Ray's FastAPI app for the OpenAI ingress with all of its middleware (request ids, CORS,
    metrics, errors in OpenAI's shape): what make_fastapi_ingress uses when given no app."""
    return _ray_openai_app()


def model_card(model_id: str, max_request_context_length: int | None, base_model: str | None = None) -> ModelCard:
    metadata = {"model_id": model_id, "input_modality": "text", "max_request_context_length": max_request_context_length}
    if base_model is not None:
        metadata["base_model"] = base_model   # an adapter: served on that model's replicas
    return ModelCard(id=model_id, object="model", owned_by="organization-owner", permission=[], metadata=metadata)


def openai_error(status_code: int, message: str) -> OpenAIHTTPException:
    """An error Ray's middleware answers in OpenAI's {"error": {...}} shape."""
    kind = {404: "NotFoundError", 403: "PermissionDeniedError"}.get(status_code, "BadRequestError")
    error = OpenAIHTTPException(status_code=status_code, message=message, type=kind)
    # Serve pickles a replica's error to the front end, which rebuilds it from args: without
    # them it cannot ("Failed to deserialize exception") and the reason is lost.
    error.args = (status_code, message)
    return error


def handles(ingress: OpenAiIngress) -> dict[str, Any]:
    return ingress._default_serve_handles


def forget_configured(ingress: OpenAiIngress, model_id: str) -> None:
    """Drop the ingress's per-model cached handle (it is rebuilt on the next request)."""
    ingress._configured_serve_handles.pop(model_id, None)


def set_configured(ingress: OpenAiIngress, model_id: str, handle: Any) -> None:
    """Pin the handle a model id is served through (the ingress looks here first): for an
    adapter, its base's handle with the adapter id as the multiplexed model id."""
    ingress._configured_serve_handles[model_id] = handle


def configured_ids(ingress: OpenAiIngress) -> set[str]:
    return set(ingress._configured_serve_handles)


def set_tables(ingress: OpenAiIngress, new_handles: dict[str, Any], cards: dict[str, ModelCard]) -> None:
    ingress._default_serve_handles, ingress._model_cards = new_handles, cards


async def load_adapter(server: Any, name: str, path: str) -> None:
    """Load a LoRA adapter into the replica's vLLM under `name` (vLLM's load_lora_adapter,
    through Ray's engine). Raises ValueError with vLLM's reason when it cannot."""
    await server.engine.resolve_lora(DiskMultiplexConfig(model_id=name, max_total_tokens=None, local_path=path,
                                                         lora_assigned_int_id=0))


async def unload_adapter(server: Any, name: str) -> None:
    """Forget an adapter in the replica's vLLM by its vLLM name."""
    from vllm.entrypoints.serve.lora.protocol import UnloadLoRAAdapterRequest
    models = server.engine._oai_models
    if name in models.lora_requests:
        await models.unload_lora_adapter(UnloadLoRAAdapterRequest(lora_name=name))


def stream_batch_interval_ms(server: Any) -> float:
    """The interval Ray Serve LLM batches a streamed answer's chunks at: the LLMConfig's
    `experimental_configs.stream_batching_interval_ms`, else RAYLLM_MODEL_RESPONSE_BATCH_TIMEOUT_MS
    (50 ms by default)."""
    return server._get_batch_interval_ms()


def prepare_local_node() -> None:
    """What Ray's node initialization does for a model folder already on disk (no mirror, no
    remote path: download_utils.download_model_files), done in the replica's own process: make
    torch's kernels folder (Ray's workaround for torch failing to make it)."""
    import torch
    os.makedirs(os.path.join(torch.hub._get_torch_home(), "kernels"), exist_ok=True)


def placement_nodes(placement_group: Any) -> set[str] | None:
    """The nodes a placement group's bundles are on (none without a placement group; None
    while a bundle is not placed yet, so nothing is known)."""
    if placement_group is None:
        return set()
    table = ray.util.placement_group_table(placement_group)
    nodes = [table["bundles_to_node_id"].get(bundle) for bundle in table["bundles"]]
    return set(nodes) if all(nodes) else None   # an unplaced bundle's node is "" or missing


class OneNodeInit(CallbackBase):
    """Skips Ray Serve LLM's node initialization (VLLMEngine.start runs it unless a callback
    clears ctx.run_init_node) when the replica's placement group is on the replica's own node:
    its one task there is a new Ray worker that imports torch and transformers (~16 s of a
    2-core cold start) to find that a local folder needs no download.
    A placement group across nodes (tensor or pipeline parallel over several hosts) keeps Ray's
    task, which prepares every node. argus serves only local folders (weights.check_model_folder)."""

    async def on_before_node_init(self) -> None:
        nodes = placement_nodes(self.ctx.placement_group)
        if nodes is not None and nodes <= {ray.get_runtime_context().get_node_id()}:
            prepare_local_node()
            self.ctx.run_init_node = False


def skip_node_init_on_one_node(llm_config: Any) -> None:
    """Give an LLMConfig the callback above (in the replica: the rendered config is unchanged,
    so an argus upgrade changes no model's Serve config and restarts nothing)."""
    llm_config.callback_config = CallbackConfig(callback_class=OneNodeInit)


def serve_from_folder(llm_config: Any, folder: str) -> None:
    """Make the engine read `folder` (the model folder as checked). Setting model_source alone
    is not enough: the builder's get_deployment_options derived the engine config from the
    config as written and LLMConfig caches it (`_engine_config`, pickled with the config to the
    replica), and vLLM is given that engine config's hf_model_id: the path as written, through
    any symlink the check resolved. Dropping the cache makes the replica derive it again from
    the checked folder."""
    llm_config.model_loading_config.model_source = folder
    llm_config._engine_config = None

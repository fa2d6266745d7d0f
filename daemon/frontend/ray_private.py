"""Every private name of Ray that argus's front end relies on, in one place.

Ray Serve LLM's OpenAI ingress is public (`ray.serve.llm.ingress`), but teaching it models
at run time needs what it keeps private: its handle and model-card tables, its model
lookup, the model-card and OpenAI-error types, and a deployment handle that does not wait
for the deployment to exist. Those names change between Ray releases, so this module
refuses to load on a Ray it was not tested with, with a message that says what to install;
tests/integration/test_ray_contract.py pins each name against the Ray in the serving venv.
"""
from __future__ import annotations

from typing import Any

import ray

TESTED_RAY = ("2.60.0",)

if ray.__version__ not in TESTED_RAY:
    raise ImportError(
        f"argus's front end is tested with Ray {', '.join(TESTED_RAY)}, and this node runs Ray "
        f"{ray.__version__}; install ray[serve,llm]=={TESTED_RAY[-1]} on every node of the cluster "
        "(docs/operating.md), or upgrade argus")

from ray import serve  # noqa: E402
from ray.llm._internal.serve.core.configs.openai_api_models import (  # noqa: E402
    ModelCard, OpenAIHTTPException)
from ray.serve.llm.ingress import OpenAiIngress, make_fastapi_ingress  # noqa: E402 (public paths)

__all__ = ["OpenAiIngress", "make_fastapi_ingress", "deployment_handle", "model_card", "openai_error", "handles",
           "forget_configured", "configured_ids", "set_tables", "TESTED_RAY"]

# What the contract test checks: attributes OpenAiIngress sets in __init__ and uses per
# request, the method argus overrides, and the keyword the handle lookup needs.
INGRESS_ATTRIBUTES = ("_default_serve_handles", "_configured_serve_handles", "_model_cards")
INGRESS_METHODS = ("_get_model_id",)
HANDLE_KEYWORD = "_check_exists"


def deployment_handle(deployment: str, app: str) -> Any:
    """A handle to another application's deployment, without waiting for it to exist (the
    front end learns a model in the same apply that creates it)."""
    return serve.get_deployment_handle(deployment, app_name=app, _check_exists=False)


def model_card(model_id: str, max_request_context_length: int | None) -> ModelCard:
    return ModelCard(id=model_id, object="model", owned_by="organization-owner", permission=[],
                     metadata={"model_id": model_id, "input_modality": "text",
                               "max_request_context_length": max_request_context_length})


def openai_error(status_code: int, message: str) -> OpenAIHTTPException:
    """An error Ray's middleware answers in OpenAI's {"error": {...}} shape."""
    kind = "NotFoundError" if status_code == 404 else "BadRequestError"
    return OpenAIHTTPException(status_code=status_code, message=message, type=kind)


def handles(ingress: OpenAiIngress) -> dict[str, Any]:
    return ingress._default_serve_handles


def forget_configured(ingress: OpenAiIngress, model_id: str) -> None:
    """Drop the ingress's per-model cached handle (it is rebuilt on the next request)."""
    ingress._configured_serve_handles.pop(model_id, None)


def configured_ids(ingress: OpenAiIngress) -> set[str]:
    return set(ingress._configured_serve_handles)


def set_tables(ingress: OpenAiIngress, new_handles: dict[str, Any], cards: dict[str, ModelCard]) -> None:
    ingress._default_serve_handles, ingress._model_cards = new_handles, cards

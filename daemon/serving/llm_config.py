"""From a resolved spec to a Ray Serve LLM `LLMConfig` (as a plain dict) and to the
declarative Serve config the dashboard accepts. Pure: no ray import, no I/O.

Byte-stability matters: Serve restarts every replica of an app whose `args` change, so
the same models must always give the same `args` (sorted, no replica counts: scaling goes
through per-deployment `num_replicas` overrides, which Serve applies in place).
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from daemon.core.replica_contract import ENGINE_MARK, OWNER_ENV, ROOT_ENV
from daemon.core.spec import ResolvedServingSpec
from daemon.replicas.names import (BUILD_FRONTEND, BUILD_LEASE, BUILD_MODEL_APP, FRONTEND_APP, FRONTEND_DEPLOYMENT,
                                   LEASE_APP, LEASE_DEPLOYMENT, deployment_name, is_argus_app)
from daemon.replicas.names import model_app_name as app_name

BUILD_OPENAI_APP = "ray.serve.llm:build_openai_app"
LEASE_APP_NAME = LEASE_APP
SINGLE_APP_NAME = FRONTEND_APP     # the seed's one app, and the per-model layout's front end
# Placeholder in args so Ray's LLM defaults do not switch on autoscaling; the real count
# is the per-deployment override.
ARGS_NUM_REPLICAS = 1


@dataclass(frozen=True)
class LlmSettings:
    """What build_llm_config needs from the platform config."""

    accelerator_type: str                   # "cpu" for CPU-only serving
    engine_defaults: dict[str, Any]
    env_vars: dict[str, str]
    cache_dir: str
    storage_root: str = ""                  # storage.root: the replica checks weights' paths against it

    @property
    def on_cpu(self) -> bool:
        return self.accelerator_type.lower() == "cpu"

    @classmethod
    def from_config(cls, config: Any) -> "LlmSettings":
        llm = config.serving.llm
        return cls(accelerator_type=llm.accelerator_type, engine_defaults=dict(llm.engine_defaults),
                   env_vars=dict(llm.env_vars), cache_dir=llm.cache_dir, storage_root=config.storage.root)


def runtime_env_vars(settings: LlmSettings) -> dict[str, str]:
    env = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": posixpath.join(settings.cache_dir, "hf"),
        "VLLM_CACHE_ROOT": posixpath.join(settings.cache_dir, "vllm"),
        "VLLM_NO_USAGE_STATS": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.update(settings.env_vars)
    return dict(sorted(env.items()))


def replica_identity(spec: ResolvedServingSpec, model_key: str, settings: LlmSettings) -> dict[str, str]:
    """What a replica and its vLLM engine know of themselves (set last: no configured variable
    replaces them): the model key, the mark by which the engine reaper knows an orphaned
    engine is argus's (serving/reaper.py); and whose weights it serves, relative to which root,
    which the replica checks where it reads them (daemon/replicas/weights.py)."""
    return {ENGINE_MARK: model_key, OWNER_ENV: spec.user_id, ROOT_ENV: settings.storage_root}


def placement_bundles(gpus_per_replica: int, settings: LlmSettings) -> list[dict[str, float]]:
    """One bundle per tensor-parallel worker. On GPU clusters each holds one GPU of the type
    and no CPU: vLLM's Ray workers ask for num_cpus=0, and Ray merges the replica's own CPU
    into bundle 0, so a TP=N replica needs N GPUs and 1 CPU on one node (with a CPU per
    bundle it needed N+1, and an 8-GPU 8-CPU node could never place TP=8). On CPU each
    worker is a CPU."""
    if settings.on_cpu:
        return [{"CPU": 1} for _ in range(gpus_per_replica)]
    bundle: dict[str, float] = {"GPU": 1}
    if settings.accelerator_type:
        bundle[f"accelerator_type:{settings.accelerator_type}"] = 0.001
    return [dict(bundle) for _ in range(gpus_per_replica)]


def build_llm_config(spec: ResolvedServingSpec, model_key: str, settings: LlmSettings) -> dict[str, Any]:
    """LLMConfig fields for one model, with keys in a fixed order (see module doc)."""
    engine_kwargs = {**settings.engine_defaults, **spec.engine_kwargs,
                     "tensor_parallel_size": spec.gpus_per_replica}
    if spec.adapters is not None:
        # vLLM reserves LoRA slots for max_loras adapters of up to max_lora_rank at engine start;
        # the adapters themselves come and go at run time (ArgusLLMServer), never in these args.
        engine_kwargs.update(enable_lora=True, max_lora_rank=int(spec.adapters["max_rank"]),
                             max_loras=int(spec.adapters["max_loaded"]))
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": spec.model_id, "model_source": spec.model_source},
        "engine_kwargs": dict(sorted(engine_kwargs.items())),
        "deployment_config": {"name": model_key, "num_replicas": ARGS_NUM_REPLICAS},
        "placement_group_config": {"bundles": placement_bundles(spec.gpus_per_replica, settings),
                                   "strategy": "STRICT_PACK"},
        "runtime_env": {"env_vars": dict(sorted({**runtime_env_vars(settings), **replica_identity(spec, model_key,
                                                                                                   settings)}.items()))},
    }
    if settings.on_cpu:
        config["accelerator_config"] = {"kind": "cpu"}
    else:
        config["accelerator_type"] = settings.accelerator_type
    return config


@dataclass(frozen=True)
class ModelDeployment:
    """One model as the serving layer runs it: its LLMConfig and its replica count."""

    model_key: str
    model_id: str
    llm_config: dict[str, Any]
    num_replicas: int

    @classmethod
    def of(cls, model_key: str, spec: ResolvedServingSpec, settings: LlmSettings) -> "ModelDeployment":
        return cls(model_key, spec.model_id, build_llm_config(spec, model_key, settings), spec.num_replicas)


def single_app(models: list[ModelDeployment]) -> dict[str, Any]:
    """The seed's layout: every model in one build_openai_app application."""
    ordered = sorted(models, key=lambda m: m.model_id)
    return {
        "name": SINGLE_APP_NAME,
        "route_prefix": "/",
        "import_path": BUILD_OPENAI_APP,
        "args": {"llm_configs": [m.llm_config for m in ordered]},
        "deployments": [{"name": deployment_name(m.model_key), "num_replicas": m.num_replicas} for m in ordered],
    }


def takes_adapters(llm_config: dict[str, Any]) -> bool:
    return bool((llm_config.get("engine_kwargs") or {}).get("enable_lora"))


def model_app(model: ModelDeployment, adapters: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The per-model layout: one application per model, reachable only through the front end.
    A model that takes adapters gets its adapter table ({public id: {"path", "generation"}}) as
    its deployment's user_config, which Serve applies in place (ArgusLLMServer.reconfigure):
    adapters come and go without restarting a replica."""
    deployment: dict[str, Any] = {"name": deployment_name(model.model_key), "num_replicas": model.num_replicas}
    if takes_adapters(model.llm_config):
        deployment["user_config"] = {"adapters": dict(sorted((adapters or {}).items()))}
    return {
        "name": app_name(model.model_key),
        "route_prefix": None,
        "import_path": BUILD_MODEL_APP,
        "args": {"llm_config": model.llm_config},
        "deployments": [deployment],
    }


def adapter_table(app_config: dict[str, Any] | None, model_key: str) -> dict[str, dict[str, Any]]:
    """The adapter table Serve holds for a model (its deployment's user_config)."""
    for deployment in (app_config or {}).get("deployments") or []:
        if deployment.get("name") == deployment_name(model_key):
            return dict(((deployment.get("user_config") or {}).get("adapters")) or {})
    return {}


def frontend_app(routes: list[dict[str, Any]], replicas: int = 2) -> dict[str, Any]:
    """The one OpenAI endpoint of the per-model layout. Its model table is user_config, which
    Serve applies in place (to every replica): the front end is never restarted for a model
    change. More than one replica, so that losing one does not make every model unreachable."""
    return {
        "name": SINGLE_APP_NAME,
        "route_prefix": "/",
        "import_path": BUILD_FRONTEND,
        "args": {},
        "deployments": [{"name": FRONTEND_DEPLOYMENT, "num_replicas": replicas,
                         "user_config": {"models": sorted(routes, key=lambda r: r["model_id"])}}],
    }


def lease_app(value: dict[str, Any]) -> dict[str, Any]:
    """The lease's app: no route, one tiny replica; the lease is its user_config, which Serve
    applies in place (a renewal restarts nothing)."""
    return {"name": LEASE_APP_NAME, "route_prefix": None, "import_path": BUILD_LEASE, "args": {},
            "deployments": [{"name": LEASE_DEPLOYMENT, "num_replicas": 1, "user_config": value}]}


def lease_of(app_config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The lease value in a deployed lease app's config."""
    for deployment in (app_config or {}).get("deployments") or []:
        if deployment.get("name") == LEASE_DEPLOYMENT:
            return deployment.get("user_config")
    return None


def frontend_route(model: ModelDeployment) -> dict[str, Any]:
    return {"model_id": model.model_id, "app": app_name(model.model_key),
            "deployment": deployment_name(model.model_key),
            "max_request_context_length": model.llm_config.get("engine_kwargs", {}).get("max_model_len")}


def adapter_route(adapter_id: str, base: ModelDeployment) -> dict[str, Any]:
    """An adapter is reached through its base's deployment, with its id as the multiplexed
    model id (which is also the LoRA name vLLM serves it under)."""
    return {**frontend_route(base), "model_id": adapter_id, "base_model": base.model_id}


def frontend_routes(app_config: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The model table the deployed front end holds, by public id."""
    for deployment in (app_config or {}).get("deployments") or []:
        if deployment.get("name") == FRONTEND_DEPLOYMENT:
            return {r["model_id"]: r for r in (deployment.get("user_config") or {}).get("models") or []}
    return {}


def deployed_models(app_config: dict[str, Any] | None) -> dict[str, ModelDeployment]:
    """The models inside a deployed application config, by model key (for keeping a
    model's running version while its update waits for resources)."""
    if not app_config:
        return {}
    overrides = {d.get("name"): d.get("num_replicas") for d in app_config.get("deployments") or []}
    out = {}
    args = app_config.get("args") or {}
    for llm_config in args.get("llm_configs") or ([args["llm_config"]] if args.get("llm_config") else []):
        key = (llm_config.get("deployment_config") or {}).get("name")
        model_id = (llm_config.get("model_loading_config") or {}).get("model_id")
        if key and model_id:
            replicas = overrides.get(deployment_name(key)) or ARGS_NUM_REPLICAS
            out[key] = ModelDeployment(key, model_id, llm_config, replicas)
    return out


def serve_config(applications: list[dict[str, Any]], *, http_host: str, http_port: int,
                 proxy_location: str) -> dict[str, Any]:
    """The whole declarative config for PUT /api/serve/applications/."""
    return {
        "proxy_location": proxy_location,
        "http_options": {"host": http_host, "port": http_port},
        "applications": sorted(applications, key=lambda a: a["name"]),
    }

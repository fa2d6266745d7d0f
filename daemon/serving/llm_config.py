"""From a resolved spec to a Ray Serve LLM `LLMConfig` (as a plain dict): what one model's
deployment runs. Pure: no ray import, no I/O. The Serve config around it: serve_config.py.

Byte-stability matters: Serve restarts every replica of an app whose `args` change, so the
same spec must always give the same LLMConfig (keys sorted, no replica count: that is the
per-deployment `num_replicas` override, which Serve applies in place).
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from daemon.core.replica_contract import ENGINE_MARK, OWNER_ENV, ROOT_ENV
from daemon.core.spec import ResolvedServingSpec

# Placeholder in args so Ray's LLM defaults do not switch on autoscaling; the real count
# is the per-deployment override: `num_replicas`, or (autoscaled) `autoscaling_config`, which
# Serve's override_deployment_info lays over the code's options (Ray 2.60
# serve/_private/application_state.py): with an autoscaling_config the placeholder count is
# ignored (deployment_state.deploy registers the deployment with the autoscaler instead), so
# the args stay byte-stable whether a model is fixed or autoscaled. (A switch between the two
# still changes the app's code version, which lists the autoscaling policies: a new generation,
# serving/rollout.py same_engine.)
ARGS_NUM_REPLICAS = 1

# How often a stopping replica checks whether its in-flight requests have ended (Serve's
# graceful_shutdown_wait_loop_s; Ray's default, written out so that what argus renders says
# it): an idle stopping replica exits after one such wait, a draining one within one wait of
# its last request. The bound on the whole drain is the config's serving.serve.drain_timeout_s.
DRAIN_POLL_S = 2.0


@dataclass(frozen=True)
class LlmSettings:
    """What a model's deployment needs from the platform config: its LLMConfig's settings, and
    how long a replica Serve stops lets its requests finish (`drain_timeout_s`, the config's
    serving.serve.drain_timeout_s; None: Ray's own default)."""

    accelerator_type: str                   # "cpu" for CPU-only serving
    engine_defaults: dict[str, Any]
    env_vars: dict[str, str]
    cache_dir: str
    storage_root: str = ""                  # storage.root: the replica checks weights' paths against it
    drain_timeout_s: float | None = None

    @property
    def on_cpu(self) -> bool:
        return self.accelerator_type.lower() == "cpu"

    @classmethod
    def from_config(cls, config: Any) -> "LlmSettings":
        llm = config.serving.llm
        return cls(accelerator_type=llm.accelerator_type, engine_defaults=dict(llm.engine_defaults),
                   env_vars=dict(llm.env_vars), cache_dir=llm.cache_dir, storage_root=config.storage.root,
                   drain_timeout_s=float(config.serving.serve.drain_timeout_s))


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


def ray_autoscaling_config(autoscaling: dict[str, Any]) -> dict[str, Any]:
    """A spec's autoscaling (AutoscalingPolicy as a dict) as Ray Serve's per-deployment
    `autoscaling_config`. No initial_replicas: Serve then starts at min_replicas, so a model with
    min_replicas 0 is deployed without a cold start and wakes on its first request; and an in-place
    change of the range never resets the replicas Serve runs now. scale_down_delay_s is both the
    delay before each step down and before the last replica goes (downscale_to_zero_delay_s)."""
    delay = float(autoscaling["scale_down_delay_s"])
    return {"min_replicas": int(autoscaling["min_replicas"]), "max_replicas": int(autoscaling["max_replicas"]),
            "target_ongoing_requests": float(autoscaling["target_ongoing_requests"]),
            "downscale_delay_s": delay, "downscale_to_zero_delay_s": delay}


@dataclass(frozen=True)
class ModelDeployment:
    """One model as the serving layer runs it: its LLMConfig and its replica count: a fixed
    `num_replicas`, or (`autoscaling`, Ray's autoscaling_config) a range Serve scales in by load,
    num_replicas then being its min_replicas (what admission reserves). `drain_timeout_s`: how
    long a replica Serve stops (scale-down, removal) lets its in-flight requests finish (None:
    Ray's default, 20 s). All three are per-deployment overrides that Serve changes in place."""

    model_key: str
    model_id: str
    llm_config: dict[str, Any]
    num_replicas: int
    autoscaling: dict[str, Any] | None = None
    drain_timeout_s: float | None = None

    @classmethod
    def of(cls, model_key: str, spec: ResolvedServingSpec, settings: LlmSettings) -> "ModelDeployment":
        scaling = ray_autoscaling_config(spec.autoscaling) if spec.autoscaling is not None else None
        return cls(model_key, spec.model_id, build_llm_config(spec, model_key, settings), spec.num_replicas, scaling,
                   settings.drain_timeout_s)

    @property
    def may_idle(self) -> bool:
        """Serve may run no replica of it when it gets no request (autoscaled, min_replicas 0)."""
        return self.autoscaling is not None and int(self.autoscaling["min_replicas"]) == 0


def drain_options(drain_timeout_s: float | None) -> dict[str, float]:
    """A deployment's graceful shutdown as Serve's per-deployment options (none: Ray's defaults).
    Both change in place (Ray 2.60 DeploymentConfig: the timeout is NeedsReconfigure, the poll
    NeedsActorReconfigure; neither restarts a replica)."""
    if drain_timeout_s is None:
        return {}
    return {"graceful_shutdown_timeout_s": float(drain_timeout_s), "graceful_shutdown_wait_loop_s": DRAIN_POLL_S}


def takes_adapters(llm_config: dict[str, Any]) -> bool:
    return bool((llm_config.get("engine_kwargs") or {}).get("enable_lora"))

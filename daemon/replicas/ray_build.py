"""What Serve's build of a model's app needs of Ray, without importing Ray Serve LLM.

Serve builds each new app in a new Ray worker that imports the app's builder module
(names.BUILD_MODEL_APP). Ray Serve LLM's `build_llm_deployment` imports its LLMConfig, which
imports vLLM and torch: ~10 s of a 2-core machine on every new model and every rollout
generation, before any replica starts (this module's imports: ~2 s, Ray Serve's own). argus's LLMConfigs are few in shape (rendered by
daemon/serving/llm_config.py), so this module computes the deployment options Ray 2.60's
builder gives them (`LLMServer.get_deployment_options`, the builder's defaults) and names the
server class by import path: the replica imports it (and vLLM) where it runs anyway.
tests/integration/test_ray_contract.py checks that the options equal Ray's own builder's for
every shape argus renders, and that the build imports neither vLLM nor torch.

It is ray_private's build-time half: Ray's private names the build needs are here, the ones
replicas need are there (importing ray_private costs the ~10 s this module saves).
"""
from __future__ import annotations

import copy
from typing import Any

import ray

TESTED_RAY = ("2.60.0",)

if ray.__version__ not in TESTED_RAY:
    raise ImportError(
        f"argus's replicas are tested with Ray {', '.join(TESTED_RAY)}, and this node runs Ray "
        f"{ray.__version__}; install ray[serve,llm]=={TESTED_RAY[-1]} on every node of the cluster "
        "(docs/operating.md), or upgrade argus")

from ray import serve  # noqa: E402
from ray.llm._internal.common.dict_utils import maybe_apply_llm_deployment_config_defaults  # noqa: E402
from ray.llm._internal.serve import constants  # noqa: E402  (os.environ only: no vLLM)

# Ray 2.60 core/server/builder.py DEFAULT_DEPLOYMENT_OPTIONS, from the same constants.
DEFAULT_DEPLOYMENT_OPTIONS = {
    "max_ongoing_requests": constants.DEFAULT_MAX_ONGOING_REQUESTS,
    "health_check_period_s": constants.DEFAULT_HEALTH_CHECK_PERIOD_S,
    "health_check_timeout_s": constants.DEFAULT_HEALTH_CHECK_TIMEOUT_S,
    "autoscaling_config": {"target_ongoing_requests": constants.DEFAULT_MAX_TARGET_ONGOING_REQUESTS},
}
# Ray 2.60 core/server/llm_server.py get_deployment_options: the hook Ray Serve LLM sets on
# every replica's workers.
WORKER_PROCESS_SETUP_HOOK = "ray.llm._internal.serve._worker_process_setup_hook"

# The LLMConfig fields argus renders (serving/llm_config.build_llm_config), and within them:
# the options below are Ray's for these; anything else could change them (a request router, a
# bundle per worker, an accelerator topology, a server class), so it is refused, not guessed.
KNOWN_FIELDS = {"model_loading_config", "engine_kwargs", "deployment_config", "placement_group_config",
                "runtime_env", "accelerator_config", "accelerator_type"}
KNOWN_DEPLOYMENT_FIELDS = {"name", "num_replicas"}
KNOWN_PLACEMENT_FIELDS = {"bundles", "strategy"}
CPU_ACCELERATOR = {"kind": "cpu"}


def unknown_fields(llm_config: dict[str, Any]) -> list[str]:
    """What of an LLMConfig (as a dict) the options below do not model, by dotted name."""
    deployment = llm_config.get("deployment_config") or {}
    group = llm_config.get("placement_group_config")
    unknown = sorted(set(llm_config) - KNOWN_FIELDS)
    unknown += [f"deployment_config.{key}" for key in sorted(set(deployment) - KNOWN_DEPLOYMENT_FIELDS)]
    if "name" not in deployment:
        unknown.append("deployment_config without a name")
    if not isinstance(group, dict) or not group.get("bundles"):
        unknown.append("placement_group_config without bundles")
    else:
        unknown += [f"placement_group_config.{key}" for key in sorted(set(group) - KNOWN_PLACEMENT_FIELDS)]
    if "accelerator_config" in llm_config and llm_config["accelerator_config"] != CPU_ACCELERATOR:
        unknown.append("accelerator_config other than {'kind': 'cpu'}")
    return unknown


def _merged_bundles(worker_bundles: list[dict[str, float]], replica: dict[str, float]) -> list[dict[str, float]]:
    """Ray's _merge_replica_actor_and_child_actor_bundles: the replica actor shares the first
    worker's bundle (its resources added to it)."""
    if not worker_bundles:
        return [dict(replica)]
    first = worker_bundles[0]
    merged = {key: first.get(key, 0) + replica.get(key, 0) for key in set(first) | set(replica)}
    return [merged, *(dict(bundle) for bundle in worker_bundles[1:])]


def model_deployment_options(llm_config: dict[str, Any], name_prefix: str,
                             worker_runtime_env: dict[str, Any]) -> dict[str, Any]:
    """The Serve deployment options Ray 2.60's build_llm_deployment gives an LLMConfig argus
    rendered (as a dict), in a build worker whose runtime_env is `worker_runtime_env` (Ray's
    builder reads its own: ray.get_runtime_context().runtime_env). Pure. ValueError for a
    field argus does not render."""
    unknown = unknown_fields(llm_config)
    if unknown:
        raise ValueError(f"argus's model build does not know these LLMConfig fields: {unknown}")
    options = copy.deepcopy(llm_config.get("deployment_config") or {})
    actor = options.get("ray_actor_options", {})
    # The placement group: argus's bundles as LLMConfig validates them (amounts are floats, as
    # in Ray's: Serve hashes the bundles' JSON into the deployment's version, where 1 and 1.0
    # differ), each with the accelerator's resource (setdefault, as
    # VLLMEngineConfig.placement_bundles), the replica actor's own CPU in the first.
    group = llm_config["placement_group_config"]
    bundles = []
    for bundle in group.get("bundles") or []:
        bundle = {resource: float(amount) for resource, amount in bundle.items()}
        if llm_config.get("accelerator_type"):
            bundle.setdefault(f"accelerator_type:{llm_config['accelerator_type']}", 0.001)
        bundles.append(bundle)
    replica = {"CPU": actor.get("num_cpus", 1), "GPU": actor.get("num_gpus", 0), **actor.get("resources", {})}
    options.update(placement_group_bundles=_merged_bundles(bundles, replica),
                   placement_group_strategy=group.get("strategy", "PACK"))
    # The replica's runtime_env: this build worker's, Ray Serve LLM's hook, the config's.
    runtime_env = dict(worker_runtime_env)
    if constants.ENABLE_WORKER_PROCESS_SETUP_HOOK:
        runtime_env["worker_process_setup_hook"] = WORKER_PROCESS_SETUP_HOOK
    actor["runtime_env"] = {**runtime_env, **actor.get("runtime_env", {}), **(llm_config.get("runtime_env") or {})}
    options["ray_actor_options"] = actor
    options["name"] = name_prefix + options["name"]
    return maybe_apply_llm_deployment_config_defaults(DEFAULT_DEPLOYMENT_OPTIONS, options)


def worker_runtime_env() -> dict[str, Any]:
    """This build worker's runtime_env (the app's, as Serve started the build task)."""
    return dict(ray.get_runtime_context().runtime_env)


def deployment_by_import_path(options: dict[str, Any], import_path: str, **init_kwargs: Any) -> Any:
    """A bound deployment whose class the replica imports from `import_path` ("module.Class", dotted):
    Serve's ReplicaConfig takes an import path as the deployment's definition, and the replica
    loads it (Ray 2.60 serve/_private/replica.py, _load_deployment_def_from_import_path)."""
    return serve.deployment(**options)(import_path).bind(**init_kwargs)

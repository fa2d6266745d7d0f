"""The model server's build, run by Ray Serve in a new worker for each new model app (argusd
names `build_model_app` in the Serve config: daemon.replicas.names.BUILD_MODEL_APP). An app
holds that model's LLMServer deployment alone: Ray Serve LLM's own server as
llm_server.ArgusLLMServer, named by import path, with the deployment options Ray's own builder
would give it (ray_build.py). Nothing here imports vLLM: the build worker imports Ray Serve
(~2 s on 2 cores), not vLLM and torch (~12 s).

The import path stays this module's (Serve rebuilds a model app, restarting its replicas, when
the app's import path changes), and the class answers to its old name here: a deployment built
by an earlier argus pickled `daemon.replicas.model_server.ArgusLLMServer` by reference, and
Serve starts its replacement replicas from that pickle.
"""
from __future__ import annotations

from typing import Any

from daemon.replicas.names import MODEL_SERVER_CLASS, MODEL_SERVER_PREFIX
from daemon.replicas.ray_build import deployment_by_import_path, model_deployment_options, worker_runtime_env


def build_model_app(args: dict[str, Any]) -> Any:
    """One model's app: its LLMServer deployment alone, no HTTP route of its own. The
    deployment keeps Ray's name (names.deployment_name: "LLMServer:<model key>")."""
    llm_config = args["llm_config"]
    options = model_deployment_options(llm_config, MODEL_SERVER_PREFIX, worker_runtime_env())
    return deployment_by_import_path(options, MODEL_SERVER_CLASS, llm_config=llm_config)


def __getattr__(name: str) -> Any:
    """`ArgusLLMServer` where an earlier argus defined it (module docstring); imported on use."""
    if name == "ArgusLLMServer":
        from daemon.replicas.llm_server import ArgusLLMServer
        return ArgusLLMServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The front end's build, run by Ray Serve in a new worker when the front-end app is new or its
config changed (argusd names `build_frontend` in the Serve config: names.BUILD_FRONTEND). The
front end's code is ingress.py (ArgusIngress in Ray Serve LLM's FastAPI ingress), named here by
import path, as the model apps' build names their server (model_server.py): the build worker
imports Ray Serve (~2 s on 2 cores), not Ray Serve LLM, vLLM and torch (~9 s), which the
front end's replicas import where they run anyway.

The import path stays this module's (Serve rebuilds an app whose import path changed), and the
names that moved to ingress.py answer here too: a front-end deployment an earlier argus built
pickled its class with `daemon.replicas.frontend.ArgusIngress` as the base, by reference, and
Serve starts that deployment's replacement replicas from the pickle.
"""
from __future__ import annotations

from typing import Any

from daemon.replicas.names import FRONTEND_CLASS, FRONTEND_DEPLOYMENT
from daemon.replicas.ray_build import deployment_by_import_path

# The deployment's options (its replica count and drain bound come from the Serve config's
# deployment overrides: serving/serve_config.FrontendApp).
FRONTEND_OPTIONS = {"name": FRONTEND_DEPLOYMENT, "num_replicas": 1, "max_ongoing_requests": 1000}


def build_frontend(args: dict[str, Any] | None = None) -> Any:
    """The front end app: its one deployment, every replica with the same model table (its
    user_config)."""
    return deployment_by_import_path(FRONTEND_OPTIONS, FRONTEND_CLASS)


def __getattr__(name: str) -> Any:
    """A name of the front end's code (ingress.py), where an earlier argus defined it; imported on use."""
    if not name.startswith("__"):
        from daemon.replicas import ingress
        if hasattr(ingress, name):
            return getattr(ingress, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

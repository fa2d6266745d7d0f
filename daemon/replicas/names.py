"""The names argusd and the code inside its Ray replicas share: the Serve applications,
deployments and import paths argusd writes into its Serve config and the replicas are built
as. Standard library only (argusd imports it without Ray; the replicas import it on every
Ray node)."""
from __future__ import annotations

# Ray Serve LLM names a model's deployment "LLMServer:" + deployment_config.name (argus
# passes the prefix to build_llm_deployment, which is Ray's own default).
MODEL_SERVER_PREFIX = "LLMServer:"
MODEL_APP_PREFIX = "llm-"            # a model's Serve application: "llm-<model key>"
FRONTEND_APP = "argus"               # the one OpenAI endpoint's application (route "/")
FRONTEND_DEPLOYMENT = "ArgusIngress"
LEASE_APP = "argus-lease"            # holds argusd's lease (daemon/serving/lease.py) in its user_config
LEASE_DEPLOYMENT = "ArgusLease"

# The version of the front end's route table (its user_config). It is the front end app's one
# argument, so a new version restarts the front end with the code that reads it: Serve applies
# a user_config change in place to the replicas it runs, and a front end of an older argus
# would misread the table (2: probe entries and the front end's own answers, for rollouts;
# 3: a route's canary split, which a front end of 2 would ignore, sending every request to the
# serving generation while argusd compares the two).
FRONTEND_TABLE_VERSION = 3

# Serve's import paths of argus's applications (module:builder), built by Serve on every node.
BUILD_MODEL_APP = "daemon.replicas.model_server:build_model_app"
BUILD_FRONTEND = "daemon.replicas.frontend:build_frontend"
BUILD_LEASE = "daemon.replicas.lease:build_lease"
# The model server's class, which a model's replica imports (the build names it by its
# dotted path: Serve's parse_import_path).
MODEL_SERVER_CLASS = "daemon.replicas.llm_server.ArgusLLMServer"
# The front end's class, which a front-end replica imports (its build names it the same way).
FRONTEND_CLASS = "daemon.replicas.ingress.ArgusFrontend"


# A model's next generation, while it rolls out, is reachable through the front end under its
# public id with this suffix: argusd's rollout probe asks it there before any client request
# is switched to it. Public ids are letters, digits, '.', '_' and '-', so no client's id has it;
# the front end never lists it in /v1/models, and the model server answers it as its own id.
PROBE_SUFFIX = "@next"


def probe_id(model_id: str) -> str:
    """The id argusd's rollout probe sends as `model` to reach a model's next generation."""
    return f"{model_id}{PROBE_SUFFIX}"


def probed_model(model: str | None) -> str | None:
    """The public id a probe id stands for (None: `model` is not a probe id)."""
    if model is None or not model.endswith(PROBE_SUFFIX):
        return None
    return model[: -len(PROBE_SUFFIX)] or None


# While a canary splits a model's requests, the front end keeps the new generation's handle
# under the public id with this suffix (inside the front end only: the request's `model` is
# never rewritten, and no client's id has '@').
CANARY_SUFFIX = "@canary"


def canary_key(model_id: str) -> str:
    """The front end's own key of a model's canary handle."""
    return f"{model_id}{CANARY_SUFFIX}"


# While a canary splits a model, the front end counts each of its requests by the generation it
# sent it to (tags application, deployment: the target's) and the outcome, a Ray metric that
# every node's metrics export serves as "ray_" + this + "_total", beside Serve's own counters.
FRONTEND_REQUESTS_METRIC = "argus_frontend_requests"


def deployment_name(model_key: str) -> str:
    """A model's LLMServer deployment as Serve names it (its status maps back to the model)."""
    return f"{MODEL_SERVER_PREFIX}{model_key}"


def model_app_name(model_key: str) -> str:
    """A model's Serve application. Serve's status is mapped back to models through the
    LLMConfig each app holds, not through this name, so a later name (one app per generation
    of a model) reads back the same way."""
    return f"{MODEL_APP_PREFIX}{model_key}"


def candidate_app_name(model_key: str) -> str:
    """A model's second Serve application: its next generation starts here while the first
    serves (and the other way round: the two slots take turns)."""
    return f"{MODEL_APP_PREFIX}{model_key}-b"


def is_argus_app(name: str) -> bool:
    """Whether a Serve application is argus's to change: its front end, its lease and its model
    apps. Every other app on the cluster is passed through unchanged."""
    return name in (FRONTEND_APP, LEASE_APP) or name.startswith(MODEL_APP_PREFIX)


# A held request that got no replica is answered with Retry-After = its hold, at most this: Serve
# goes on waking the model after the 503 (the request asked for a replica, and the scale-up
# stays decided), so a retry soon is likely served; a long hold that ran out means a slow wake. argusd's
# own 503 for a wake Serve cannot place says the same.
WAKE_RETRY_AFTER_MAX_S = 30

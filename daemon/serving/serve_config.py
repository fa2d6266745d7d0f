"""What argus asks Ray Serve to run, typed: its applications (one per model deployment, the
front end with its route table, the lease) and the other teams' apps it passes through;
rendered to and parsed from Serve's declarative JSON here and nowhere else. Pure: no ray
import, no I/O. tests/integration/test_ray_contract.py validates what `render` writes against
Ray's own ServeDeploySchema.

The reconcile decision compares these objects: the config it wants with the one Serve reports
(`parse_app` of each deployed app). An argus-named app that does not read back exactly as argus
would write it (another import path, a field changed by hand, an older argus's layout) parses
as an `OtherApp`, which equals nothing argus wants, so it is applied again.

A model is reached through the front end's route table (public id -> the app and deployment
that serve it), and a model app names its model through the LLMConfig it holds, not through
its app name: two apps may serve the same model (a new generation beside the old one), and
the routes say which one takes its requests.

Byte-stability matters: Serve restarts every replica of an app whose `args` change, so the same
models must always render the same `args` (sorted, no replica counts: scaling goes through
per-deployment `num_replicas` or `autoscaling_config` overrides, which Serve applies in place).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Union

from daemon.replicas.names import (BUILD_FRONTEND, BUILD_LEASE, BUILD_MODEL_APP, FRONTEND_APP, FRONTEND_DEPLOYMENT,
                                   FRONTEND_TABLE_VERSION, LEASE_APP, LEASE_DEPLOYMENT, MODEL_APP_PREFIX,
                                   deployment_name, is_argus_app)
from daemon.serving.llm_config import ModelDeployment, drain_options, takes_adapters


@dataclass(frozen=True)
class AdapterEntry:
    """One LoRA adapter in a base model's table: its folder, its generation and its owner (whose
    roots the replica checks the folder against)."""

    path: str
    generation: int
    user_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "generation": self.generation, "user_id": self.user_id}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "AdapterEntry":
        return cls(str(raw["path"]), int(raw["generation"]), raw.get("user_id"))


@dataclass(frozen=True)
class ModelApp:
    """One deployment of one model: a Serve app holding its LLMServer deployment alone, reached
    only through the front end. `adapters`: its adapter table (public id -> entry), which Serve
    applies in place (None: the model takes no adapters)."""

    name: str
    deployment: ModelDeployment
    adapters: dict[str, AdapterEntry] | None = None
    import_path: str = BUILD_MODEL_APP

    @classmethod
    def of(cls, deployment: ModelDeployment, name: str,
           adapters: dict[str, AdapterEntry] | None = None) -> "ModelApp":
        return cls(name, deployment, (dict(adapters or {}) if takes_adapters(deployment.llm_config) else None))

    @property
    def model_key(self) -> str:
        return self.deployment.model_key

    @property
    def deployment_name(self) -> str:
        return deployment_name(self.deployment.model_key)

    def same_server(self, other: "App | None") -> bool:
        """Whether `other` runs the same replicas as specified (its adapter table and its drain
        bound aside: the platform's, which Serve changes in place on the replicas it runs)."""
        return (isinstance(other, ModelApp)
                and (self.name, self.import_path, replace(self.deployment, drain_timeout_s=None))
                == (other.name, other.import_path, replace(other.deployment, drain_timeout_s=None)))

    def route(self) -> "Route":
        return Route(self.deployment.model_id, self.name, self.deployment_name,
                     self.deployment.llm_config.get("engine_kwargs", {}).get("max_model_len"))


@dataclass(frozen=True)
class Unavailable:
    """Why the front end answers a known model's requests itself, without calling any replica:
    the HTTP status, the message (OpenAI's error shape) and the Retry-After seconds (None: no
    such header). E.g. 503 "model X is starting" while a model has no serving generation."""

    status: int
    message: str
    retry_after: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "message": self.message, "retry_after": self.retry_after}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "Unavailable":
        after = raw.get("retry_after")
        return cls(int(raw["status"]), str(raw["message"]), None if after is None else int(after))


@dataclass(frozen=True)
class Canary:
    """A share of a route's requests that goes to another app's deployment: a model's new
    generation while its canary lasts (`percent` of 1 to 99 of the requests)."""

    app: str
    deployment: str
    percent: int

    def to_json(self) -> dict[str, Any]:
        return {"app": self.app, "deployment": self.deployment, "percent": self.percent}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "Canary":
        return cls(str(raw["app"]), str(raw["deployment"]), int(raw["percent"]))


@dataclass(frozen=True)
class Route:
    """A public model id in the front end's table and the app and deployment that serve it. An
    adapter's route names its base (`base_model`) and goes to the base's deployment.

    `probe`: the entry's model_id is names.probe_id(<public id>), the way argusd's rollout probe
    reaches a model's next generation before clients are switched to it; the front end serves
    it but never lists it. `unavailable`: the front end answers the model's requests itself
    (app and deployment are empty), e.g. 503 while the model starts. `hold_s`: the model may
    have no replica (autoscaled to zero): the front end holds a request up to this many seconds
    while Serve wakes it, then answers 503 with Retry-After (None: no bound of argus's).
    `canary`: a share of the requests goes to the model's new generation instead
    (route_table.route draws per request)."""

    model_id: str
    app: str
    deployment: str
    max_request_context_length: int | None = None
    base_model: str | None = None
    probe: bool = False
    unavailable: Unavailable | None = None
    hold_s: float | None = None
    canary: Canary | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model_id": self.model_id, "app": self.app, "deployment": self.deployment,
                               "max_request_context_length": self.max_request_context_length}
        if self.base_model is not None:
            out["base_model"] = self.base_model
        if self.probe:
            out["probe"] = True
        if self.unavailable is not None:
            out["unavailable"] = self.unavailable.to_json()
        if self.hold_s is not None:
            out["hold_s"] = self.hold_s
        if self.canary is not None:
            out["canary"] = self.canary.to_json()
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "Route":
        unavailable = raw.get("unavailable")
        return cls(str(raw["model_id"]), str(raw["app"]), str(raw["deployment"]),
                   raw.get("max_request_context_length"), raw.get("base_model"), bool(raw.get("probe", False)),
                   None if unavailable is None else Unavailable.from_json(unavailable),
                   None if raw.get("hold_s") is None else float(raw["hold_s"]),
                   None if raw.get("canary") is None else Canary.from_json(raw["canary"]))


@dataclass(frozen=True)
class FrontendApp:
    """The one OpenAI endpoint (route "/"): its route table is user_config, which Serve applies in
    place to every replica, so the front end never restarts for a model change. `drain_timeout_s`:
    the models' drain bound, also its own: a front-end replica Serve stops relays streams until
    they end (None: Ray's default)."""

    routes: tuple[Route, ...]
    replicas: int
    import_path: str = BUILD_FRONTEND
    name: str = FRONTEND_APP
    drain_timeout_s: float | None = None

    @classmethod
    def of(cls, routes: list[Route], replicas: int, drain_timeout_s: float | None = None) -> "FrontendApp":
        return cls(tuple(sorted(routes, key=lambda r: r.model_id)), replicas, drain_timeout_s=drain_timeout_s)

    def route(self, model_id: str) -> Route | None:
        return next((r for r in self.routes if r.model_id == model_id), None)


@dataclass(frozen=True)
class LeaseApp:
    """argusd's lease, held as the user_config of one tiny replica (a renewal restarts nothing)."""

    value: dict[str, Any]
    import_path: str = BUILD_LEASE
    name: str = LEASE_APP


@dataclass(frozen=True)
class OtherApp:
    """An app as Serve reports it, not one argus wrote as it stands: another team's (passed
    through unchanged), or an argus-named one changed behind argus's back (replaced)."""

    name: str
    raw: dict[str, Any]


App = Union[ModelApp, FrontendApp, LeaseApp, OtherApp]


@dataclass(frozen=True)
class HttpOptions:
    host: str
    port: int
    proxy_location: str


@dataclass(frozen=True)
class ServeConfig:
    """The whole declarative config argus puts (PUT /api/serve/applications/)."""

    http: HttpOptions
    apps: tuple[App, ...] = field(default_factory=tuple)

    def by_name(self) -> dict[str, App]:
        return {app.name: app for app in self.apps}

    def to_json(self) -> dict[str, Any]:
        return {"proxy_location": self.http.proxy_location,
                "http_options": {"host": self.http.host, "port": self.http.port},
                "applications": [render_app(a) for a in sorted(self.apps, key=lambda a: a.name)]}


def render_app(app: App) -> dict[str, Any]:
    """One application as Serve's declarative config writes it."""
    if isinstance(app, OtherApp):
        return app.raw
    if isinstance(app, ModelApp):
        # Ray refuses num_replicas beside an autoscaling_config (DeploymentSchema): one or the other.
        deployment: dict[str, Any] = ({"name": app.deployment_name, "num_replicas": app.deployment.num_replicas}
                                      if app.deployment.autoscaling is None else
                                      {"name": app.deployment_name, "autoscaling_config": app.deployment.autoscaling})
        deployment.update(drain_options(app.deployment.drain_timeout_s))
        if app.adapters is not None:
            deployment["user_config"] = {"adapters": {k: v.to_json() for k, v in sorted(app.adapters.items())}}
        return {"name": app.name, "route_prefix": None, "import_path": app.import_path,
                "args": {"llm_config": app.deployment.llm_config}, "deployments": [deployment]}
    if isinstance(app, FrontendApp):
        # The table's version as the app's argument: a front end of an older argus reads back as
        # another app and is replaced, restarting it once with the code that reads this table.
        return {"name": app.name, "route_prefix": "/", "import_path": app.import_path,
                "args": {"table_version": FRONTEND_TABLE_VERSION},
                "deployments": [{"name": FRONTEND_DEPLOYMENT, "num_replicas": app.replicas,
                                 "user_config": {"models": [r.to_json() for r in app.routes]},
                                 **drain_options(app.drain_timeout_s)}]}
    return {"name": app.name, "route_prefix": None, "import_path": app.import_path, "args": {},
            "deployments": [{"name": LEASE_DEPLOYMENT, "num_replicas": 1, "user_config": app.value}]}


def parse_app(raw: dict[str, Any]) -> App:
    """An application as Serve reports its deployed config: argus's own when it reads back exactly
    as `render_app` writes it (in the parts that decide what runs), else an OtherApp."""
    name = str(raw.get("name") or "")
    if not is_argus_app(name):
        return OtherApp(name, raw)
    try:
        app = _parse_argus(name, raw)
    except (KeyError, TypeError, ValueError, AttributeError, StopIteration):
        return OtherApp(name, raw)
    return app if app is not None and _view(render_app(app)) == _view(raw) else OtherApp(name, raw)


def _only_deployment(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return next(d for d in raw.get("deployments") or [] if d.get("name") == name)


def _parse_argus(name: str, raw: dict[str, Any]) -> App | None:
    import_path = str(raw["import_path"])
    if name == FRONTEND_APP:
        front = _only_deployment(raw, FRONTEND_DEPLOYMENT)
        routes = tuple(Route.from_json(r) for r in (front.get("user_config") or {}).get("models") or [])
        return FrontendApp(routes, int(front["num_replicas"]), import_path, drain_timeout_s=_drain(front))
    if name == LEASE_APP:
        return LeaseApp(_only_deployment(raw, LEASE_DEPLOYMENT).get("user_config"), import_path)
    if name.startswith(MODEL_APP_PREFIX):
        llm_config = raw["args"]["llm_config"]
        key = str(llm_config["deployment_config"]["name"])
        model_id = str(llm_config["model_loading_config"]["model_id"])
        server = _only_deployment(raw, deployment_name(key))
        user_config = server.get("user_config")
        adapters = (None if user_config is None else
                    {k: AdapterEntry.from_json(v) for k, v in (user_config.get("adapters") or {}).items()})
        scaling = server.get("autoscaling_config")
        replicas = int(server["num_replicas"]) if scaling is None else int(scaling["min_replicas"])
        return ModelApp(name, ModelDeployment(key, model_id, llm_config, replicas, scaling, _drain(server)),
                        adapters, import_path)
    return None


def _drain(deployment: dict[str, Any]) -> float | None:
    """A deployment's drain bound as argus wrote it (None: not set). A poll other than argus's
    reads back unequal in _view, so the app is written again."""
    timeout = deployment.get("graceful_shutdown_timeout_s")
    return None if timeout is None else float(timeout)


def _view(app: dict[str, Any]) -> dict[str, Any]:
    """The parts of an application config that decide what runs (Serve's deployed config adds
    its own defaults elsewhere)."""
    return {"name": app.get("name"), "route_prefix": app.get("route_prefix"), "import_path": app.get("import_path"),
            "args": app.get("args") or {}, "runtime_env": app.get("runtime_env") or {},
            "deployments": sorted(({"name": d.get("name"), "num_replicas": d.get("num_replicas"),
                                    "autoscaling_config": d.get("autoscaling_config"),
                                    "user_config": d.get("user_config"),
                                    "graceful_shutdown_timeout_s": d.get("graceful_shutdown_timeout_s"),
                                    "graceful_shutdown_wait_loop_s": d.get("graceful_shutdown_wait_loop_s")}
                                   for d in app.get("deployments") or []), key=lambda d: str(d["name"]))}

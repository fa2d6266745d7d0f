"""What Serve runs, as it reports it (GET /api/serve/applications/), typed: each app's status,
its deployments' statuses and running replicas, and its deployed config read back through
serve_config.parse_app; and the reading of Serve's failure messages (tracebacks summarized,
a replica's start failure recognized). Pure: no ray import, no I/O.

The status names are Ray's own (Ray 2.60: ray.serve.schema.ApplicationStatus,
ray.serve._private.common.DeploymentStatus and ReplicaState), pinned by
tests/integration/test_ray_contract.py. A status a later Ray adds reads as UNKNOWN (argus
then waits, as for any status it does not act on) rather than failing the tick.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from daemon.core.states import StrEnum
from daemon.replicas.names import FRONTEND_APP, LEASE_APP, deployment_name, is_argus_app, model_app_name
from daemon.serving.llm_config import ModelDeployment
from daemon.serving.serve_config import App, FrontendApp, LeaseApp, ModelApp, OtherApp, parse_app


class _Status(StrEnum):
    @classmethod
    def read(cls, value: Any) -> "_Status":
        try:
            return cls(value)
        except ValueError:
            return cls("UNKNOWN")


class AppStatus(_Status):
    """An application's status (Ray's ApplicationStatus)."""

    NOT_STARTED = "NOT_STARTED"
    DEPLOYING = "DEPLOYING"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    RUNNING = "RUNNING"
    UNHEALTHY = "UNHEALTHY"
    DELETING = "DELETING"
    UNKNOWN = "UNKNOWN"          # argus's: a status this Ray does not have


class DeploymentStatus(_Status):
    """A deployment's status (Ray's DeploymentStatus)."""

    UPDATING = "UPDATING"
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    UPSCALING = "UPSCALING"
    DOWNSCALING = "DOWNSCALING"
    UNKNOWN = "UNKNOWN"


class ReplicaState(_Status):
    """A replica's state (Ray's ReplicaState); argus counts the RUNNING ones."""

    STARTING = "STARTING"
    UPDATING = "UPDATING"
    RECOVERING = "RECOVERING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    PENDING_MIGRATION = "PENDING_MIGRATION"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class ReplicaLog:
    """Where a replica's Serve log is: its node, and the file's path under that node's Ray log
    folder (Ray 2.60 ReplicaDetails.node_id and log_file_path)."""

    node_id: str
    log_file: str


@dataclass(frozen=True)
class ObservedReplica:
    """One replica as Serve reports it (Ray 2.60 ReplicaDetails: what argus shows of it)."""

    replica_id: str
    state: ReplicaState
    node_ip: str | None = None
    pid: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", ReplicaState.read(self.state))

    def to_dict(self) -> dict[str, Any]:
        return {"replica_id": self.replica_id, "state": self.state.value, "node_ip": self.node_ip, "pid": self.pid}


@dataclass(frozen=True)
class ObservedDeployment:
    """A deployment as Serve reports it. `target_replicas`: the replicas Serve wants now (Ray
    2.60 DeploymentDetails.target_num_replicas: the autoscaler's decision for an autoscaled
    deployment; None when the answer has none)."""

    status: DeploymentStatus
    message: str = ""
    running_replicas: int = 0
    target_replicas: int | None = None
    newest_running_since: datetime | None = None   # the newest RUNNING replica's start (Ray's start_time_s)
    newest_running_log: ReplicaLog | None = None   # and where its log is
    replicas: tuple[ObservedReplica, ...] = ()     # every replica Serve lists, in its order

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", DeploymentStatus.read(self.status))

    @property
    def idle(self) -> bool:
        """Serve runs no replica of it and wants none (an autoscaled deployment scaled to zero)."""
        return self.running_replicas == 0 and self.target_replicas == 0 and self.status in _SETTLED_AT_ZERO

    @property
    def waking(self) -> bool:
        """Serve runs no replica of it but wants one (an autoscaled deployment woken by a request)."""
        return self.running_replicas == 0 and ((self.target_replicas or 0) > 0
                                               or self.status == DeploymentStatus.UPSCALING)


# What Serve reports for an autoscaled deployment at zero replicas by its own decision (it
# reports HEALTHY once the downscale completed; DOWNSCALING while the last replica stops).
_SETTLED_AT_ZERO = (DeploymentStatus.HEALTHY, DeploymentStatus.DOWNSCALING)


@dataclass(frozen=True)
class ObservedApp:
    """One application as Serve reports it. `deployed`: its deployed config as Serve holds it
    (None for an app deployed with serve.run); `config`: the same, read back as argus's own
    (serve_config.parse_app)."""

    status: AppStatus
    message: str = ""
    deployed: dict[str, Any] | None = None
    deployments: dict[str, ObservedDeployment] = field(default_factory=dict)
    name: str = ""
    config: App = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", AppStatus.read(self.status))
        raw = self.deployed if self.deployed is not None else {"name": self.name}
        object.__setattr__(self, "name", self.name or str(raw.get("name") or ""))
        object.__setattr__(self, "config", parse_app({**raw, "name": raw.get("name") or self.name}))

    @property
    def going(self) -> bool:
        """Serve is deleting it: it counts as gone (putting the same config again is noise)."""
        return self.status == AppStatus.DELETING


@dataclass(frozen=True)
class Observed:
    apps: dict[str, ObservedApp] = field(default_factory=dict)

    def server(self, model_key: str, app_name: str | None = None) -> tuple[ObservedApp, ObservedDeployment] | None:
        """A model's LLMServer deployment in its app (by default the model's app as argus names
        it now), with the app."""
        app = self.apps.get(app_name or model_app_name(model_key))
        deployment = app.deployments.get(deployment_name(model_key)) if app is not None else None
        return (app, deployment) if app is not None and deployment is not None else None

    def model_app(self, model_key: str) -> ModelApp | None:
        """The model's serving app as Serve holds it (the one the front end routes it to, else its
        first slot), when it reads back as argus's own."""
        names = self.apps_of(model_key)
        if not names:
            return None
        config = self.apps[names[0]].config
        assert isinstance(config, ModelApp)
        live = self.live_app(model_key, config.deployment.model_id)
        app = self.apps.get(live or model_app_name(model_key))
        return app.config if app is not None and isinstance(app.config, ModelApp) else None

    def apps_of(self, model_key: str) -> list[str]:
        """The apps of a model Serve holds (and is not deleting), by name: one, or two while a
        new generation starts beside the serving one."""
        return sorted(name for name, app in self.apps.items()
                      if not app.going and isinstance(app.config, ModelApp) and app.config.model_key == model_key)

    def live_app(self, model_key: str, model_id: str) -> str | None:
        """The app the front end routes the model's public id to (its serving generation)."""
        frontend = self.frontend()
        route = frontend.route(model_id) if frontend is not None else None
        if route is None or route.probe or route.unavailable is not None or route.base_model is not None:
            return None
        app = self.apps.get(route.app)
        ok = (app is not None and not app.going and isinstance(app.config, ModelApp)
              and app.config.model_key == model_key)
        return route.app if ok else None

    def running_models(self) -> dict[str, ModelDeployment]:
        """What Serve runs for each model now, by model key: its serving generation (the app
        the front end routes it to, else the first app of it)."""
        out: dict[str, ModelDeployment] = {}
        for name, app in sorted(self.apps.items()):
            if not isinstance(app.config, ModelApp):
                continue
            deployment = app.config.deployment
            if deployment.model_key not in out or self.live_app(deployment.model_key, deployment.model_id) == name:
                out[deployment.model_key] = deployment
        return out

    def frontend(self) -> FrontendApp | None:
        app = self.apps.get(FRONTEND_APP)
        return app.config if app is not None and isinstance(app.config, FrontendApp) else None

    def lease(self) -> dict[str, Any] | None:
        """The lease value the deployed lease app holds."""
        app = self.apps.get(LEASE_APP)
        return app.config.value if app is not None and isinstance(app.config, LeaseApp) else None

    def as_configured(self, names: set[str] | None = None) -> dict[str, App]:
        """The apps Serve holds (and is not deleting) by name, read back as argus's own, of `names`."""
        return {name: app.config for name, app in self.apps.items()
                if not app.going and (names is None or name in names)}

    def foreign(self) -> list[OtherApp]:
        """Other teams' Serve applications on a shared cluster, to pass through unchanged: the
        dashboard's PUT replaces every declaratively deployed app, so each one that is not argus's
        goes back exactly as Serve reports it. Apps deployed with serve.run (no deployed config)
        are left alone by Serve's PUT and need nothing."""
        return [OtherApp(name, app.deployed) for name, app in sorted(self.apps.items())
                if not is_argus_app(name) and app.deployed and not app.going]


def observed_from_status(status: dict[str, Any] | None) -> Observed:
    """Parse GET /api/serve/applications/ into Observed."""
    apps = {}
    for name, app in ((status or {}).get("applications") or {}).items():
        deployments = {}
        for dep_name, dep in (app.get("deployments") or {}).items():
            replicas = dep.get("replicas") or []
            running = [r for r in replicas if ReplicaState.read(r.get("state")) == ReplicaState.RUNNING]
            started = sorted(((datetime.fromtimestamp(float(r["start_time_s"]), timezone.utc), r)
                              for r in running if r.get("start_time_s")), key=lambda pair: pair[0])
            newest = started[-1][1] if started else {}
            target = dep.get("target_num_replicas")
            deployments[dep_name] = ObservedDeployment(
                status=dep.get("status", ""), message=dep.get("message") or "",
                running_replicas=len(running), target_replicas=None if target is None else int(target),
                newest_running_since=started[-1][0] if started else None,
                newest_running_log=(ReplicaLog(newest["node_id"], newest["log_file_path"])
                                    if newest.get("node_id") and newest.get("log_file_path") else None),
                replicas=tuple(ObservedReplica(str(r.get("replica_id") or ""), r.get("state"), r.get("node_ip"),
                                               r.get("pid")) for r in replicas))
        apps[name] = ObservedApp(status=app.get("status", ""), message=app.get("message") or "",
                                 deployed=app.get("deployed_app_config"), deployments=deployments, name=name)
    return Observed(apps)


def building(observed: Observed) -> bool:
    """Whether Serve is building an application (DEPLOYING, no deployments yet): a PUT now
    restarts that build, whatever it holds."""
    return any(app.status == AppStatus.DEPLOYING and not app.deployments for app in observed.apps.values())


# In Serve's deployment message while it retries a replica that did not start (Ray 2.60
# deployment_state: "A replica failed to start with exception. Retrying N more time(s). Error:\n...").
STARTUP_FAILED_MARK = "failed to start"
_RETRY_COUNT = re.compile(r"Retrying \d+ more time\(s\)")


def startup_failure(message: str) -> str | None:
    """Why Serve's replicas do not start, from its deployment message while it retries (the
    engine's own error is the final exception), or None when the message says no such thing.
    The retry count is left out: the same failure on every retry is one reason."""
    if STARTUP_FAILED_MARK not in (message or ""):
        return None
    return summarize_failure(_RETRY_COUNT.sub("Retrying", message))


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")
SUMMARY_CHARS = 500


def final_exception(text: str) -> str:
    """The last exception line of a traceback and what follows it, on one line ("" if none)."""
    lines = text.splitlines()
    last = max((i for i, line in enumerate(lines) if _EXCEPTION_LINE.match(line.strip())), default=None)
    return " ".join(" ".join(lines[last:]).split()) if last is not None else ""


def summarize_failure(message: str) -> str:
    """Serve's failure messages carry whole tracebacks; the summary keeps the first
    sentence and the final exception (the full text stays in the FAILED event)."""
    text = _ANSI.sub("", message or "").strip()
    lines = text.splitlines()
    if not lines or "Traceback" not in text:
        return " ".join(text.split())[:SUMMARY_CHARS]
    head = lines[0].split(". ")[0].rstrip(".") + "."
    tail = re.sub(r"\s*\[type=.*", "", final_exception(text))  # pydantic's input echo
    summary = f"{head} {tail}".strip()
    return summary if len(summary) <= SUMMARY_CHARS else summary[: SUMMARY_CHARS - 1] + "…"

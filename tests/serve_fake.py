"""An in-memory stand-in for the Ray dashboard's Serve REST API, for in-process tests of the
reconcile shell and the daemon loop. It answers in Serve's own JSON shape (so the real
observed_from_status parses it) and, like Serve, a PUT replaces the whole set of
applications. It is never the only proof: the e2e tests run the same paths on real Serve."""
from __future__ import annotations

import copy
from typing import Any

from daemon.errors import ClusterError
from daemon.replicas.names import FRONTEND_APP


class FakeServe:
    def __init__(self) -> None:
        self.apps: dict[str, dict[str, Any]] = {}
        self.puts: list[dict[str, Any]] = []
        self.put_error: str | None = None   # set: every PUT fails with this message
        self.resources = {"CPU": 8.0}
        self.jobs: list[str] = []           # Ray jobs submitted (the engine reaper)
        self.unreachable: str | None = None  # set: Ray's dashboard does not answer (Ray stopped)
        self.replica_logs: dict[tuple[str, str], str | Exception] = {}   # (node id, log file) -> text, or what it raises
        self.slow_frontend = False   # set: a new route table leaves the front end UPDATING until settle()
        self.log_reads: list[tuple[str, str]] = []

    # -- the ServeClient interface ---------------------------------------------------------------

    def get_applications(self) -> dict[str, Any]:
        if self.unreachable is not None:
            raise ClusterError(self.unreachable)
        return {"applications": copy.deepcopy(self.apps)}

    def put_config(self, config: dict[str, Any]) -> None:
        if self.put_error is not None:
            raise ClusterError(self.put_error)
        self.puts.append(copy.deepcopy(config))
        wanted = {app["name"]: app for app in config["applications"]}
        for name in list(self.apps):
            if name not in wanted:
                del self.apps[name]
        for name, app in wanted.items():
            old = self.apps.get(name)
            if old is not None and old["deployed_app_config"] == app:
                continue  # unchanged: Serve leaves it as it is
            if old is not None and _without_user_config(old["deployed_app_config"]) == _without_user_config(app):
                old["deployed_app_config"] = copy.deepcopy(app)  # only user_config: applied in place
                if self.slow_frontend and name == FRONTEND_APP:   # its replicas take the new table a moment later
                    old["status"] = "DEPLOYING"
                    for dep in old["deployments"].values():
                        dep["status"] = "UPDATING"
                continue
            self.apps[name] = {"status": "DEPLOYING", "message": "", "deployed_app_config": copy.deepcopy(app),
                               "deployments": {d["name"]: {"status": "UPDATING", "message": "",
                                                           "target_num_replicas": _initial_replicas(d),
                                                           "replicas": []}
                                               for d in app.get("deployments", [])}}

    def cluster_resources(self) -> dict[str, float]:
        return dict(self.resources)

    def replica_log(self, node_id: str, log_file: str, lines: int = 500) -> str:
        self.log_reads.append((node_id, log_file))
        text = self.replica_logs.get((node_id, log_file))
        if isinstance(text, Exception):
            raise text
        if text is None:   # as Ray 2.60's log API answers a file it cannot find (state_head.get_logs)
            raise ClusterError(f"GET /api/v0/logs/file on http://127.0.0.1:8265 failed (500): "
                               f"A file is not found at: /tmp/ray/session_latest/logs/{log_file.lstrip('/')}")
        return "\n".join(text.splitlines()[-lines:])

    def submit_job(self, entrypoint: str, runtime_env: dict[str, Any] | None = None) -> str:
        self.jobs.append(entrypoint)
        return f"raysubmit_{len(self.jobs)}"

    def submit_python_job(self, code: str) -> str:
        return self.submit_job(f"python -c {code}")

    # -- what the cluster does meanwhile ---------------------------------------------------------

    def settle(self, started_at: float | None = None) -> None:
        """Every deployment becomes healthy with all its replicas running; with `started_at`, each
        new replica reports its start time, its node and its log file as Serve does."""
        for app_name, app in self.apps.items():
            app["status"] = "RUNNING"
            for dep_name, dep in app["deployments"].items():
                dep["status"] = "HEALTHY"
                where = ({"start_time_s": started_at, "node_id": "node-1",
                          "log_file_path": f"/serve/replica_{app_name}_{dep_name}.log"} if started_at is not None else {})
                dep["replicas"] = [{"state": "RUNNING", **where} for _ in range(dep["target_num_replicas"])]

    def fail(self, deployment: str, message: str) -> None:
        for app in self.apps.values():
            if deployment in app["deployments"]:
                app["status"] = "DEPLOY_FAILED"
                app["deployments"][deployment].update(status="DEPLOY_FAILED", message=message)

    def restart(self) -> None:
        """Ray stopped and started again: Serve has no application (none is restored)."""
        self.apps.clear()

    def retrying(self, deployment: str, message: str) -> None:
        """A replica of this deployment failed to start and Serve retries: no replica runs."""
        for app in self.apps.values():
            if deployment in app["deployments"]:
                app["status"] = "DEPLOYING"
                app["deployments"][deployment].update(status="UPDATING", message=message, replicas=[])

    def scale(self, deployment: str, running: int, target: int, status: str = "HEALTHY") -> None:
        """Serve's autoscaler moved this deployment: `running` replicas run, it wants `target`."""
        for app in self.apps.values():
            if deployment in app["deployments"]:
                app["deployments"][deployment].update(status=status, target_num_replicas=target,
                                                      replicas=[{"state": "RUNNING"} for _ in range(running)])

    def drop(self, app: str) -> None:
        """Someone removed an application behind argusd's back (drift)."""
        del self.apps[app]


def _initial_replicas(deployment: dict[str, Any]) -> int:
    """What Serve starts a deployment with: num_replicas, or an autoscaled one's min_replicas."""
    scaling = deployment.get("autoscaling_config")
    return int(scaling["min_replicas"]) if scaling else deployment.get("num_replicas", 1)


def _without_user_config(app: dict[str, Any]) -> dict[str, Any]:
    app = copy.deepcopy(app)
    for deployment in app.get("deployments") or []:
        deployment.pop("user_config", None)
    return app

"""Talk to Ray Serve declaratively through the Ray dashboard's REST API, as KubeRay does.

PUT /api/serve/applications/ with the whole config; Serve updates in place what did not
change. Never `serve.run`: it restarts every replica on every call. Token auth (Ray 2.60):
`Authorization: Bearer <token>` from $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or
~/.ray/auth_token when present.
"""
from __future__ import annotations

import http.client
import json
import os
import shlex
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from daemon.errors import ClusterError
from daemon.serving.placement import AdmissionMode, Capacity, capacity_from_ray

APPLICATIONS = "/api/serve/applications/"


def auth_token(env: dict[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    if env.get("RAY_AUTH_TOKEN"):
        return env["RAY_AUTH_TOKEN"].strip()
    path = Path(env.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


# Ray's log API asks the node's agent with this timeout (its default is 30 s); the HTTP read
# waits a little longer.
LOG_READ_TIMEOUT_S = 3


def replica_log_path(node_id: str, log_file: str, lines: int) -> str:
    """The dashboard path of a replica's log's last `lines` lines. Serve's ReplicaDetails gives
    `log_file_path` as "/serve/replica_....log", relative to the node's Ray log folder despite
    its leading "/"; Ray's log agent takes a name with a leading "/" as absolute."""
    query = {"node_id": node_id, "filename": log_file.lstrip("/"), "lines": lines, "timeout": LOG_READ_TIMEOUT_S}
    return f"/api/v0/logs/file?{urllib.parse.urlencode(query)}"


class ServeClient:
    def __init__(self, dashboard_url: str, timeout: float = 15.0):
        """Every call is bounded by `timeout` seconds (connect and each read)."""
        self.base = dashboard_url.rstrip("/")
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Any = None, json_reply: bool = True,
                 timeout: float | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        token = auth_token()
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                text = response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()[:2000]
            if exc.code in (401, 403):
                raise ClusterError(f"the Ray dashboard at {self.base} refused the token ({exc.code}); "
                                   "set RAY_AUTH_TOKEN or check ~/.ray/auth_token") from None
            raise ClusterError(f"{method} {path} on {self.base} failed ({exc.code}): {detail}") from None
        except http.client.HTTPException as exc:   # a reply cut off (IncompleteRead) or malformed
            raise ClusterError(f"{method} {path} on {self.base}: the reply broke off ({exc!r})") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClusterError(f"cannot reach the Ray dashboard at {self.base} ({reason}); start Ray "
                               "(scripts/ray_up.sh) or fix serving.serve.dashboard_url") from None
        if not json_reply:
            return text
        return json.loads(text) if text.strip() else None

    def version(self) -> dict[str, Any]:
        return self._request("GET", "/api/ray/version")

    def get_applications(self) -> dict[str, Any]:
        """Serve's status: per application and per deployment, replicas with ids and pids."""
        return self._request("GET", APPLICATIONS)

    def put_config(self, config: dict[str, Any]) -> None:
        self._request("PUT", APPLICATIONS, config)

    def cluster_resources(self) -> dict[str, float]:
        """Total resources of the alive nodes (doctor's summary)."""
        totals: dict[str, float] = {}
        for node in self.nodes():
            if node.get("state") != "ALIVE":
                continue
            for name, value in (node.get("resources_total") or {}).items():
                totals[name] = totals.get(name, 0.0) + float(value)
        return totals

    def nodes(self) -> list[dict[str, Any]]:
        """Ray's state API: every node with its state, resources_total and labels."""
        data = self._request("GET", "/api/v0/nodes?detail=1&limit=10000")
        return (((data or {}).get("data") or {}).get("result") or {}).get("result") or []

    def submit_job(self, entrypoint: str, runtime_env: dict[str, Any] | None = None) -> str:
        """Ray Jobs: run `entrypoint` as a driver on the head node; its submission id."""
        reply = self._request("POST", "/api/jobs/", {"entrypoint": entrypoint, "runtime_env": runtime_env or {}})
        return reply["submission_id"]

    def submit_python_job(self, code: str) -> str:
        """Run Python `code` as a job driver on the head (`python` from the head's PATH)."""
        return self.submit_job(f"python -c {shlex.quote(code)}")

    def job(self, submission_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/jobs/{submission_id}")

    def replica_log(self, node_id: str, log_file: str, lines: int = 500) -> str:
        """The last `lines` lines of a Serve replica's log (Ray's log API on the dashboard, which
        reads the file on the replica's node). Bounded by LOG_READ_TIMEOUT_S: it is read within a
        reconcile tick."""
        return self._request("GET", replica_log_path(node_id, log_file, lines), json_reply=False,
                             timeout=LOG_READ_TIMEOUT_S + 2)

    def job_logs(self, submission_id: str) -> str:
        return (self._request("GET", f"/api/jobs/{submission_id}/logs") or {}).get("logs", "")

    def capacity(self, accelerator_type: str, mode: AdmissionMode) -> Capacity:
        """Free GPUs of the type and free CPUs per alive node, now (GPU admission). The usage
        comes from the dashboard's node summary, the one endpoint that reports it under both
        autoscalers (/api/cluster_status has it only under v1, keyed by IP); when that fails
        (Ray's handler raises without a per-node report) the Capacity says the view is missing."""
        nodes = self._request("GET", "/api/v0/nodes?detail=1&limit=10000")
        try:
            summary = self._request("GET", "/nodes?view=summary")
        except ClusterError:
            summary = None
        return capacity_from_ray(nodes, summary, accelerator_type, mode)

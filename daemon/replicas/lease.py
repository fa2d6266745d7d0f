"""The lease's Serve app, run inside Ray Serve (daemon.replicas.names.BUILD_LEASE): it holds
argusd's lease (daemon/serving/lease.py) as its user_config and serves nothing."""
from __future__ import annotations

from typing import Any

from ray import serve

from daemon.replicas.names import LEASE_DEPLOYMENT


@serve.deployment(name=LEASE_DEPLOYMENT, num_replicas=1, ray_actor_options={"num_cpus": 0})
class ArgusLease:
    """Holds argusd's lease (daemon/serving/lease.py) as its user_config; serves nothing."""

    def __init__(self) -> None:
        self.value: dict[str, Any] | None = None

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        self.value = user_config

    def __call__(self) -> dict[str, Any] | None:
        return self.value


def build_lease(args: dict[str, Any] | None = None) -> Any:
    return ArgusLease.bind()

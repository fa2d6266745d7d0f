"""Per-user GPU quotas: what a model reserves, and whether one more puts its owner over quota.

One home for the rule that the judge (core/verdict.py: lint and the pre-receive hook refuse a
commit that could never run) and argusd's admission (a spec over quota waits QUEUED, with
event QUOTA_EXCEEDED, since the config can change after the commit) both apply. Pure.

A model reserves num_replicas x gpus_per_replica GPUs (with autoscaling, min_replicas': what
it holds however idle it is; the replicas Serve adds under load are not counted); a suspended
model and an adapter (it runs on its base model's replicas) reserve none.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Union

from daemon.core.spec import ResolvedServingSpec, ServingSpec


@dataclass(frozen=True)
class GpuQuota:
    """The GPUs one user's models may reserve at once, and the config key that says so (named
    in every message, so the user knows whom to ask)."""

    gpus: int
    source: str   # "users.alice.max_gpus" or "limits.max_gpus_per_user"


# A user's GPU quota by user id (Config.gpu_quota), for the shells that judge many users.
Quotas = Callable[[str], "GpuQuota | None"]

# A spec as a user wrote it (lint, the hook) or as the platform runs it (argusd's admission).
Reserving = Union[ServingSpec, ResolvedServingSpec]


def reserved_gpus(spec: Reserving) -> int:
    """GPUs the model holds however idle it is: what its owner's quota counts."""
    if isinstance(spec, ResolvedServingSpec):
        return spec.reserved_gpus
    if spec.base_model is not None or spec.suspended:
        return 0
    replicas = spec.autoscaling.min_replicas if spec.autoscaling is not None else spec.num_replicas
    return replicas * spec.gpus_per_replica


def quota_message(user: str, quota: GpuQuota, others: int, needs: int) -> str:
    """The one sentence every surface shows for a model over its owner's quota."""
    noun = "GPU" if quota.gpus == 1 else "GPUs"
    return (f"over {user}'s GPU quota: {quota.gpus} {noun} ({quota.source}), {user}'s other models reserve "
            f"{others}, this one needs {needs}; lower num_replicas or gpus_per_replica (with autoscaling, "
            f"min_replicas: 0 reserves none while idle), suspend or delete another of {user}'s models, or ask an "
            f"admin to raise {quota.source}")


def quota_problem(user: str, spec: Reserving, others: Iterable[Reserving], quota: GpuQuota | None,
                  before: int = 0) -> str | None:
    """Why `spec` cannot have its GPUs beside `others` (the user's other models that reserve
    GPUs: admitted ones for argusd, the other files at the commit for the judge), or None.
    `before`: what this model reserves now (its running version, or its file before the
    change). Only growth is refused: a model that reserves nothing, or no more than before, is
    never over quota, whatever the others hold (a quota lowered since must not keep a user from
    shrinking a model or shipping a fix)."""
    if quota is None:
        return None
    needs = reserved_gpus(spec)
    held = sum(reserved_gpus(other) for other in others)
    if needs == 0 or needs <= before or held + needs <= quota.gpus:
        return None
    return quota_message(user, quota, held, needs)

"""LoRA adapters as specs: the rules that tie an adapter to its base model.

An adapter spec (`base_model:` set) names a model that runs in argus and a local adapter
folder (PEFT layout: adapter_config.json + weights). The base opts in with `adapters:`
(max_rank, max_loaded, users). Pure: what the adapter folder holds is read by a shell
(daemon/folders.py, read_adapter) and judged in core.folders.adapter_reading.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any, Iterable

from daemon.core.folders import ADAPTER_CONFIG, AdapterInfo, AdapterReading, AdapterRefused  # noqa: F401
from daemon.core.spec import ANY_USER


@dataclass(frozen=True)
class BaseRef:
    """A model an adapter may name: its public id, owner and suffix, and its adapter policy."""

    model_id: str
    user_id: str
    suffix: str
    model_source: str
    adapters: dict[str, Any] | None


def find_base(ref: str, adapter_user: str, models: Iterable[BaseRef]) -> BaseRef | None:
    """The model `base_model` names: a public id, else the adapter owner's own model with that
    suffix."""
    models = list(models)
    by_id = next((m for m in models if m.model_id == ref), None)
    if by_id is not None:
        return by_id
    return next((m for m in models if m.user_id == adapter_user and m.suffix == ref), None)


def _folder_name(name_or_path: str) -> str:
    return posixpath.basename(name_or_path.rstrip("/")).lower()


def base_allows(adapter_user: str, base: BaseRef) -> str | None:
    """Why the base's own spec keeps this user's adapters off it, or None (no folder needed:
    judged for running adapters too, so an owner's revocation takes effect)."""
    policy = base.adapters
    # The base has not opted in.
    if policy is None:
        return (f"base model {base.model_id} does not take adapters; its owner ({base.user_id}) adds "
                "`adapters: {max_rank: N}` to its spec")
    # Another user's base, and its owner has not allowed this user.
    users = policy.get("users") or []
    if adapter_user != base.user_id and ANY_USER not in users and adapter_user not in users:
        return (f"base model {base.model_id} belongs to {base.user_id}, who has not allowed {adapter_user}'s "
                f"adapters; they add {adapter_user} to adapters.users in its spec")
    return None


def adapter_fit(info: AdapterInfo, adapter_user: str, base: BaseRef) -> str | None:
    """Why this adapter cannot run on this base, or None: an early-return ladder."""
    # The base's spec keeps it off.
    refused = base_allows(adapter_user, base)
    if refused is not None:
        return refused
    policy = base.adapters
    # Larger than the rank the base's replicas reserve.
    if info.rank > int(policy["max_rank"]):
        return (f"the adapter's rank is {info.rank} (r in {ADAPTER_CONFIG}), over base model {base.model_id}'s "
                f"adapters.max_rank {policy['max_rank']}; train with r <= {policy['max_rank']} or raise max_rank")
    # Trained on another model (compared by folder name: training and serving paths differ).
    if info.base_name is not None and _folder_name(info.base_name) != _folder_name(base.model_source):
        return (f"the adapter was trained on {info.base_name} ({ADAPTER_CONFIG}), but base model {base.model_id} "
                f"is {base.model_source}; attach it to a model of that base")
    return None

"""LoRA adapters as specs: the rules that tie an adapter to its base model.

An adapter spec (`base_model:` set) names a model that runs in argus and a local adapter
folder (PEFT layout: adapter_config.json + weights). The base opts in with `adapters:`
(max_rank, max_loaded, users). Pure but for reading adapter_config.json, like
spec.attention_heads reads config.json.
"""
from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass
from typing import Any, Iterable

from daemon.core.spec import ANY_USER, PathRejected, path_problem, resolve_model_source

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True)
class AdapterInfo:
    """What adapter_config.json says about an adapter folder."""

    rank: int
    base_name: str | None      # base_model_name_or_path, as the trainer wrote it


@dataclass(frozen=True)
class BaseRef:
    """A model an adapter may name: its public id, owner and suffix, and its adapter policy."""

    model_id: str
    user_id: str
    suffix: str
    model_source: str
    adapters: dict[str, Any] | None


def read_adapter(path: str, user_id: str, root: str) -> AdapterInfo | str:
    """The adapter folder's facts, or why it cannot be served (the path rules run again: the
    folder may have been swapped for a symlink after the spec was accepted)."""
    if (problem := path_problem(path, user_id, root)) is not None:
        return problem
    # A file in the folder that is a symlink must not lead out of the same roots (into another
    # user's adapter, say): vLLM reads every file it finds there.
    try:
        names = sorted(os.listdir(path))
    except FileNotFoundError:
        return f"model_source {path} does not exist; put the adapter there (or fix model_source in the spec)"
    except OSError as exc:
        return f"cannot read the adapter folder {path}: {exc}"
    for name in names:
        entry = os.path.join(path, name)
        if os.path.islink(entry):
            try:
                resolve_model_source(os.path.realpath(entry), user_id, root)
            except PathRejected:
                return f"{entry} is a symlink to {os.path.realpath(entry)}, outside your roots; copy the file instead"
    config_path = os.path.join(path, ADAPTER_CONFIG)
    try:
        with open(config_path, "rb") as handle:
            data = json.loads(handle.read(ADAPTER_CONFIG_BYTES))
    except FileNotFoundError:
        return (f"{config_path} does not exist; model_source must be a LoRA adapter folder as PEFT saves it "
                "(adapter_config.json and adapter_model.safetensors)")
    except (OSError, ValueError) as exc:
        return f"cannot read {config_path}: {exc}"
    if not isinstance(data, dict) or str(data.get("peft_type", "")).upper() != "LORA":
        return f"{config_path} is not a LoRA adapter (peft_type is {data.get('peft_type') if isinstance(data, dict) else None!r})"
    rank = data.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        return f"{config_path} has no valid rank (r is {rank!r})"
    base = data.get("base_model_name_or_path")
    return AdapterInfo(rank, base if isinstance(base, str) and base.strip() else None)


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

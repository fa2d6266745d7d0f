"""What argusd and the code inside its Ray replicas (daemon/frontend) share: the names argusd
sets in every replica's environment, and the rule that says whose weights a replica may read.
Standard library only and pure: daemon/frontend imports it on every Ray node, where it needs
nothing else of argus; the roots' real paths are read by daemon/served_paths.py."""
from __future__ import annotations

import posixpath
from dataclasses import dataclass

# In every model's runtime_env (serving/llm_config.py), so in its replica and its vLLM engine:
ENGINE_MARK = "ARGUS_MODEL_KEY"        # the model key: the engine reaper kills only engines that carry it
OWNER_ENV = "ARGUS_WEIGHTS_OWNER"      # whose weights the replica serves (the spec's user)
ROOT_ENV = "ARGUS_STORAGE_ROOT"        # storage.root, which the path rules are relative to


def is_below(path: str, base: str) -> bool:
    """True when `path` is strictly inside `base` (both normalized, absolute)."""
    return path != base and path.startswith(base.rstrip("/") + "/")


@dataclass(frozen=True)
class Roots:
    """The folders one user's weights may be read from, each with its own symlinks resolved
    (<root>/hf may be a link to a big disk)."""

    hf: str      # <root>/hf: shared models
    users: str   # <root>/users: every user's own tree
    mine: str    # <root>/users/<user_id>


def lexical_roots(root: str, user_id: str) -> Roots:
    """The roots as written, for a root known to hold no symlinks."""
    return Roots(posixpath.join(root, "hf"), posixpath.join(root, "users"), posixpath.join(root, "users", user_id))


def outside_roots(real: str, user_id: str, roots: Roots) -> str | None:
    """Why weights at `real` are not `user_id`'s to serve, or None. `real` has every symlink
    resolved (for the replica: the path it actually opened, just before vLLM reads; a folder
    may be swapped for a symlink into another user's tree at any time after its spec was
    accepted). The rule: under <root>/hf/ or <root>/users/<user_id>/."""
    if is_below(real, roots.hf) or is_below(real, roots.mine):
        return None
    owner = real[len(roots.users) + 1:].split("/", 1)[0] if is_below(real, roots.users) else user_id
    if owner != user_id:
        return f"{real} is in user {owner!r}'s tree, not {user_id}'s; only {user_id}'s own files and shared models are served"
    return (f"{real} is outside {roots.hf}/ and {roots.mine}/, the folders {user_id}'s models and adapters "
            "may be read from")

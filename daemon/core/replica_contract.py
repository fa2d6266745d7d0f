"""What argusd and the code inside its Ray replicas (daemon/frontend) share: the names argusd
sets in every replica's environment, and the rule that says whose weights a replica may read.
Standard library only: daemon/frontend imports it on every Ray node, where it needs nothing
else of argus."""
from __future__ import annotations

import os
import posixpath

# In every model's runtime_env (serving/llm_config.py), so in its replica and its vLLM engine:
ENGINE_MARK = "ARGUS_MODEL_KEY"        # the model key: the engine reaper kills only engines that carry it
OWNER_ENV = "ARGUS_WEIGHTS_OWNER"      # whose weights the replica serves (the spec's user)
ROOT_ENV = "ARGUS_STORAGE_ROOT"        # storage.root, which the path rules are relative to


def is_below(path: str, base: str) -> bool:
    """True when `path` is strictly inside `base` (both normalized, absolute)."""
    return path != base and path.startswith(base.rstrip("/") + "/")


def served_path_problem(real: str, user_id: str, root: str) -> str | None:
    """Why weights at `real` are not `user_id`'s to serve, or None. `real` has every symlink
    resolved (for the replica: the path it actually opened, just before vLLM reads; a folder
    may be swapped for a symlink into another user's tree at any time after its spec was
    accepted). The rule: under <root>/hf/ or <root>/users/<user_id>/, each with its own
    symlinks resolved."""
    hf = os.path.realpath(posixpath.join(root, "hf"))
    users = os.path.realpath(posixpath.join(root, "users"))
    mine = os.path.realpath(posixpath.join(root, "users", user_id))
    if is_below(real, hf) or is_below(real, mine):
        return None
    owner = real[len(users) + 1:].split("/", 1)[0] if is_below(real, users) else user_id
    if owner != user_id:
        return f"{real} is in user {owner!r}'s tree, not {user_id}'s; only {user_id}'s own files and shared models are served"
    return f"{real} is outside {hf}/ and {mine}/, the folders {user_id}'s models and adapters may be read from"

"""What argusd and the code inside its Ray replicas (daemon/replicas) share: the names argusd
sets in every replica's environment, the rule that says whose weights a replica may read, and
the line in which a replica reports how its start went.
Standard library only and pure: daemon/replicas imports it on every Ray node, where it needs
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


# A model server's replica measures its own start (daemon/replicas/llm_server.py) and writes it
# to its Serve log as one line; argusd reads it back from that log (Ray's log API) for the
# replica that made a generation RUNNING, and `argusctl logs` prints it with the deploy's phases.
# Durations only, each measured on the replica's own clock: nodes' clocks may differ.
REPLICA_START_MARK = "argus replica start: "


@dataclass(frozen=True)
class ReplicaStart:
    """How a model server's replica spent its start: `imports_s` from its process's creation to
    argus's server being constructed (the Ray worker's start, Serve's replica, the imports of
    Ray Serve LLM, vLLM and torch); `engine_s` from Ray Serve LLM's start of vLLM's engine to
    the engine started (its engine-core and worker processes, the weights, the KV cache). What
    argus's server checks in between (the model folder) is in neither."""

    imports_s: float
    engine_s: float

    def to_payload(self) -> dict[str, float]:
        return {"replica_imports_s": self.imports_s, "replica_engine_s": self.engine_s}


def replica_start_line(process_created: float, constructed: float, engine_begun: float,
                       engine_started: float) -> str:
    """The log line a replica writes once its engine started (times: seconds since the epoch,
    on the replica's clock)."""
    import json   # here, not at the top: `argusctl lint` imports this module and parses no JSON

    return REPLICA_START_MARK + json.dumps({"imports_s": round(constructed - process_created, 1),
                                            "engine_s": round(engine_started - engine_begun, 1)})


def read_replica_start(log_text: str) -> ReplicaStart | None:
    """The last start a replica's log reports, or None (no such line, or one not as written by
    replica_start_line: a line of another version is ignored, not guessed at)."""
    import json   # see replica_start_line

    for line in reversed(log_text.splitlines()):
        at = line.find(REPLICA_START_MARK)
        if at < 0:
            continue
        try:
            # raw_decode: whatever Serve's log format puts after the message is not read.
            fields, _ = json.JSONDecoder().raw_decode(line[at + len(REPLICA_START_MARK):])
            start = ReplicaStart(float(fields["imports_s"]), float(fields["engine_s"]))
        except (ValueError, KeyError, TypeError):
            return None
        return start if start.imports_s >= 0 and start.engine_s >= 0 else None
    return None

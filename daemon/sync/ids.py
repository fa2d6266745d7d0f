"""The id ledger: the public ids and model keys clients and Serve use, kept beside the history.

A model's key and public id derive from the commit that created it, so a store rebuilt from
an unchanged history gets them back. A rewritten history (a force-push, a rebase) has other
commits: a rebuild would give the same models new ids and every client would break. So
argusd keeps every live model's identity in the GitOps repo itself, under a ref it owns
(`refs/argus/ids`, one JSON file, a commit per change), and a store being rebuilt takes its
ids from there when it reaches the branch's head. Pure functions here; git and SQLite are
read and written by the syncer.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable

from daemon.core.spec import SUFFIX_RE, USER_ID_RE, make_model_id_prefix

LEDGER_REF = "refs/argus/ids"   # the hook refuses pushes to any ref but the tracked branch
LEDGER_FILE = "ids.json"
LEDGER_VERSION = 1
MODEL_KEY_RE = re.compile(r"m-[0-9a-f]{16}")


@dataclass(frozen=True)
class Identity:
    """What clients (the public id) and Serve (the key names the app) know a model by."""

    model_key: str
    model_id: str
    created_at: str   # ISO, UTC: the public id's minute, and every later resolve of the spec


Owner = tuple[str, str]   # (user_id, model_id suffix): one live model each


@dataclass(frozen=True)
class Ledger:
    entries: dict[Owner, Identity] = field(default_factory=dict)
    problems: tuple[str, ...] = ()   # entries left out, and why (a hand-edited or damaged file)


@dataclass(frozen=True)
class LiveModel:
    """A model of the store that is not DELETED, as the ledger sees it."""

    user_id: str
    suffix: str
    identity: Identity


@dataclass(frozen=True)
class Adoption:
    """Give the model now known as `current` the identity it had before the rebuild."""

    current: str      # its model key in the rebuilt store
    owner: Owner
    kept: Identity
    was: str          # the public id the rebuilt history gave it


def snapshot(models: Iterable[LiveModel]) -> dict[Owner, Identity]:
    return {(m.user_id, m.suffix): m.identity for m in models}


def render(entries: dict[Owner, Identity]) -> bytes:
    """Byte-stable (sorted): an unchanged set of ids writes nothing."""
    rows = [{"user_id": user, "model_id_suffix": suffix, "model_key": i.model_key, "model_id": i.model_id,
             "created_at": i.created_at} for (user, suffix), i in sorted(entries.items())]
    return (json.dumps({"version": LEDGER_VERSION, "models": rows}, indent=1, sort_keys=True) + "\n").encode()


def parse(data: bytes | None) -> Ledger:
    """The ledger's entries; one that is not what argusd writes is left out with a reason, and a
    file that is not a ledger at all is an empty ledger with one problem: never an exception."""
    if data is None:
        return Ledger()
    try:
        doc = json.loads(data)
        rows = doc["models"] if isinstance(doc, dict) and doc.get("version") == LEDGER_VERSION else None
    except (ValueError, KeyError, TypeError):
        rows = None
    if not isinstance(rows, list):
        return Ledger(problems=(f"{LEDGER_FILE} is not an argus id ledger (version {LEDGER_VERSION})",))
    entries: dict[Owner, Identity] = {}
    problems = []
    row_problems = [_row_problem(row) for row in rows]
    # A key names one model: a key on two entries cannot say which, so neither gets it.
    keys = Counter(row["model_key"] for row, problem in zip(rows, row_problems) if problem is None)
    for i, (row, problem) in enumerate(zip(rows, row_problems)):
        if problem is None and keys[row["model_key"]] > 1:
            problem = f"model_key {row['model_key']!r} is on {keys[row['model_key']]} entries"
        if problem is None and (row["user_id"], row["model_id_suffix"]) in entries:
            problem = "a second entry for the same model"
        if problem is not None:
            problems.append(f"entry {i}: {problem}")
            continue
        entries[(row["user_id"], row["model_id_suffix"])] = Identity(row["model_key"], row["model_id"], row["created_at"])
    return Ledger(entries, tuple(problems))


def _row_problem(row: object) -> str | None:
    if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in (
            "user_id", "model_id_suffix", "model_key", "model_id", "created_at")):
        return "not a mapping of five strings"
    user, suffix = row["user_id"], row["model_id_suffix"]
    if not USER_ID_RE.fullmatch(user) or not SUFFIX_RE.fullmatch(suffix):
        return "not a user id and model_id"
    if not MODEL_KEY_RE.fullmatch(row["model_key"]):
        return f"model_key {row['model_key']!r} is not one argus makes"
    try:
        created = datetime.fromisoformat(row["created_at"])
        prefix = make_model_id_prefix(user, created)
    except ValueError:
        return f"created_at {row['created_at']!r} is not a UTC time"
    # The id must be the one its owner and creation time give: a ledger cannot hand a model
    # another user's prefix or a suffix it does not have.
    if row["model_id"] != f"{prefix}-{suffix}":
        return f"model_id {row['model_id']!r} is not {prefix}-{suffix}"
    return None


def adoptions(live: list[LiveModel], ledger: dict[Owner, Identity], key_in_use) -> list[Adoption]:
    """Which models of a rebuilt store take back the identity the ledger holds for them.

    `key_in_use(key)`: whether the store already has a model (any state, DELETED included) with
    that key: a key names one model for good, so it is never taken from another row."""
    out = []
    taken: set[str] = set()
    for model in sorted(live, key=lambda m: (m.user_id, m.suffix)):
        kept = ledger.get((model.user_id, model.suffix))
        if kept is None or kept.model_key == model.identity.model_key or kept.model_key in taken:
            continue
        if key_in_use(kept.model_key):
            continue
        taken.add(kept.model_key)
        out.append(Adoption(model.identity.model_key, (model.user_id, model.suffix), kept, model.identity.model_id))
    return out

"""Decide what one commit changes for one user: a pure function of its inputs.

plan_user(user, files at the commit, the user's models in the store, known rejections)
-> the changes to record. The shell (sync.py) reads git and SQLite and writes the result.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Union

from daemon.core.layout import duplicate_model_id
from daemon.errors import Problem
from daemon.core.spec import ParsedSpec, ResolvedServingSpec, SpecPolicy, resolve_spec
from daemon.core.states import ModelState
from daemon.store import ModelRow, Rejection, RejectionKind, parse_iso


@dataclass(frozen=True)
class SpecFileState:
    """One spec file of a user at a commit, already parsed (or not)."""

    path: str
    blob: str
    raw: str
    parsed: ParsedSpec | None
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class CreateModel:
    user_id: str
    spec_path: str
    spec_yaml: str
    resolved: ResolvedServingSpec


@dataclass(frozen=True)
class UpdateModel:
    model_key: str
    spec_path: str
    spec_yaml: str
    resolved: ResolvedServingSpec
    kind: str                       # updated | scaled | revived
    changes: dict = field(default_factory=dict)   # field -> [old, new]


@dataclass(frozen=True)
class MoveModel:
    """The same spec now lives in another file: bookkeeping only, nothing to redeploy."""

    model_key: str
    spec_path: str


@dataclass(frozen=True)
class DeleteModel:
    model_key: str
    spec_path: str


@dataclass(frozen=True)
class RejectSpec:
    user_id: str
    spec_path: str
    blob: str
    problems: tuple[Problem, ...]
    model_key: str | None           # the model that keeps its last good spec, if any
    kind: str = RejectionKind.SPEC  # OWNERSHIP: refused for who changed it; stays until the owner does


@dataclass(frozen=True)
class ClearRejection:
    spec_path: str
    model_key: str | None


Change = Union[CreateModel, UpdateModel, MoveModel, DeleteModel, RejectSpec, ClearRejection]


def _diff(old: dict, new: dict) -> dict:
    keys = sorted(set(old) | set(new))
    return {k: [old.get(k), new.get(k)] for k in keys if old.get(k) != new.get(k)}


def plan_user(user_id: str, files: list[SpecFileState], models: list[ModelRow],
              rejections: dict[str, tuple[str, tuple[Problem, ...]]], committed_at: datetime,
              policy: SpecPolicy, extra_problems: dict[str, tuple[Problem, ...]] | None = None) -> list[Change]:
    """Changes that make the store match the user's spec files at one commit.

    `models`: the user's models that are not DELETED. `rejections`: path -> (blob, problems)
    already on record, so a rejection that persists is recorded once. `extra_problems`:
    path -> problems found outside the spec (e.g. ownership), which reject the file too.
    """
    extra_problems = extra_problems or {}
    changes: list[Change] = []
    by_path = {m.spec_path: m for m in models}
    by_suffix = {m.model_id_suffix: m for m in models}
    invalid: dict[str, SpecFileState] = {}
    problems_of: dict[str, tuple[Problem, ...]] = {}
    claims: dict[str, list[SpecFileState]] = {}
    for f in sorted(files, key=lambda f: f.path):
        extra = extra_problems.get(f.path, ())
        if f.parsed is None or extra:
            invalid[f.path] = f
            problems_of[f.path] = tuple(f.problems) + tuple(extra)
        else:
            claims.setdefault(f.parsed.spec.model_id, []).append(f)

    desired: dict[str, SpecFileState] = {}
    for suffix, claimants in claims.items():
        if len(claimants) == 1:
            desired[suffix] = claimants[0]
            continue
        owner = by_suffix.get(suffix)
        keeper = next((c for c in claimants if owner is not None and c.path == owner.spec_path), None)
        for c in claimants:
            if c is keeper:
                continue
            others = [o.path for o in claimants if o is not c]
            line, col = _model_id_position(c)
            invalid[c.path] = c
            problems_of[c.path] = (Problem(c.path, line, col, duplicate_model_id(suffix, others)),)
        if keeper is not None:
            desired[suffix] = keeper

    for suffix, f in sorted(desired.items()):
        model = by_suffix.get(suffix)
        if model is None:
            resolved = resolve_spec(f.parsed.spec, user_id, committed_at, policy, f.parsed.model_source)
            changes.append(CreateModel(user_id, f.path, f.raw, resolved))
            continue
        resolved = resolve_spec(f.parsed.spec, user_id, parse_iso(model.created_at), policy, f.parsed.model_source)
        delta = _diff(model.resolved, resolved.to_dict())
        if model.state == ModelState.DELETING:
            changes.append(UpdateModel(model.model_key, f.path, f.raw, resolved, "revived", delta))
        elif delta:
            kind = "scaled" if set(delta) == {"num_replicas"} else "updated"
            changes.append(UpdateModel(model.model_key, f.path, f.raw, resolved, kind, delta))
        elif model.spec_path != f.path:
            changes.append(MoveModel(model.model_key, f.path))

    for model in sorted(models, key=lambda m: m.model_key):
        if model.model_id_suffix in desired or model.state == ModelState.DELETING:
            continue
        if model.spec_path in invalid:
            continue  # its file is broken: keep the last good spec
        changes.append(DeleteModel(model.model_key, model.spec_path))

    for path, f in sorted(invalid.items()):
        problems = problems_of[path]
        if rejections.get(path) != (f.blob, problems):
            owner = by_path.get(path)
            kind = RejectionKind.OWNERSHIP if path in extra_problems else RejectionKind.SPEC
            changes.append(RejectSpec(user_id, path, f.blob, problems, owner.model_key if owner else None, kind))
    present = {f.path for f in files}
    for path in sorted(rejections):
        if path not in invalid:
            owner = by_path.get(path)
            changes.append(ClearRejection(path, owner.model_key if owner and path in present else None))
    return changes


DELETED_BLOB = "(deleted)"  # the blob of a rejection that keeps a model whose file was deleted


def ownership_holds(files: list[tuple[str, str]], refusals: dict[str, str], models: list[ModelRow],
                    on_record: dict[str, Rejection]) -> tuple[dict[str, tuple[Problem, ...]], list[SpecFileState]]:
    """Which of a user's files stay refused for WHO changed them, and which deleted specs keep
    their model. `files`: (path, blob) at the commit; `refusals`: path -> message of a change
    refused now (core.ownership); `on_record`: the user's rejections.

    Returns the refused paths with their problems (plan_user's `extra_problems`) and a stand-in
    file for each spec whose deletion is refused: its model stays, as if the file were still
    there but broken, until the file comes back; the owner then deletes it themselves."""
    refused: dict[str, tuple[Problem, ...]] = {}
    for path, blob in files:
        # Refused now, for this change.
        if path in refusals:
            refused[path] = (Problem(path, 1, 1, refusals[path]),)
        # Refused before, and the file is still exactly that change.
        elif _still_refused(on_record.get(path), blob):
            refused[path] = tuple(on_record[path].problems)
    present = {path for path, _ in files}
    kept = []
    for model in models:
        path = model.spec_path
        # Its file is there, or it is being deleted anyway: nothing to hold.
        if path in present or model.state == ModelState.DELETING:
            continue
        if path in refusals:
            refused[path] = (Problem(path, 1, 1, refusals[path]),)
        elif _still_refused(on_record.get(path), DELETED_BLOB):
            refused[path] = tuple(on_record[path].problems)
        else:
            continue  # deleted by someone allowed to: plan_user deletes the model
        kept.append(SpecFileState(path, DELETED_BLOB, "", None))
    return refused, kept


def _still_refused(rejection: Rejection | None, blob: str) -> bool:
    return rejection is not None and rejection.kind == RejectionKind.OWNERSHIP and rejection.blob_sha == blob


def _model_id_position(f: SpecFileState) -> tuple[int, int]:
    pos = f.parsed.doc.position(("model_id",)) if f.parsed else None
    return (pos.line, pos.col) if pos else (1, 1)

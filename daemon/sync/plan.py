"""Decide what one commit changes for one user: a pure function of its inputs.

plan_user(user, the judge's verdict on each file at the commit (core/verdict.py), the user's
models in the store, known rejections) -> the changes to record. The shell (syncer.py) reads
git and SQLite, asks the judge, and writes the result.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Union

from daemon.core.records import ModelRow, Rejection, RejectionKind, parse_iso
from daemon.core.spec import ResolvedServingSpec, SpecPolicy, resolve_spec, switches_autoscaling
from daemon.core.states import ModelState, StrEnum
from daemon.core.verdict import DELETED_BLOB, FileVerdict
from daemon.errors import Problem


class UpdateKind(StrEnum):
    UPDATED = "updated"
    SCALED = "scaled"     # only num_replicas (or the autoscaling range) changed
    REVIVED = "revived"   # its file came back while it was being deleted


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
    kind: UpdateKind
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
    kind: RejectionKind = RejectionKind.SPEC  # OWNERSHIP: refused for who changed it; stays until the owner does


@dataclass(frozen=True)
class ClearRejection:
    spec_path: str
    model_key: str | None


Change = Union[CreateModel, UpdateModel, MoveModel, DeleteModel, RejectSpec, ClearRejection]


def _diff(old: dict, new: dict) -> dict:
    keys = sorted(set(old) | set(new))
    return {k: [old.get(k), new.get(k)] for k in keys if old.get(k) != new.get(k)}


def _scaled_only(delta: dict) -> bool:
    """Only the replica count or the autoscaling range changed: Serve changes those in place (no
    new replicas). A switch between a fixed count and autoscaling is not one of them (Serve
    rebuilds the app: serving/rollout.py same_engine)."""
    switched = "autoscaling" in delta and switches_autoscaling(*delta["autoscaling"])
    return set(delta) <= {"num_replicas", "autoscaling"} and not switched


def plan_user(user_id: str, verdicts: list[FileVerdict], models: list[ModelRow],
              rejections: dict[str, tuple[str, tuple[Problem, ...]]], committed_at: datetime,
              policy: SpecPolicy) -> list[Change]:
    """Changes that make the store match the judge's verdict on the user's files at one commit.

    `models`: the user's models that are not DELETED. `rejections`: path -> (blob, problems)
    already on record, so a rejection that persists is recorded once. The judge gives at most
    one applied file per model_id.
    """
    changes: list[Change] = []
    by_path = {m.spec_path: m for m in models}
    by_suffix = {m.model_id_suffix: m for m in models}
    desired = {v.spec.spec.model_id: v for v in sorted(verdicts, key=lambda v: v.path) if v.spec is not None}
    invalid = {v.path: v for v in verdicts if v.spec is None}

    for suffix, f in sorted(desired.items()):
        model = by_suffix.get(suffix)
        if model is None:
            resolved = resolve_spec(f.spec.spec, user_id, committed_at, policy, f.spec.model_source)
            changes.append(CreateModel(user_id, f.path, f.text, resolved))
            continue
        resolved = resolve_spec(f.spec.spec, user_id, parse_iso(model.created_at), policy, f.spec.model_source)
        delta = _diff(model.resolved, resolved.to_dict())
        if model.state == ModelState.DELETING:
            changes.append(UpdateModel(model.model_key, f.path, f.text, resolved, UpdateKind.REVIVED, delta))
        elif delta:
            kind = UpdateKind.SCALED if _scaled_only(delta) else UpdateKind.UPDATED
            changes.append(UpdateModel(model.model_key, f.path, f.text, resolved, kind, delta))
        elif model.spec_path != f.path:
            changes.append(MoveModel(model.model_key, f.path))

    for model in sorted(models, key=lambda m: m.model_key):
        if model.model_id_suffix in desired or model.state == ModelState.DELETING:
            continue
        if model.spec_path in invalid:
            continue  # its file is broken: keep the last good spec
        changes.append(DeleteModel(model.model_key, model.spec_path))

    for path, f in sorted(invalid.items()):
        if rejections.get(path) != (f.blob, f.problems):
            owner = by_path.get(path)
            changes.append(RejectSpec(user_id, path, f.blob, f.problems, owner.model_key if owner else None,
                                      f.kind or RejectionKind.SPEC))
    present = {v.path for v in verdicts}
    for path in sorted(rejections):
        if path not in invalid:
            owner = by_path.get(path)
            changes.append(ClearRejection(path, owner.model_key if owner and path in present else None))
    return changes


def ownership_holds(files: list[tuple[str, str]], refusals: dict[str, str], models: list[ModelRow],
                    on_record: dict[str, Rejection]) -> dict[str, tuple[Problem, ...]]:
    """Which of a user's files stay refused for WHO changed them, deleted specs of a model on
    record included. `files`: (path, blob) at the commit; `refusals`: path -> message of a change
    refused now (core.ownership); `on_record`: the user's rejections.

    Returns the refused paths with their problems: the judge's UserFacts.refused. The judge
    refuses a deletion among them too (core/verdict.py, rule 2): its model stays, as if the file
    were still there but broken, until the file comes back; the owner then deletes it themselves."""
    refused: dict[str, tuple[Problem, ...]] = {}
    for path, blob in files:
        # Refused now, for this change.
        if path in refusals:
            refused[path] = (Problem(path, 1, 1, refusals[path]),)
        # Refused before, and the file is still exactly that change.
        elif _still_refused(on_record.get(path), blob):
            refused[path] = tuple(on_record[path].problems)
    present = {path for path, _ in files}
    for model in models:
        path = model.spec_path
        # Its file is there, or it is being deleted anyway: nothing to hold.
        if path in present or model.state == ModelState.DELETING:
            continue
        if path in refusals:
            refused[path] = (Problem(path, 1, 1, refusals[path]),)
        elif _still_refused(on_record.get(path), DELETED_BLOB):
            refused[path] = tuple(on_record[path].problems)
        # Otherwise deleted by someone allowed to: plan_user deletes the model.
    return refused


def _still_refused(rejection: Rejection | None, blob: str) -> bool:
    return rejection is not None and rejection.kind == RejectionKind.OWNERSHIP and rejection.blob_sha == blob

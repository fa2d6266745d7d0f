"""The one verdict on a user's spec files: which are applied and which are refused, why, where
(`path:line:col`) and how to fix it. `argusctl lint`, the pre-receive hook, argusd's sync and
the API's writes all ask this judge; each shell reads the facts first (the files, who may
change them, what is on record, the folders the specs name: daemon/verdicts.py) and then shows,
refuses or records what the judge says. Pure.

The rules, in the order a file meets them:
1. whose files these are: a user id argus takes, and (with a users: section) a known user;
2. who changed it: a change refused for its author (core.ownership) is refused as a whole; a
   refused change the tree no longer shows (a deletion; in the hook, a file argus does not
   read) gets a refused verdict of its own, so a model whose file was deleted by someone who may
   not stays, as if the file were still there but broken, until the file comes back;
3. what it is: a regular file git has the content of;
4. the spec itself: YAML, fields, limits, the path rules as written (core.spec);
5. its folder, where it exists: through its symlinks still inside its owner's roots, and an
   engine the model can take (max_model_len within its config.json's limit, GPUs its
   attention heads split across: core.folders);
6. one model_id, one file: when two files of a user name the same model_id, the file the model
   is recorded from keeps it (the model keeps serving) and the newcomer is refused, naming that
   file; when none of them is on record, each is refused, naming the others.
7. the user's GPU quota, where the shell knows it (lint, the hook; never argusd's sync, which
   records the spec and lets admission hold it QUEUED, since the config can change): when the
   files that would apply reserve more GPUs than the quota, each file that reserves more than
   it did before this change is refused (core.quota). A change that reserves no more (an edit
   of engine_kwargs, a scale-down, a suspend) is never refused for a quota lowered since.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from daemon.core import layout
from daemon.core.folders import (FolderFacts, attention_heads, context_problem, json_object,
                                 tensor_parallel_problem)
from daemon.core.quota import GpuQuota, quota_problem, reserved_gpus
from daemon.core.states import RejectionKind
from daemon.core.spec import ParsedSpec, SpecPolicy, SpecReading, path_problem, read_spec, validate_user_id
from daemon.errors import Problem, ProblemKind


# The blob of a verdict on a refused change the tree does not show (rule 2): what the store
# keeps as a refused deletion's rejection, until the owner changes the path.
DELETED_BLOB = "(deleted)"


@dataclass(frozen=True)
class TreeEntry:
    """One entry of models.d/<user>/ as git (or, for lint, the disk) holds it."""

    path: str
    blob: str            # git's blob id of the content
    mode: str            # git's mode: a regular file is one of layout.FILE_MODES
    data: bytes | None   # the content; None: git has none (a missing object)


@dataclass(frozen=True)
class UserFacts:
    """What the judge needs of one user at one commit (or one working tree)."""

    user_id: str
    entries: tuple[TreeEntry, ...]
    known: bool = True                                   # the config's users: names them (or is no ownership map)
    refused: Mapping[str, tuple[Problem, ...]] = field(default_factory=dict)  # path -> why its change is refused
    recorded: Mapping[str, str] = field(default_factory=dict)   # model_id -> the file the model is recorded from
    quota: GpuQuota | None = None                        # rule 7 (None: not checked here)


def known_user(user_id: str, owners: Mapping[str, object]) -> bool:
    """Whether the config's users: section lets `user_id` have models (no users: lets everyone)."""
    return not owners or user_id in owners


@dataclass(frozen=True)
class FileVerdict:
    """The judge's word on one file: applied (`spec` set) or refused (`problems`, `kind`)."""

    path: str
    blob: str
    text: str                                  # the file as text (what the store keeps of an applied spec)
    spec: ParsedSpec | None
    problems: tuple[Problem, ...] = ()
    kind: RejectionKind | None = None          # why it is refused; None when applied

    @property
    def applied(self) -> bool:
        return self.spec is not None


@dataclass(frozen=True)
class Reading:
    """A file read on its own (rules 1-4), before its folder is looked at."""

    entry: TreeEntry
    spec: SpecReading | None                   # None: refused before its content was read
    problems: tuple[Problem, ...] = ()
    kind: RejectionKind = RejectionKind.SPEC
    crash: Exception | None = None             # the reader itself broke on this file (for argusd's log)


def read_user(user: UserFacts, policy: SpecPolicy) -> list[Reading]:
    """Rules 1-4 for each of the user's entries, in path order."""
    try:
        validate_user_id(user.user_id)
        user_problem = None if user.known else layout.unknown_user(user.user_id)
    except ValueError as exc:
        user_problem = str(exc)
    out = []
    for entry in sorted(user.entries, key=lambda e: e.path):
        at = entry.path
        if user_problem is not None:
            out.append(Reading(entry, None, (Problem(at, 1, 1, user_problem),)))
        elif at in user.refused:
            out.append(Reading(entry, None, tuple(user.refused[at]), RejectionKind.OWNERSHIP))
        elif (entry_problem := layout.entry_problem(entry.mode)) is not None:
            out.append(Reading(entry, None, (Problem(at, 1, 1, entry_problem),)))
        elif entry.data is None:
            out.append(Reading(entry, None, (Problem(at, 1, 1, f"git has no content for this file (object "
                                                             f"{entry.blob[:12]} is missing); commit the file again"),)))
        else:
            try:
                reading = read_spec(at, entry.data, user.user_id, policy)
            except Exception as exc:  # noqa: BLE001 - a hostile file gets a refusal, never a traceback
                out.append(Reading(entry, None, (Problem(at, 1, 1, layout.unreadable(exc)),), crash=exc))
                continue
            out.append(Reading(entry, reading, reading.problems))
    return out


def folders_to_read(readings: Sequence[Reading]) -> list[str]:
    """The folders whose facts rule 5 needs: those of specs that passed rules 1-4."""
    return sorted({r.spec.parsed.model_source for r in readings if r.spec is not None and r.spec.parsed is not None})


def claims(readings: Sequence[Reading]) -> dict[str, list[str]]:
    """model_id -> the files that name it (a broken file still names its model_id)."""
    out: dict[str, list[str]] = {}
    for r in readings:
        if r.spec is not None and r.spec.model_id is not None:
            out.setdefault(r.spec.model_id, []).append(r.entry.path)
    return out


def contested(readings: Sequence[Reading], recorded: Mapping[str, str]) -> dict[str, list[str]]:
    """model_ids named by two files or more, none of them the file on record: a shell that can
    tell which one held it before (the previous tree, the clone's HEAD) says so with
    `recorded_before`."""
    return {mid: paths for mid, paths in claims(readings).items()
            if len(paths) > 1 and recorded.get(mid) not in paths}


def recorded_before(before: Mapping[str, str | None], disputes: Mapping[str, list[str]]) -> dict[str, str]:
    """For each disputed model_id, the one file that named it before (`before`: path -> the
    model_id that file named then, None when it did not exist or named none)."""
    out = {}
    for mid, paths in disputes.items():
        holders = [p for p in paths if before.get(p) == mid]
        if len(holders) == 1:
            out[mid] = holders[0]
    return out


def _at(parsed: ParsedSpec, loc: tuple, path: str, message: str, kind: ProblemKind) -> Problem:
    pos = parsed.doc.position(loc)
    return Problem(path, pos.line, pos.col, message, kind)


def _folder_problems(path: str, parsed: ParsedSpec, facts: FolderFacts | None, user_id: str,
                     policy: SpecPolicy) -> list[Problem]:
    """Rule 5: only where the folder exists to look at (a missing folder is not an error yet:
    the model may be copied there after the spec; argusd says so when it deploys)."""
    if facts is None:
        return []
    escaped = path_problem(facts, user_id, policy.root)
    if escaped is not None:
        return [_at(parsed, ("model_source",), path, escaped, ProblemKind.FORBIDDEN)]
    if not facts.is_dir or parsed.spec.base_model is not None:
        return []
    config = json_object(facts.config_json)
    found = []
    unsplittable = tensor_parallel_problem(attention_heads(config), parsed.spec.gpus_per_replica)
    if unsplittable is not None:
        found.append(_at(parsed, ("gpus_per_replica",), path, unsplittable, ProblemKind.INVALID))
    too_long = context_problem(parsed.spec.engine_kwargs, config)
    if too_long is not None:
        found.append(_at(parsed, ("engine_kwargs", "max_model_len"), path, f"engine_kwargs.{too_long}",
                         ProblemKind.INVALID))
    return found


def _model_id_position(reading: SpecReading) -> tuple[int, int]:
    pos = reading.doc.position(("model_id",)) if reading.doc is not None else None
    return (pos.line, pos.col) if pos else (1, 1)


def duplicate_message(model_id: str, keeper: str | None, others: list[str]) -> str:
    if keeper is not None:
        return (f"model_id {model_id!r} is already served from {keeper}; this file cannot take it over: give it "
                f"its own model_id, or change {keeper} instead")
    return layout.duplicate_model_id(model_id, others)


def judge(user: UserFacts, readings: Sequence[Reading], folders: Mapping[str, FolderFacts],
          policy: SpecPolicy) -> list[FileVerdict]:
    """Rules 5 and 6 on top of `read_user`'s readings: the verdict on each file, in path order,
    then one on each refused change the tree no longer shows (rule 2), in path order."""
    problems = {r.entry.path: list(r.problems) for r in readings}
    for r in readings:
        if r.spec is not None and r.spec.parsed is not None:
            parsed = r.spec.parsed
            problems[r.entry.path] += _folder_problems(r.entry.path, parsed, folders.get(parsed.model_source),
                                                       user.user_id, policy)
    by_path = {r.entry.path: r for r in readings}
    for model_id, paths in claims(readings).items():
        if len(paths) < 2:
            continue
        keeper = user.recorded.get(model_id)
        keeper = keeper if keeper in paths else None
        for path in paths:
            if path == keeper:
                continue
            line, col = _model_id_position(by_path[path].spec)
            others = [p for p in sorted(paths) if p != path]
            problems[path].append(Problem(path, line, col, duplicate_message(model_id, keeper, others)))
    verdicts = []
    for r in readings:
        found = tuple(sorted(problems[r.entry.path]))
        text = r.entry.data.decode("utf-8", "replace") if r.entry.data is not None else ""
        if found:
            verdicts.append(FileVerdict(r.entry.path, r.entry.blob, text, None, found, r.kind))
        else:
            verdicts.append(FileVerdict(r.entry.path, r.entry.blob, text, r.spec.parsed))
    # Rule 2 for a refused change the tree no longer shows: refused all the same.
    verdicts += [FileVerdict(path, DELETED_BLOB, "", None, tuple(found), RejectionKind.OWNERSHIP)
                 for path, found in sorted(user.refused.items()) if path not in problems]
    return verdicts


def reserved_total(verdicts: Sequence[FileVerdict]) -> int:
    """GPUs the files that would apply reserve together (rule 7)."""
    return sum(reserved_gpus(v.spec.spec) for v in verdicts if v.spec is not None)


def over_quota(user: UserFacts, verdicts: Sequence[FileVerdict]) -> bool:
    """Whether rule 7 has anything to refuse (the shell then reads what the files reserved before)."""
    return user.quota is not None and reserved_total(verdicts) > user.quota.gpus


def _quota_position(parsed: ParsedSpec) -> tuple:
    """Where a quota problem points: the line that sets the replicas."""
    if parsed.spec.autoscaling is not None:
        return ("autoscaling", "min_replicas")
    for key in ("num_replicas", "gpus_per_replica"):
        if key in parsed.doc.value:
            return (key,)
    return ("model_id",)


def judge_quota(user: UserFacts, verdicts: Sequence[FileVerdict],
                reserved_before: Mapping[str, int]) -> list[FileVerdict]:
    """Rule 7 on top of `judge`'s verdicts. `reserved_before`: path -> the GPUs that file
    reserved before this change (absent: it did not exist, or reserved none)."""
    if not over_quota(user, verdicts):
        return list(verdicts)
    applied = [v for v in verdicts if v.spec is not None]
    out = []
    for verdict in verdicts:
        parsed = verdict.spec
        if parsed is None:
            out.append(verdict)
            continue
        others = [v.spec.spec for v in applied if v is not verdict]
        message = quota_problem(user.user_id, parsed.spec, others, user.quota,
                                before=reserved_before.get(verdict.path, 0))
        if message is None:
            out.append(verdict)
            continue
        problem = _at(parsed, _quota_position(parsed), verdict.path, message, ProblemKind.INVALID)
        out.append(FileVerdict(verdict.path, verdict.blob, verdict.text, None, (problem,), RejectionKind.SPEC))
    return out

"""Asking the judge (core/verdict.py): the one step lint, the pre-receive hook, argusd's sync and
the API's writes share. The caller brings what it read of the tree; this reads the folders the
specs name (daemon/folders.py) and, when two files claim one model_id and nothing says which
holds it, what those files named before."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from daemon.core.layout import FILE_MODES
from daemon.core.spec import ParsedSpec, SpecPolicy, read_spec
from daemon.core.quota import GpuQuota, reserved_gpus
from daemon.core.verdict import (FileVerdict, TreeEntry, UserFacts, contested, folders_to_read, judge, judge_quota,
                                 over_quota, read_user, recorded_before)
from daemon.errors import SpecError
from daemon.folders import read_folder

if TYPE_CHECKING:  # a type only: lint and the hook have no log, and logging costs them 10 ms to import
    import logging

# paths -> their content before this change (absent paths left out): the previous step of the
# branch for the hook, the clone's HEAD for lint.
Before = Callable[[Sequence[str]], Mapping[str, bytes]]


def judge_files(user: UserFacts, policy: SpecPolicy, before: Before | None = None,
                log: logging.Logger | None = None) -> list[FileVerdict]:
    """The verdict on each of `user`'s entries, with the folder facts read here. `log`: where a
    file that broke the reader itself is logged with its traceback (argusd's log; the hook
    and lint only show the refusal)."""
    readings = read_user(user, policy)
    for reading in readings:
        if reading.crash is not None and log is not None:
            log.error("reading %s failed", reading.entry.path, exc_info=reading.crash)
    disputes = contested(readings, user.recorded)
    if disputes and before is not None:
        old = before(sorted({p for paths in disputes.values() for p in paths}))
        named = {path: _named_before(path, data, user.user_id, policy, log) for path, data in old.items()}
        user = replace(user, recorded={**user.recorded, **recorded_before(named, disputes)})
    folders = {path: read_folder(path, user.user_id, policy.root) for path in folders_to_read(readings)}
    verdicts = judge(user, readings, folders, policy)
    if not over_quota(user, verdicts):
        return verdicts
    # Only now (rarely) read what the files reserved before this change: growth is refused.
    old = before([v.path for v in verdicts if v.spec is not None]) if before is not None else {}
    return judge_quota(user, verdicts, {path: _reserved_before(path, data, user.user_id, policy, log)
                                        for path, data in old.items()})


def _reserved_before(path: str, data: bytes, user_id: str, policy: SpecPolicy, log: logging.Logger | None) -> int:
    """The GPUs an earlier version of a file reserved; 0 when it was not a valid spec then."""
    try:
        parsed = read_spec(path, data, user_id, policy).parsed
    except Exception as exc:  # noqa: BLE001 - a hostile old file reserved nothing, never a traceback
        if log is not None:
            log.error("reading the earlier %s failed", path, exc_info=exc)
        return 0
    return reserved_gpus(parsed.spec) if parsed is not None else 0


def _named_before(path: str, data: bytes, user_id: str, policy: SpecPolicy,
                  log: logging.Logger | None) -> str | None:
    """The model_id an earlier version of a disputed file named; None (it named none) when that
    version breaks the reader, as read_user refuses such a file instead of raising."""
    try:
        return read_spec(path, data, user_id, policy).model_id
    except Exception as exc:  # noqa: BLE001 - a hostile old file settles nothing, never a traceback
        if log is not None:
            log.error("reading the earlier %s failed", path, exc_info=exc)
        return None


def judged_spec(path: str, data: bytes, user_id: str, policy: SpecPolicy, known: bool = True,
                quota: GpuQuota | None = None, pushed: Mapping[str, bytes] | None = None) -> ParsedSpec:
    """One spec file on its own, as the writes check it before anything is pushed: every rule
    but the ones that need the rest of the tree. `known`: the config's users: names `user_id`
    (known_user; the API passes it, as argusd and the hook judge it). With `quota`
    (Config.gpu_quota) and `pushed` (the user's spec files as the branch has them, path ->
    content), also rule 7, as the hook will judge the push. Raises SpecError listing every
    problem of this file."""
    entries = [TreeEntry(path, "", FILE_MODES[0], data)]
    if quota is not None and pushed is not None:
        entries += [TreeEntry(p, "", FILE_MODES[0], d) for p, d in sorted(pushed.items()) if p != path]

    def as_pushed(paths: Sequence[str]) -> Mapping[str, bytes]:
        return {p: pushed[p] for p in paths if pushed is not None and p in pushed}

    verdicts = judge_files(UserFacts(user_id, tuple(entries), known, quota=quota), policy, as_pushed)
    verdict = next(v for v in verdicts if v.path == path)
    if verdict.spec is None:
        raise SpecError(list(verdict.problems))
    return verdict.spec

"""Lint spec files and models.d trees: every problem with its `path:line:col`."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from daemon.core import layout
from daemon.core.adapters import AdapterRefused, BaseRef, adapter_fit, find_base
from daemon.core.layout import FILE_MODES, MODELS_DIR, SPEC_SUFFIXES
from daemon.core.quota import Quotas
from daemon.core.spec import ParsedSpec, SpecPolicy
from daemon.core.verdict import TreeEntry, UserFacts
from daemon.errors import Problem, UsageError
from daemon.folders import read_adapter
from daemon.verdicts import Before, judge_files



@dataclass(frozen=True)
class SpecFile:
    display: str          # the path as the user should see it
    fs_path: Path
    user_id: str | None   # None when it cannot be told from the path
    layout_error: str | None = None


@dataclass
class LintReport:
    files: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    specs: dict[str, ParsedSpec] = field(default_factory=dict)

    @property
    def invalid_files(self) -> list[str]:
        return sorted({p.path for p in self.problems})

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"files": len(self.files), "invalid": len(self.invalid_files), "valid": self.ok,
                "problems": [p.to_dict() for p in sorted(self.problems)]}


def user_of_spec_path(parts: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(user_id, layout_error) for a path given as its components (repo-relative or absolute)."""
    if MODELS_DIR not in parts:
        return None, None
    index = len(parts) - 1 - parts[::-1].index(MODELS_DIR)
    below = parts[index + 1:]
    if len(below) != 2:
        return None, layout.WRONG_DEPTH
    return below[0], None


CloneUser = Callable[[], "str | None"]   # the user of your clone, asked only for a file outside models.d/


def _spec_file(display: str, fs_path: Path, user_override: str | None, clone_user: CloneUser | None) -> SpecFile:
    # abspath, not resolve: a symlinked spec is judged where it stands (and refused there).
    parts = Path(os.path.abspath(fs_path)).parts
    user, layout_error = user_of_spec_path(parts)
    if user_override is not None:
        return SpecFile(display, fs_path, user_override)
    if MODELS_DIR not in parts and clone_user is not None and (owner := clone_user()) is not None:
        return SpecFile(display, fs_path, owner)  # apply's rule: the file goes to your directory
    return SpecFile(display, fs_path, user, layout_error)


def find_spec_files(paths: list[str], user_override: str | None = None,
                    clone_user: CloneUser | None = None) -> list[SpecFile]:
    """Files named directly are always linted; directories are searched for *.yaml/*.yml.
    Whose spec a file is: --user for every file, else models.d/<user>/ in its path, else (a
    file outside models.d/) the user of your clone, as `argusctl apply` would commit it."""
    found: list[SpecFile] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if name.endswith(SPEC_SUFFIXES) and not name.startswith("."):
                        fs_path = Path(dirpath) / name
                        found.append(_spec_file(str(fs_path), fs_path, user_override, clone_user))
        elif path.exists():
            found.append(_spec_file(given, path, user_override, clone_user))
        else:
            raise UsageError(f"{given}: no such file or directory")
    return found


def _read_capped(path: Path, limit: int) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(limit + 1)  # one byte over is enough to report the size limit


def _at_head(fs_paths: dict[str, Path], limit: int) -> Before:
    """The linted files as the clone's HEAD has them: what a push of them is judged against
    (the file a model is recorded from keeps its model_id). Nothing outside a git work tree."""
    def read(displays: Sequence[str]) -> Mapping[str, bytes]:
        out = {}
        for display in displays:
            fs_path = fs_paths[display]
            try:
                shown = subprocess.run(["git", "--no-replace-objects", "show", f"HEAD:./{fs_path.name}"],
                                       cwd=fs_path.parent, capture_output=True, timeout=30)
            except (OSError, subprocess.SubprocessError):
                return {}
            if shown.returncode == 0:
                out[display] = shown.stdout[:limit + 1]
        return out
    return read


def _siblings(user: str, linted_paths: list[Path], linted: set[str], fs_paths: dict[str, Path],
              limit: int) -> list[TreeEntry]:
    """The other spec files of models.d/<user>/ beside the linted ones (what the hook sees of the
    user's other models when it checks the quota), added to `fs_paths` so their HEAD is read too."""
    dirs = {p.parent for p in linted_paths if p.parent.name == user and p.parent.parent.name == MODELS_DIR}
    seen = {os.path.abspath(p) for p in linted_paths}
    out = []
    for folder in sorted(dirs):
        for path in sorted(folder.iterdir()):
            if (not path.name.endswith(SPEC_SUFFIXES) or path.name.startswith(".") or path.is_symlink()
                    or not path.is_file() or os.path.abspath(path) in seen):
                continue
            try:
                data = _read_capped(path, limit)
            except OSError:
                continue  # lint it to see why; it reserves nothing here
            display = str(path)
            if display in linted:
                continue
            fs_paths[display] = path
            out.append(TreeEntry(display, "", FILE_MODES[0], data))
    return out


def lint_files(files: list[SpecFile], policy: SpecPolicy, users: frozenset[str] | None = None,
               quotas: Quotas | None = None) -> LintReport:
    """Every problem of the files: where they are and what they are (read here), then the
    judge's verdict (core/verdict.py), per user, as the hook and argusd give it. `users`: the
    config's users: section, when it has one (a user it does not name is refused). `quotas`:
    each user's GPU quota (Config.gpu_quota); with one, the user's other files in their
    models.d/<user>/ count towards it, as the hook counts them."""
    report = LintReport(files=[f.display for f in files])
    entries: dict[str, list[TreeEntry]] = {}
    fs_paths: dict[str, Path] = {}
    for spec_file in files:
        if spec_file.layout_error:
            report.problems.append(Problem(spec_file.display, 1, 1, spec_file.layout_error))
            continue
        if spec_file.fs_path.is_symlink() and MODELS_DIR in Path(os.path.abspath(spec_file.fs_path)).parts:
            report.problems.append(Problem(spec_file.display, 1, 1, layout.SYMLINK))
            continue
        if spec_file.user_id is None:
            report.problems.append(Problem(spec_file.display, 1, 1,
                                           f"cannot tell whose spec this is: put it at {MODELS_DIR}/<user_id>/"
                                           "<name>.yaml, pass --user, or make your clone with `argusctl "
                                           "init` (lint then takes its user, as apply does)"))
            continue
        try:
            data = _read_capped(spec_file.fs_path, policy.max_spec_bytes)
        except OSError as exc:
            report.problems.append(Problem(spec_file.display, 1, 1, f"cannot read file: {exc.strerror}"))
            continue
        entries.setdefault(spec_file.user_id, []).append(TreeEntry(spec_file.display, "", FILE_MODES[0], data))
        fs_paths[spec_file.display] = spec_file.fs_path
    owners = {f.display: f.user_id for f in files}
    linted = set(fs_paths)
    for user, mine in sorted(entries.items()):
        quota = quotas(user) if quotas is not None else None
        if quota is not None:  # the quota counts the user's other models: the rest of their directory
            mine = mine + _siblings(user, [fs_paths[e.path] for e in mine], linted, fs_paths, policy.max_spec_bytes)
        facts = UserFacts(user, tuple(mine), known=users is None or user in users, quota=quota)
        for verdict in judge_files(facts, policy, _at_head(fs_paths, policy.max_spec_bytes)):
            if verdict.path not in linted:
                continue  # context only: lint it to see its own problems
            report.problems.extend(verdict.problems)
            if verdict.spec is not None:
                report.specs[verdict.path] = verdict.spec
    report.problems.extend(adapter_problems(report.specs, owners, policy))
    report.problems.sort()
    return report


def adapter_problems(specs: dict[str, ParsedSpec], users: dict[str, str | None], policy: SpecPolicy) -> list[Problem]:
    """What lint can check of an adapter without a GPU, where this machine has its folder:
    that it is a LoRA adapter, and, when its base is among the linted files (named by its
    model_id), that the base takes it. The same rules argusd applies when it loads the adapter
    (daemon/core/adapters.py); a base named by public id is checked by argusd, which knows the ids."""
    bases = [BaseRef(f"{users[d]}/{p.spec.model_id}", users[d] or "", p.spec.model_id, p.model_source,
                     p.spec.adapters.model_dump() if p.spec.adapters else None)
             for d, p in specs.items() if p.spec.base_model is None]
    problems = []
    for display, parsed in specs.items():
        user = users[display]
        if parsed.spec.base_model is None or user is None or not os.path.isdir(parsed.model_source):
            continue  # not on this machine: argusd checks it where the adapter is
        info = read_adapter(parsed.model_source, user, policy.root)
        if isinstance(info, AdapterRefused):
            pos = parsed.doc.position(("model_source",))
            problems.append(Problem(display, pos.line, pos.col, info.reason))
            continue
        base = find_base(parsed.spec.base_model, user, bases)
        found = adapter_fit(info, user, base) if base is not None else None
        if found:
            pos = parsed.doc.position(("base_model",))
            problems.append(Problem(display, pos.line, pos.col, found))
    return problems


def lint_paths(paths: list[str], policy: SpecPolicy, user_override: str | None = None,
               clone_user: CloneUser | None = None, users: frozenset[str] | None = None,
               quotas: Quotas | None = None) -> LintReport:
    files = find_spec_files(paths, user_override, clone_user)
    if not files:
        raise UsageError(f"no spec files (*.yaml, *.yml) found in {', '.join(paths)}")
    return lint_files(files, policy, users, quotas)

"""Lint spec files and models.d trees: every problem with its `path:line:col`."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from daemon.core import layout
from daemon.core.layout import MODELS_DIR, SPEC_SUFFIXES
from daemon.errors import Problem, SpecError, UsageError
from daemon.core.spec import ParsedSpec, SpecPolicy, parse_spec



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


def _spec_file(display: str, fs_path: Path, user_override: str | None) -> SpecFile:
    # abspath, not resolve: a symlinked spec is judged where it stands (and refused there).
    user, layout_error = user_of_spec_path(Path(os.path.abspath(fs_path)).parts)
    if user_override is not None:
        return SpecFile(display, fs_path, user_override)
    return SpecFile(display, fs_path, user, layout_error)


def find_spec_files(paths: list[str], user_override: str | None = None) -> list[SpecFile]:
    """Files named directly are always linted; directories are searched for *.yaml/*.yml."""
    found: list[SpecFile] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if name.endswith(SPEC_SUFFIXES) and not name.startswith("."):
                        fs_path = Path(dirpath) / name
                        found.append(_spec_file(str(fs_path), fs_path, user_override))
        elif path.exists():
            found.append(_spec_file(given, path, user_override))
        else:
            raise UsageError(f"{given}: no such file or directory")
    return found


def _read_capped(path: Path, limit: int) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(limit + 1)  # one byte over is enough to report the size limit


def lint_files(files: list[SpecFile], policy: SpecPolicy) -> LintReport:
    report = LintReport(files=[f.display for f in files])
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
                                           "<name>.yaml or pass --user"))
            continue
        try:
            data = _read_capped(spec_file.fs_path, policy.max_spec_bytes)
        except OSError as exc:
            report.problems.append(Problem(spec_file.display, 1, 1, f"cannot read file: {exc.strerror}"))
            continue
        try:
            report.specs[spec_file.display] = parse_spec(spec_file.display, data, spec_file.user_id, policy)
        except SpecError as exc:
            report.problems.extend(exc.problems)
    users = {f.display: f.user_id for f in files}
    report.problems.extend(duplicate_model_ids(report.specs, users))
    report.problems.sort()
    return report


def duplicate_model_ids(specs: dict[str, ParsedSpec], users: dict[str, str | None]) -> list[Problem]:
    """Two files of one user naming the same model_id are both wrong."""
    by_id: dict[tuple, list[str]] = {}
    for display, parsed in specs.items():
        by_id.setdefault((users[display], parsed.spec.model_id), []).append(display)
    problems = []
    for (user, model_id), displays in by_id.items():
        if len(displays) < 2:
            continue
        for display in displays:
            others = [d for d in sorted(displays) if d != display]
            pos = specs[display].doc.position(("model_id",))
            problems.append(Problem(display, pos.line, pos.col, layout.duplicate_model_id(model_id, others)))
    return problems


def lint_paths(paths: list[str], policy: SpecPolicy, user_override: str | None = None) -> LintReport:
    files = find_spec_files(paths, user_override)
    if not files:
        raise UsageError(f"no spec files (*.yaml, *.yml) found in {', '.join(paths)}")
    return lint_files(files, policy)

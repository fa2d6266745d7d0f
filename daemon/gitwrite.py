"""The GitOps write path shared by `argusctl apply/scale/delete` and argusd's HTTP API: edit a
spec in a clone, lint it with the same validator as `lint`, the hook and argusd, commit as the
user with a message that says what changed, and push. A push that loses a race is rebased
and retried, never forced. Git is the only thing written: argusd applies what it records.
"""
from __future__ import annotations

import difflib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from daemon.core.layout import MODELS_DIR, SPEC_SUFFIXES
from daemon.core.spec import SpecPolicy, parse_spec
from daemon.core.yamldoc import YamlDocError, load_mapping
from daemon.errors import ConflictError, GitError, NotFoundError, RefusedError, SpecError, UsageError
from daemon.gitrepo import run_git

PUSH_ATTEMPTS = 5
PUBLIC_ID = re.compile(r"^(?P<user>[a-z][a-z0-9_-]{0,31})-(?P<ts>\d{12})-(?P<suffix>.+)$")


@dataclass(frozen=True)
class Clone:
    path: Path
    user: str
    branch: str

    @property
    def user_dir(self) -> Path:
        return self.path / MODELS_DIR / self.user


@dataclass(frozen=True)
class Change:
    """What a write did (or, with dry_run, would do)."""

    action: str             # created | changed | scaled | deleted | unchanged
    model_id: str           # the suffix
    path: str               # repo-relative spec path
    diff: str
    message: str
    commit: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _git(cwd: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    result = run_git(*args, cwd=cwd, env=env)
    if check and result.returncode != 0:
        raise GitError(f"git {args[0]} failed in {cwd}: {(result.stderr or result.stdout).strip()}")
    return result


def server_clone(bare: Path, path: Path, user: str, branch: str, git_name: str, git_email: str) -> Clone:
    """The clone argusd writes through for one user of the HTTP API: made on first use, then
    reset to exactly what is pushed before every write (so a write that failed half-way leaves
    nothing for the next one), committing as that user's git identity."""
    if not (path / ".git").exists():
        if not (bare / "HEAD").exists():
            raise GitError(f"no GitOps repo at {bare}; create it with `argusctl init` (or fix gitops.repo)")
        path.parent.mkdir(parents=True, exist_ok=True)
        _git(path.parent, "clone", "-q", str(bare), str(path))
    _git(path, "fetch", "-q", "origin")
    if _git(path, "rev-parse", "--verify", "-q", f"origin/{branch}", check=False).returncode == 0:
        _git(path, "checkout", "-q", "-f", "-B", branch, f"origin/{branch}")
    else:  # nothing pushed yet: the first write starts the branch
        _git(path, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
    _git(path, "clean", "-q", "-f", "-d")
    _git(path, "config", "user.name", git_name)
    _git(path, "config", "user.email", git_email)
    return Clone(path, user, branch)


def sync_clone(clone: Clone) -> None:
    """Start from what is pushed: fetch, and fast-forward a clean clone."""
    _git(clone.path, "fetch", "-q", "origin")
    if _git(clone.path, "rev-parse", "--verify", "-q", f"origin/{clone.branch}", check=False).returncode != 0:
        return  # nothing pushed yet
    if _git(clone.path, "status", "--porcelain", "--", MODELS_DIR).stdout.strip():
        raise UsageError(f"{clone.path} has uncommitted changes under {MODELS_DIR}/; commit or discard them first")
    _git(clone.path, "checkout", "-q", clone.branch)
    _git(clone.path, "rebase", "-q", f"origin/{clone.branch}")


def commit_and_push(clone: Clone, paths: list[Path], message: str) -> str:
    _git(clone.path, "add", "-A", "--", *[str(p) for p in paths])
    _git(clone.path, "commit", "-q", "-m", message)
    for _ in range(PUSH_ATTEMPTS):
        pushed = _git(clone.path, "push", "-q", "origin", f"HEAD:{clone.branch}", check=False)
        if pushed.returncode == 0:
            return _git(clone.path, "rev-parse", "HEAD").stdout.strip()
        if "[remote rejected]" in pushed.stderr:
            # The server refused it (the pre-receive hook): no retry helps. Leave the clone
            # as the server has it, so the next command starts clean, and say why.
            if _git(clone.path, "rev-parse", "--verify", "-q", "HEAD~1", check=False).returncode == 0:
                _git(clone.path, "reset", "-q", "--hard", "HEAD~1")
            else:  # the refused commit was the first one
                _git(clone.path, "update-ref", "-d", "HEAD")
            reasons = [line.removeprefix("remote: ").strip() for line in pushed.stderr.splitlines()
                       if line.startswith("remote: ")]
            raise RefusedError("the GitOps repo refused the push; nothing changed:\n  " +
                           "\n  ".join(reasons or [pushed.stderr.strip()]))
        # Lost a race with another push: replay our commit on top of theirs, never force.
        _git(clone.path, "fetch", "-q", "origin")
        rebased = _git(clone.path, "rebase", "-q", f"origin/{clone.branch}", check=False)
        if rebased.returncode != 0:
            _git(clone.path, "rebase", "--abort", check=False)
            _git(clone.path, "reset", "-q", "--hard", f"origin/{clone.branch}")
            raise ConflictError(f"someone else changed the same spec meanwhile ({message}); your change was not pushed: "
                           "run the command again on top of theirs")
    raise GitError(f"could not push after {PUSH_ATTEMPTS} attempts (the branch keeps moving); try again")


def suffix_of(model: str, user: str) -> str:
    """MODEL may be the suffix or the full public id <user>-<YYYYMMDDHHMM>-<suffix>."""
    match = PUBLIC_ID.match(model)
    if match and match.group("user") == user:
        return match.group("suffix")
    return model


def _spec_files(clone: Clone) -> dict[str, Path]:
    """model_id -> file, for the user's specs that parse far enough to name one."""
    found: dict[str, Path] = {}
    if not clone.user_dir.is_dir():
        return found
    for path in sorted(clone.user_dir.iterdir()):
        if path.name.startswith(".") or not path.name.endswith(SPEC_SUFFIXES):
            continue
        try:
            data = _mapping(path.read_bytes())
        except OSError:
            continue
        if isinstance(data.get("model_id"), str):
            found.setdefault(data["model_id"], path)
    return found


def _mapping(data: bytes) -> dict:
    """A spec file's fields through the strict loader (a hostile file in the clone must not
    crash the command: depth, size and tags are limited there); {} when it does not load."""
    try:
        return load_mapping(data, max_bytes=1 << 20).value
    except YamlDocError:
        return {}


def _locate(clone: Clone, model: str) -> tuple[str, Path]:
    """(suffix, spec file) of one of the user's models, by suffix or full public id."""
    suffix = suffix_of(model, clone.user)
    path = _spec_files(clone).get(suffix)
    if path is None:
        raise NotFoundError(f"no spec for model {suffix!r} under {MODELS_DIR}/{clone.user}/; "
                            f"`argusctl status --user {clone.user}` lists your models")
    return suffix, path


def _rel(clone: Clone, path: Path) -> str:
    return str(path.relative_to(clone.path))


def _diff(clone: Clone, path: Path, old: str, new: str) -> str:
    rel = _rel(clone, path)
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        fromfile=f"a/{rel}" if old else "/dev/null",
                                        tofile=f"b/{rel}" if new else "/dev/null"))


def _describe(old: dict, new: dict) -> str:
    changed = []
    for key in ("model_source", "num_replicas", "gpus_per_replica", "engine_kwargs"):
        if old.get(key) != new.get(key):
            if key in ("num_replicas", "gpus_per_replica"):
                changed.append(f"{key} {old.get(key, 1)} -> {new.get(key, 1)}")
            else:
                changed.append(f"{key} changed")
    return ", ".join(changed) or "comments or layout"


def apply(clone: Clone, data: bytes, source: str, policy: SpecPolicy, dry_run: bool = False) -> Change:
    """Put a spec file into models.d/<user>/ (replacing the file that defines its model_id)."""
    parsed = parse_spec(source, data, clone.user, policy)  # SpecError: nothing is touched
    if not dry_run:
        sync_clone(clone)
    suffix = parsed.spec.model_id
    target = _spec_files(clone).get(suffix) or clone.user_dir / f"{suffix}.yaml"
    old = target.read_text() if target.exists() else ""
    new = data.decode("utf-8")
    if old == new:
        return Change("unchanged", suffix, _rel(clone, target), "", f"{suffix} is already as in {source}")
    action = "changed" if old else "created"
    detail = _describe(_mapping(old.encode()), parsed.doc.value) if old else "new model"
    message = f"apply {clone.user}/{suffix}: {detail}"
    change = Change(action, suffix, _rel(clone, target), _diff(clone, target, old, new), message)
    if dry_run:
        return change
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(new)
    return Change(**{**change.to_dict(), "commit": commit_and_push(clone, [target], message)})


def scale(clone: Clone, model: str, replicas: int, policy: SpecPolicy, dry_run: bool = False) -> Change:
    """Set num_replicas in the model's spec, keeping the rest of the file as written."""
    if not dry_run:
        sync_clone(clone)
    suffix, path = _locate(clone, model)
    old = path.read_text()
    new = set_top_level_scalar(old, "num_replicas", str(replicas))
    parse_spec(_rel(clone, path), new.encode(), clone.user, policy)  # e.g. over the replica limit
    if old == new:
        return Change("unchanged", suffix, _rel(clone, path), "", f"{suffix} already has {replicas} replica(s)")
    before = _mapping(old.encode()).get("num_replicas", 1)
    message = f"scale {clone.user}/{suffix}: num_replicas {before} -> {replicas}"
    change = Change("scaled", suffix, _rel(clone, path), _diff(clone, path, old, new), message)
    if dry_run:
        return change
    path.write_text(new)
    return Change(**{**change.to_dict(), "commit": commit_and_push(clone, [path], message)})


def delete(clone: Clone, model: str, dry_run: bool = False) -> Change:
    if not dry_run:
        sync_clone(clone)
    suffix, path = _locate(clone, model)
    message = f"delete {clone.user}/{suffix}"
    change = Change("deleted", suffix, _rel(clone, path), _diff(clone, path, path.read_text(), ""), message)
    if dry_run:
        return change
    path.unlink()
    return Change(**{**change.to_dict(), "commit": commit_and_push(clone, [path], message)})


def set_top_level_scalar(text: str, key: str, value: str) -> str:
    """Replace (or append) `key: value` at the top level of a YAML mapping, keeping comments."""
    pattern = re.compile(rf"^{re.escape(key)}[ \t]*:[ \t]*[^#\n]*?(?P<comment>[ \t]+#[^\n]*)?$", re.MULTILINE)
    match = pattern.search(text)
    if match:
        comment = match.group("comment") or ""
        return text[:match.start()] + f"{key}: {value}{comment}" + text[match.end():]
    return text + ("" if text.endswith("\n") or not text else "\n") + f"{key}: {value}\n"


__all__ = ["Clone", "Change", "apply", "scale", "delete", "suffix_of", "SpecError", "commit_and_push", "sync_clone"]

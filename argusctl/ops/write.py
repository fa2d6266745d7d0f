"""The GitOps write path behind `argusctl init/apply/scale/delete`: edit a spec in the
user's clone, lint it with the same validator as `lint` and the daemon, commit as the
user with a message that says what changed, and push. A push that loses a race is
rebased and retried, never forced. Git is the only thing written: the daemon applies it.
"""
from __future__ import annotations

import difflib
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path


from daemon.errors import GitError, NotFoundError, SpecError, UsageError
from daemon.core.layout import MODELS_DIR, SPEC_SUFFIXES
from daemon.gitrepo import run_git
from argusctl.ops.hook import protect
from daemon.core.spec import SpecPolicy, parse_spec, validate_user_id
from daemon.core.yamldoc import YamlDocError, load_mapping

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


def init(bare: Path, workdir: Path, user: str, branch: str = "main", name: str | None = None,
         email: str | None = None) -> Clone:
    """A bare GitOps repo (if missing) and the user's working clone with models.d/<user>/."""
    try:
        validate_user_id(user)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not bare.exists():
        bare.mkdir(parents=True)
        _git(bare, "init", "-q", "--bare", "-b", branch)
        protect(bare)
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / ".git").exists():
            raise UsageError(f"{workdir} exists and is not a git clone; choose another --workdir")
        _check_existing_clone(workdir, bare, branch)
    else:
        workdir.parent.mkdir(parents=True, exist_ok=True)
        _git(workdir.parent, "clone", "-q", str(bare), str(workdir))
    _git(workdir, "config", "argus.user", user)
    if name:
        _git(workdir, "config", "user.name", name)
    if email:
        _git(workdir, "config", "user.email", email)
    if _git(workdir, "var", "GIT_COMMITTER_IDENT", check=False).returncode != 0:
        # Without one every later apply/scale/delete fails inside git on a fresh machine.
        raise UsageError(f"git has no identity to commit as in {workdir}: pass --name and --email "
                         f"(or set `git config --global user.name` and `user.email`)")
    clone = Clone(workdir, user, branch)
    if _git(workdir, "rev-parse", "--verify", "-q", f"origin/{branch}", check=False).returncode == 0:
        # Only ever forward: _check_existing_clone made sure nothing local would be lost.
        _git(workdir, "checkout", "-q", "-B", branch, f"origin/{branch}")
    else:
        _git(workdir, "checkout", "-q", "-B", branch)
    keep = clone.user_dir / ".gitkeep"
    if not keep.exists():
        keep.parent.mkdir(parents=True, exist_ok=True)
        keep.write_text("")
        _commit_and_push(clone, [keep], f"init: models.d/{user}/")
    return clone


def _check_existing_clone(workdir: Path, bare: Path, branch: str) -> None:
    """Re-running init on a clone must not lose work or touch another project's repo."""
    origin = _git(workdir, "remote", "get-url", "origin", check=False).stdout.strip()
    if not origin or os.path.realpath(os.path.expanduser(origin)) != os.path.realpath(bare):
        raise UsageError(f"{workdir} is a clone of {origin or 'no remote'}, not of the GitOps repo {bare}; "
                         "choose another --workdir")
    if _git(workdir, "status", "--porcelain").stdout.strip():
        raise UsageError(f"{workdir} has uncommitted changes; commit and push them, or discard them, "
                         "then run init again")
    _git(workdir, "fetch", "-q", "origin")
    if _git(workdir, "rev-parse", "--verify", "-q", "HEAD", check=False).returncode != 0:
        return  # an empty clone: nothing to lose
    if _git(workdir, "rev-parse", "--verify", "-q", f"origin/{branch}", check=False).returncode != 0:
        return
    local = _git(workdir, "rev-list", "--count", f"origin/{branch}..HEAD").stdout.strip()
    if local != "0":
        raise UsageError(f"{workdir} has {local} commit(s) that are not in the GitOps repo; push them "
                         f"(git push origin HEAD:{branch}) or drop them, then run init again")


def open_clone(workdir: Path, user: str | None, branch: str) -> Clone:
    if not (workdir / ".git").exists():
        raise UsageError(f"{workdir} is not a GitOps clone; create one with `argusctl init` or pass --workdir")
    if user is None:
        found = _git(workdir, "config", "argus.user", check=False).stdout.strip()
        if not found:
            raise UsageError(f"{workdir} does not say which user you are; pass --user or run `argusctl init`")
        user = found
    try:
        validate_user_id(user)  # a path component: ../../victim must never name a directory
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return Clone(workdir, user, branch)


def _sync_clone(clone: Clone) -> None:
    """Start from what is pushed: fetch, and fast-forward a clean clone."""
    _git(clone.path, "fetch", "-q", "origin")
    if _git(clone.path, "rev-parse", "--verify", "-q", f"origin/{clone.branch}", check=False).returncode != 0:
        return  # nothing pushed yet
    if _git(clone.path, "status", "--porcelain", "--", MODELS_DIR).stdout.strip():
        raise UsageError(f"{clone.path} has uncommitted changes under {MODELS_DIR}/; commit or discard them first")
    _git(clone.path, "checkout", "-q", clone.branch)
    _git(clone.path, "rebase", "-q", f"origin/{clone.branch}")


def _commit_and_push(clone: Clone, paths: list[Path], message: str) -> str:
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
            raise GitError("the GitOps repo refused the push; nothing changed:\n  " +
                           "\n  ".join(reasons or [pushed.stderr.strip()]))
        # Lost a race with another push: replay our commit on top of theirs, never force.
        _git(clone.path, "fetch", "-q", "origin")
        rebased = _git(clone.path, "rebase", "-q", f"origin/{clone.branch}", check=False)
        if rebased.returncode != 0:
            _git(clone.path, "rebase", "--abort", check=False)
            _git(clone.path, "reset", "-q", "--hard", f"origin/{clone.branch}")
            raise GitError(f"someone else changed the same spec meanwhile ({message}); your change was not pushed: "
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
        _sync_clone(clone)
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
    return Change(**{**change.to_dict(), "commit": _commit_and_push(clone, [target], message)})


def scale(clone: Clone, model: str, replicas: int, policy: SpecPolicy, dry_run: bool = False) -> Change:
    """Set num_replicas in the model's spec, keeping the rest of the file as written."""
    if not dry_run:
        _sync_clone(clone)
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
    return Change(**{**change.to_dict(), "commit": _commit_and_push(clone, [path], message)})


def delete(clone: Clone, model: str, dry_run: bool = False) -> Change:
    if not dry_run:
        _sync_clone(clone)
    suffix, path = _locate(clone, model)
    message = f"delete {clone.user}/{suffix}"
    change = Change("deleted", suffix, _rel(clone, path), _diff(clone, path, path.read_text(), ""), message)
    if dry_run:
        return change
    path.unlink()
    return Change(**{**change.to_dict(), "commit": _commit_and_push(clone, [path], message)})


def set_top_level_scalar(text: str, key: str, value: str) -> str:
    """Replace (or append) `key: value` at the top level of a YAML mapping, keeping comments."""
    pattern = re.compile(rf"^{re.escape(key)}[ \t]*:[ \t]*[^#\n]*?(?P<comment>[ \t]+#[^\n]*)?$", re.MULTILINE)
    match = pattern.search(text)
    if match:
        comment = match.group("comment") or ""
        return text[:match.start()] + f"{key}: {value}{comment}" + text[match.end():]
    return text + ("" if text.endswith("\n") or not text else "\n") + f"{key}: {value}\n"


__all__ = ["Clone", "Change", "init", "open_clone", "apply", "scale", "delete", "suffix_of", "SpecError"]

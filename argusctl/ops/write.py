"""`argusctl init` and the clone the CLI writes through; the write path itself (apply, scale,
suspend, resume, delete: lint, commit as the user, push, rebase and retry) is daemon/gitwrite.py, shared with
argusd's HTTP API.
"""
from __future__ import annotations

import os
from pathlib import Path

from argusctl.hook.checks import protect
from daemon.config import GitCredentials
from daemon.core.forge import parse_repo
from daemon.remote import configure_remote
from daemon.core.spec import validate_user_id
from daemon.errors import GitError, UsageError
from daemon.gitwrite import (Change, Clone, SpecError, _git, apply, clone_repo, commit_and_push, delete, require_identity, scale,
                             set_suspended, suffix_of, write_transaction)


def init(bare: Path | str, workdir: Path, user: str, branch: str = "main", name: str | None = None,
         email: str | None = None) -> Clone:
    """A bare GitOps repo (if missing) and the user's working clone with models.d/<user>/.
    `bare` may be a forge's URL (the repo exists there already): the clone fetches from and
    pushes to it with the user's own git credentials (their SSH key, credential helper), never
    argusd's gitops.credentials: the forge maps the user's account to their identity."""
    try:
        validate_user_id(user)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    remote = parse_repo(str(bare)).remote
    if not remote:
        bare = Path(bare)
        if not bare.exists():
            bare.mkdir(parents=True)
            _git(bare, "init", "-q", "--bare", "-b", branch)
            protect(bare)
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / ".git").exists():
            raise UsageError(f"{workdir} exists and is not a git clone; choose another --workdir")
        if remote and _origin(workdir) == str(bare):
            # No credentials of argusd's: a clone an older argusctl made with them has them removed.
            configure_remote(workdir, str(bare), GitCredentials())
        _check_existing_clone(workdir, bare, branch)
    else:
        clone_repo(bare, workdir, branch)
    _git(workdir, "config", "argus.user", user)
    if name:
        _git(workdir, "config", "user.name", name)
    if email:
        _git(workdir, "config", "user.email", email)
    require_identity(workdir)  # without one every later apply/scale/delete would fail inside git
    clone = Clone(workdir, user, branch)
    if _git(workdir, "rev-parse", "--verify", "-q", f"origin/{branch}", check=False).returncode == 0:
        # Only ever forward: _check_existing_clone made sure nothing local would be lost.
        _git(workdir, "checkout", "-q", "-B", branch, f"origin/{branch}")
    else:
        _git(workdir, "checkout", "-q", "-B", branch)
    keep = clone.user_dir / ".gitkeep"
    if not keep.exists():
        def make_keep() -> tuple[list[Path], str]:
            keep.parent.mkdir(parents=True, exist_ok=True)
            keep.write_text("")
            return [keep], f"init: models.d/{user}/"

        with write_transaction(clone, sync=False):
            commit_and_push(clone, make_keep)
    return clone


def _origin(workdir: Path) -> str:
    return _git(workdir, "remote", "get-url", "origin", check=False).stdout.strip()


def _same_repo(origin: str, repo: Path | str) -> bool:
    if parse_repo(str(repo)).remote:
        return origin == str(repo)
    return os.path.realpath(os.path.expanduser(origin)) == os.path.realpath(repo)


def _check_existing_clone(workdir: Path, bare: Path | str, branch: str) -> None:
    """Re-running init on a clone must not lose work or touch another project's repo."""
    origin = _origin(workdir)
    if not origin or not _same_repo(origin, bare):
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


def require_clone(workdir: Path) -> None:
    """The one check (and exit code, 3: the git repo is not usable) for every command that
    reads or writes through a clone: apply, scale, delete, diff."""
    if not (workdir / ".git").exists():
        raise GitError(f"{workdir} is not a GitOps clone; create one with `argusctl init` or pass --workdir")


def open_clone(workdir: Path, user: str | None, branch: str) -> Clone:
    require_clone(workdir)
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




__all__ = ["Clone", "Change", "init", "open_clone", "require_clone", "apply", "scale", "set_suspended", "delete", "suffix_of",
           "SpecError"]

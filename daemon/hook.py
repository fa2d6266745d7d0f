"""Server-side validation: the pre-receive hook refuses a push that carries an invalid spec,
a spec of an unknown user, or a change to models.d/<user>/ by someone not allowed to make
it. The same validator as `argusctl lint` and the daemon; the daemon checks again, for
commits that get in some other way.
"""
from __future__ import annotations

import os
import shlex
import stat
import sys
from pathlib import Path

from .errors import GitError, SpecError
from .gitsync import MODELS_DIR, CommitInfo, GitRepo, is_spec_path, user_of
from .spec import SpecPolicy, parse_spec, validate_user_id

ZERO = "0" * 40
HOOK_MARK = "# installed by argusctl hook install"


def check_commit(repo: GitRepo, commit: CommitInfo, policy: SpecPolicy,
                 owners: dict[str, tuple[str, ...]]) -> list[str]:
    """Problems of one commit, each as `path:line:col: message`."""
    problems: list[str] = []
    changed = repo.changed_paths(commit.parent, commit.sha)
    users = sorted({u for u in (user_of(p) for p in changed) if u is not None})
    strays = [p for p in changed if user_of(p) is None and is_spec_path(p)]
    for stray in repo.tree_files(commit.sha, strays) if strays else []:  # one ls-tree, not one per file
        problems.append(f"{stray.path}:1:1: specs live at {MODELS_DIR}/<user_id>/<name>.yaml; move this file there")
    files = repo.tree_files(commit.sha, [f"{MODELS_DIR}/{u}/" for u in users]) if users else []
    blobs = repo.read_blobs([f.blob for f in files if is_spec_path(f.path)], policy.max_spec_bytes)
    for user in users:
        mine = [p for p in changed if user_of(p) == user]
        try:
            validate_user_id(user)
        except ValueError as exc:
            problems += [f"{p}:1:1: {exc}" for p in mine]
            continue
        if owners and user not in owners:
            problems += [f"{p}:1:1: user {user!r} is not known to this platform; an operator adds users to the "
                         "config's users: section" for p in mine]
            continue
        allowed = owners.get(user)
        if owners and commit.author_email not in (allowed or ()):
            problems += [f"{p}:1:1: {commit.author} may not change {MODELS_DIR}/{user}/ (allowed: "
                         f"{', '.join(allowed or ()) or 'nobody'}); commit as {user}'s git identity" for p in mine]
            continue
        ids: dict[str, list[str]] = {}
        for f in files:
            if user_of(f.path) != user or not is_spec_path(f.path):
                continue
            if f.mode == "120000":
                if f.path in mine:
                    problems.append(f"{f.path}:1:1: symlinks are not allowed in models.d; commit the file itself")
                continue
            try:
                parsed = parse_spec(f.path, blobs[f.blob], user, policy)
            except SpecError as exc:
                if f.path in mine:
                    problems += [str(p) for p in exc.problems]
                continue
            ids.setdefault(parsed.spec.model_id, []).append(f.path)
        for model_id, paths in ids.items():
            if len(paths) > 1:
                problems += [f"{p}:1:1: model_id {model_id!r} is also defined in "
                             f"{', '.join(o for o in paths if o != p)}; each model needs its own model_id"
                             for p in paths if p in mine]
    return problems


def check_push(repo: GitRepo, updates: list[tuple[str, str, str]], branch: str, policy: SpecPolicy,
               owners: dict[str, tuple[str, ...]]) -> list[str]:
    """pre-receive input lines (old, new, ref): problems of every new commit on the branch."""
    problems: list[str] = []
    for old, new, ref in updates:
        if ref != f"refs/heads/{branch}" or new == ZERO:
            continue
        since = None if old == ZERO else old
        if since is not None and not repo.is_ancestor(since, new):
            since = None  # a force-push: judge the whole new history's changes
        for commit in repo.commits(since, new):
            problems += [f"{p} (commit {commit.sha[:12]})" for p in check_commit(repo, commit, policy, owners)]
    return problems


def install(bare: Path, command: list[str]) -> Path:
    """Write hooks/pre-receive to run `command` (argusctl ... hook pre-receive)."""
    hooks = bare / "hooks"
    if not (bare / "HEAD").exists():
        raise GitError(f"{bare} is not a git repository; create it with `argusctl init`")
    hooks.mkdir(exist_ok=True)
    hook = hooks / "pre-receive"
    if hook.exists() and HOOK_MARK not in hook.read_text():
        raise GitError(f"{hook} exists and was not written by argus; merge it by hand")
    hook.write_text(f"#!/bin/sh\n{HOOK_MARK}\nexec {' '.join(shlex.quote(c) for c in command)}\n")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return hook


def hook_command(config_path: str) -> list[str]:
    return [sys.executable, "-m", "argusctl", "--config", os.path.abspath(config_path), "hook", "pre-receive"]

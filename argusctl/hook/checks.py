"""Server-side validation: the pre-receive hook refuses a push that carries an invalid spec,
a spec of an unknown user, or a change to models.d/<user>/ by someone not allowed to make
it. The same judge as `argusctl lint` and argusd (core/verdict.py); argusd judges again, for
commits that get in some other way.
"""
from __future__ import annotations

import os
import shlex
import stat
import sys
from pathlib import Path
from typing import Mapping, Sequence

from daemon.core import layout
from daemon.core.layout import FILE_MODES, MODELS_DIR, user_of
from daemon.core.ownership import ownership_refusals
from daemon.core.quota import Quotas
from daemon.core.spec import SpecPolicy
from daemon.core.verdict import TreeEntry, UserFacts
from daemon.errors import GitError, Problem
from daemon.gitrepo import CommitInfo, GitRepo, run_git
from daemon.verdicts import Before, judge_files

ZERO = "0" * 40
HOOK_MARK = "# installed by argusctl hook install"


def check_step(repo: GitRepo, previous: str | None, commit: CommitInfo, policy: SpecPolicy,
               owners: dict[str, tuple[str, ...]], quotas: Quotas | None = None) -> list[str]:
    """Problems of one step of the branch (previous -> commit, as argusd records it), each as
    `path:line:col: message`: the judge's verdict (core/verdict.py) on the files this step
    changed, with the previous step as what is on record. `quotas`: each user's GPU quota
    (Config.gpu_quota): a step that puts a user over it could never run, and is refused."""
    problems: list[str] = []
    changes = repo.changers(previous, commit.sha) if owners else {p: [] for p in repo.changed_paths(previous, commit.sha)}
    changed = set(changes)
    refusals = ownership_refusals(changes, owners)
    users = sorted({u for u in (user_of(p) for p in changed) if u is not None})
    strays = sorted(p for p in changed if user_of(p) is None)
    for stray in repo.tree_files(commit.sha, strays) if strays else []:  # one ls-tree, not one per file
        message = layout.stray_problem(stray.path, stray.mode)
        if message is not None:
            problems.append(f"{stray.path}:1:1: {message}")
    files = [f for f in (repo.tree_files(commit.sha, [f"{MODELS_DIR}/{u}/" for u in users]) if users else [])
             if layout.is_judged(f.path, f.mode)]
    blobs = repo.read_blobs([f.blob for f in files if f.mode in FILE_MODES], policy.max_spec_bytes)
    for user in users:
        facts = UserFacts(user, tuple(TreeEntry(f.path, f.blob, f.mode, blobs.get(f.blob))
                                      for f in files if user_of(f.path) == user),
                          known=not owners or user in owners,
                          refused={p: (Problem(p, 1, 1, r.message),) for p, r in refusals.items() if user_of(p) == user},
                          quota=quotas(user) if quotas is not None else None)
        verdicts = judge_files(facts, policy, _before(repo, previous, policy))
        for verdict in verdicts:   # a refused deletion, or a file argus does not read, has one too
            if verdict.path in changed:
                problems += [str(p) for p in verdict.problems]
    return problems


def _before(repo: GitRepo, previous: str | None, policy: SpecPolicy) -> Before:
    """The files as the previous step of the branch has them (what argusd has on record)."""
    def read(paths: Sequence[str]) -> Mapping[str, bytes]:
        if previous is None:
            return {}
        old = [f for f in repo.tree_files(previous, list(paths)) if f.mode in FILE_MODES]
        blobs = repo.read_blobs([f.blob for f in old], policy.max_spec_bytes)
        return {f.path: blobs[f.blob] for f in old if f.blob in blobs}
    return read


def check_push(repo: GitRepo, updates: list[tuple[str, str, str]], branch: str, policy: SpecPolicy,
               owners: dict[str, tuple[str, ...]], quotas: Quotas | None = None) -> list[str]:
    """pre-receive input lines (old, new, ref): every problem of the push, judged as argusd
    would record it. Only the tracked branch may move, and only forward."""
    problems: list[str] = []
    tracked = f"refs/heads/{branch}"
    for old, new, ref in updates:
        if ref != tracked:
            # refs/replace/* would change what argusd reads; other refs are never served.
            problems.append(f"{ref}: only {tracked} may be pushed to this repo; push your work to {branch}")
            continue
        if new == ZERO:
            problems.append(f"{ref}: deleting {branch} is refused; it holds every user's models")
            continue
        since = None if old == ZERO else old
        if since is not None and not repo.is_ancestor(since, new):
            problems.append(f"{ref}: a non-fast-forward push (a force-push or a rewritten history) is refused; "
                            f"fetch, rebase your commits onto origin/{branch} and push again")
            continue
        previous = since
        for commit in repo.commits(since, new):
            found = check_step(repo, previous, commit, policy, owners, quotas)
            problems += [f"{p} (commit {commit.sha[:12]})" for p in found]
            previous = commit.sha
    return problems


# git itself refuses what no pre-receive hook may let through, even where the hook is missing.
PROTECTION = {"receive.denyNonFastForwards": "true", "receive.denyDeletes": "true"}


def protect(bare: Path) -> None:
    """Make git refuse force-pushes and branch deletions in the bare repo."""
    for key, value in PROTECTION.items():
        result = run_git("--git-dir", str(bare), "config", key, value, cwd=bare)
        if result.returncode != 0:
            raise GitError(f"cannot set {key} in {bare}: {result.stderr.strip()}")


def protection_gaps(bare: Path) -> list[str]:
    """What is missing from the bare repo's push protection (for `argusctl doctor`)."""
    gaps = []
    for key, value in PROTECTION.items():
        found = run_git("--git-dir", str(bare), "config", "--get", key, cwd=bare).stdout.strip()
        if found != value:
            gaps.append(f"{key} is not {value}")
    hook = bare / "hooks" / "pre-receive"
    if not hook.exists() or HOOK_MARK not in hook.read_text(errors="replace"):
        gaps.append("no argus pre-receive hook")
    return gaps


def install(bare: Path, command: list[str]) -> Path:
    """Write hooks/pre-receive to run `command` (argusctl ... hook pre-receive) and protect the branch."""
    hooks = bare / "hooks"
    if not (bare / "HEAD").exists():
        raise GitError(f"{bare} is not a git repository; create it with `argusctl init`")
    protect(bare)
    hooks.mkdir(exist_ok=True)
    hook = hooks / "pre-receive"
    if hook.exists() and HOOK_MARK not in hook.read_text():
        raise GitError(f"{hook} exists and was not written by argus; merge it by hand")
    hook.write_text(f"#!/bin/sh\n{HOOK_MARK}\nexec {' '.join(shlex.quote(c) for c in command)}\n")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return hook


def hook_command(config_path: str) -> list[str]:
    return [sys.executable, "-m", "argusctl", "--config", os.path.abspath(config_path), "hook", "pre-receive"]

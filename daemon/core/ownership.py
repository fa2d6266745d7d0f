"""Ownership of models.d/<user>/, judged on what a change does to the tree.

One home for the rule that the pre-receive hook and argusd both apply. A change is judged
by WHO made each changed path what it is, not commit by commit along one parent:

- `merge_changed_paths` says which paths a merge changed itself: where its version is not
  what a clean merge of its parents gives (a `merge -s ours` that drops the other side's
  edit changed that path; an honest merge that takes it did not).
- `ownership_refusals` judges the paths that differ between the last accepted tree and the
  new one, each with the commits that made it so. A path no commit explains (a reset or a
  rewritten history) is refused: nobody can be credited with it.

Pure: callers read git and pass data in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from daemon.core.forge import SignatureStatus, signature_problem
from daemon.core.layout import MODELS_DIR, user_of

Blob = Optional[str]  # a path's blob id in one tree, None when the path is absent


@dataclass(frozen=True)
class Changer:
    """A commit that made a path what it is."""

    sha: str
    author: str        # "Name <email>", as recorded
    author_email: str
    # (git's %G?, %GS) when signatures are required (gitops.require_signed), else None.
    signature: Optional[tuple[SignatureStatus, str]] = None


def merge_changed_paths(paths: Sequence[str], base: Mapping[str, Blob], parents: Sequence[Mapping[str, Blob]],
                        merged: Mapping[str, Blob]) -> set[str]:
    """The paths a merge commit changed itself (attributed to its author).

    For each path: the sides that changed it since the merge base. No side: a clean merge
    keeps the base; one version among the changed sides: a clean merge takes it; more than
    one: a conflict, and whatever the merge records is its author's choice.
    """
    own = set()
    for path in paths:
        before = base.get(path)
        sides = {parent.get(path) for parent in parents} - {before}
        if not sides:
            expected: Blob | tuple = before
        elif len(sides) == 1:
            expected = next(iter(sides))
        else:
            expected = ("conflict",)  # matches no blob: the merge's author resolved it
        if merged.get(path) != expected:
            own.add(path)
    return own


@dataclass(frozen=True)
class Refusal:
    """A change to a path that is not applied, with the one message every surface prints."""

    path: str
    user: str
    message: str


def ownership_message(user: str, changer: Changer, allowed: Sequence[str]) -> str:
    return (f"{changer.author} (commit {changer.sha[:12]}) may not change {MODELS_DIR}/{user}/ "
            f"(allowed: {', '.join(allowed) or 'nobody'}); revert the change and let {user} commit it")


def unexplained_message(user: str) -> str:
    return (f"no commit in the pushed history made this change to {MODELS_DIR}/{user}/ (a reset or a rewritten "
            f"history); it is not applied until {user} commits the file again")


def ownership_refusals(changes: Mapping[str, Sequence[Changer]],
                       owners: Mapping[str, Sequence[str]]) -> dict[str, Refusal]:
    """Paths whose change is refused: made by someone the owners map does not allow, or by no commit.

    `changes`: every path that differs between the last accepted tree and the new one, with
    the commits that changed it (empty: no commit explains it). `owners`: user -> the author
    emails allowed to change models.d/<user>/; empty means no ownership checks at all (one
    team). Users the map does not name are left to the unknown-user rule.
    """
    if not owners:
        return {}
    refused: dict[str, Refusal] = {}
    for path, changers in sorted(changes.items()):
        user = user_of(path)
        if user is None or user not in owners:
            continue  # strays and unknown users have rules of their own
        allowed = tuple(owners[user])
        if not changers:
            refused[path] = Refusal(path, user, unexplained_message(user))
            continue
        intruder = next((c for c in changers if c.author_email not in allowed), None)
        if intruder is not None:
            refused[path] = Refusal(path, user, ownership_message(user, intruder, allowed))
            continue
        unproven = next((why for c in changers if c.signature is not None and (why := signature_problem(
            user, *c.signature, c.sha, c.author, c.author_email, allowed))), None)
        if unproven is not None:
            refused[path] = Refusal(path, user, unproven)
    return refused

"""The sync shell: walk new commits on the tracked branch and record each in ONE transaction.

For every commit: which users' files changed (git diff-tree), those users' spec files at
the commit (one git ls-tree), parse them, ask syncplan.plan_user what changes, write the
changes, their events and the cursor together. A crash leaves the store at the last commit
fully recorded; the next run resumes there. Cost follows the size of the change (the
changed users' files), not the size of the tree.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from .errors import Problem, SpecError
from .gitsync import MODELS_DIR, CommitInfo, GitRepo, TreeFile, is_spec_path, user_of
from .spec import SpecPolicy, parse_spec, validate_user_id
from .store import Rejection, Store, iso, utc_now
from .syncplan import (ClearRejection, CreateModel, DeleteModel, MoveModel, RejectSpec, SpecFileState,
                       UpdateModel, plan_user)

log = logging.getLogger("argus.sync")

SYMLINK_MODE = "120000"
STRAY_USER = ""  # rejections of files that belong to no user directory
DELETED_BLOB = "(deleted)"  # the blob of a rejection that keeps a model whose file was deleted


@dataclass
class SyncResult:
    head: str | None = None
    commits: int = 0
    changes: int = 0
    resynced: bool = False
    outcome: str = "noop"        # noop | synced | resynced | empty

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def model_key_for(user_id: str, suffix: str, commit_sha: str) -> str:
    """Deterministic: rebuilding the store from the same history gives the same keys."""
    return "m-" + hashlib.sha256(f"{user_id}/{suffix}@{commit_sha}".encode()).hexdigest()[:16]


@dataclass
class Syncer:
    store: Store
    repo: GitRepo
    branch: str
    policy: SpecPolicy
    clock: Callable[[], datetime] = utc_now
    # user -> allowed author emails; empty: no ownership checks (issue: write path)
    owners: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def sync_once(self) -> SyncResult:
        head = self.repo.branch_head(self.branch)
        result = SyncResult(head=head)
        if head is None:
            result.outcome = "empty"
            return result
        cursor = self.store.cursor()
        since = cursor[1] if cursor and cursor[0] == self.branch else None
        if since == head:
            return result
        if since is not None and not (self.repo.has_commit(since) and self.repo.is_ancestor(since, head)):
            log.warning("history of %s was rewritten (%s is not an ancestor of %s): resyncing from the tree",
                        self.branch, since[:12], head[:12])
            result.changes = self._resync(self.repo.commit_info(head), previous=since)
            result.commits, result.resynced, result.outcome = 1, True, "resynced"
            return result
        for commit in self.repo.commits(since, head):
            result.changes += self._record_commit(commit)
            result.commits += 1
        result.outcome = "synced"
        return result

    # -- one commit ------------------------------------------------------------------------------

    def _record_commit(self, commit: CommitInfo) -> int:
        changed = self.repo.changed_paths(commit.parent, commit.sha)
        users = sorted({u for u in (user_of(p) for p in changed) if u is not None})
        strays = sorted(p for p in changed if user_of(p) is None)
        pathspecs = [f"{MODELS_DIR}/{u}/" for u in users] + strays
        files = self.repo.tree_files(commit.sha, pathspecs) if pathspecs else []
        return self._record(commit, users, files, strays, set(changed), event=None)

    def _resync(self, commit: CommitInfo, previous: str) -> int:
        files = self.repo.tree_files(commit.sha)
        users = {u for u in (user_of(f.path) for f in files) if u is not None}
        users |= {m.user_id for m in self.store.list_models()}
        users |= {r.user_id for r in self.store.rejections() if r.user_id != STRAY_USER}
        strays = sorted({f.path for f in files if user_of(f.path) is None} |
                        {r.spec_path for r in self.store.rejections(STRAY_USER)})
        event = ("HISTORY_REWRITTEN", {"previous": previous, "head": commit.sha})
        # A rewritten history has no trustworthy "who changed what": ownership is not re-judged.
        return self._record(commit, sorted(users), files, strays, set(), event=event)

    def _record(self, commit: CommitInfo, users: list[str], files: list[TreeFile], strays: list[str],
                changed: set[str], event: tuple[str, dict] | None) -> int:
        by_user: dict[str, list[TreeFile]] = {u: [] for u in users}
        for f in files:
            user = user_of(f.path)
            if user in by_user and is_spec_path(f.path):
                by_user[user].append(f)
        stray_present = {f.path: f for f in files if f.path in strays}
        # One `git cat-file --batch` for every spec this commit needs, read before the write lock.
        blobs = self.repo.read_blobs([f.blob for fs in by_user.values() for f in fs if f.mode != SYMLINK_MODE],
                                     self.policy.max_spec_bytes)
        now = iso(self.clock())
        count = 0
        with self.store.transaction():
            if event is not None:
                self.store.append_event(event[0], event[1], now=now)
            for user in users:
                count += self._record_user(commit, user, by_user[user], changed, blobs, now)
            for path in strays:
                count += self._record_stray(commit, path, stray_present.get(path), now)
            self.store.set_cursor(self.branch, commit.sha, now)
        return count

    def _record_user(self, commit: CommitInfo, user: str, tree: list[TreeFile], changed: set[str],
                     blobs: dict[str, bytes], now: str) -> int:
        changes = self.plan_user_at(commit, user, tree, changed, blobs)
        for change in changes:
            self._apply(change, commit, now)
        return len(changes)

    def plan_user_at(self, commit: CommitInfo, user: str, tree: list[TreeFile], changed: set[str],
                     blobs: dict[str, bytes]) -> list:
        """What recording this commit would change for one user (reads the store, writes nothing)."""
        try:
            validate_user_id(user)
            user_problem = None
        except ValueError as exc:
            user_problem = str(exc)
        if user_problem is None and self.owners and user not in self.owners:
            user_problem = (f"user {user!r} is not known to this platform; an operator adds users "
                            "to the config's users: section")
        states = [self._file_state(f, user, user_problem, blobs) for f in tree]
        extra = self._ownership_problems(commit, user, tree, changed)
        models = self.store.live_models_of(user)
        rejections = {r.spec_path: (r.blob_sha, tuple(r.problems)) for r in self.store.rejections(user)}
        states += self._refused_deletions(commit, user, tree, changed, models, rejections)
        return plan_user(user, states, models, rejections, commit.committed_at, self.policy, extra)

    def _ownership_problems(self, commit: CommitInfo, user: str, tree: list[TreeFile],
                            changed: set[str]) -> dict[str, tuple[str, ...]]:
        if self._allowed(commit, user):
            return {}
        # Refuse only what this commit changed: files that were fine stay as they were.
        message = self._ownership_message(commit, user)
        return {f.path: (f"{f.path}:1:1: {message}",) for f in tree if f.path in changed}

    def _refused_deletions(self, commit: CommitInfo, user: str, tree: list[TreeFile], changed: set[str],
                           models: list, rejections: dict) -> list[SpecFileState]:
        """A spec deleted by someone not allowed to: its model stays, as if the file were
        still there but broken, until the file comes back (a revert); the owner then deletes
        it in a commit of their own."""
        present = {f.path for f in tree}
        kept = []
        for model in models:
            path = model.spec_path
            if path in present or model.state == "DELETING":
                continue
            if rejections.get(path, ("",))[0] == DELETED_BLOB:  # refused before: stays refused
                kept.append(SpecFileState(path, DELETED_BLOB, "", None,
                                          tuple(Problem(path, 1, 1, p.split(": ", 1)[-1]) for p in rejections[path][1])))
            elif path in changed and not self._allowed(commit, user):
                message = self._ownership_message(commit, user)
                kept.append(SpecFileState(path, DELETED_BLOB, "", None, (Problem(path, 1, 1, message),)))
        return kept

    def _allowed(self, commit: CommitInfo, user: str) -> bool:
        allowed = self.owners.get(user)
        return not self.owners or allowed is None or commit.author_email in allowed

    def _ownership_message(self, commit: CommitInfo, user: str) -> str:
        allowed = self.owners.get(user, ())
        return (f"commit {commit.sha[:12]} by {commit.author} may not change models.d/{user}/ "
                f"(allowed: {', '.join(allowed) or 'nobody'}); revert it and let {user} push the change")

    def _file_state(self, f: TreeFile, user: str, user_problem: str | None, blobs: dict[str, bytes]) -> SpecFileState:
        if user_problem is not None:
            return SpecFileState(f.path, f.blob, "", None, (Problem(f.path, 1, 1, user_problem),))
        if f.mode == SYMLINK_MODE:
            return SpecFileState(f.path, f.blob, "", None,
                                 (Problem(f.path, 1, 1, "symlinks are not allowed in models.d; commit the file itself"),))
        data = blobs[f.blob]
        try:
            parsed = parse_spec(f.path, data, user, self.policy)
        except SpecError as exc:
            return SpecFileState(f.path, f.blob, data.decode("utf-8", "replace"), None, tuple(exc.problems))
        return SpecFileState(f.path, f.blob, data.decode("utf-8"), parsed)

    def _record_stray(self, commit: CommitInfo, path: str, present: TreeFile | None, now: str) -> int:
        existing = {r.spec_path: r for r in self.store.rejections(STRAY_USER)}
        if present is None or not is_spec_path(path):
            if path in existing:
                self._apply(ClearRejection(path, None), commit, now)
                return 1
            return 0
        problem = f"{path}:1:1: specs live at {MODELS_DIR}/<user_id>/<name>.yaml; move this file there"
        old = existing.get(path)
        if old is not None and (old.blob_sha, tuple(old.problems)) == (present.blob, (problem,)):
            return 0
        self._apply(RejectSpec(STRAY_USER, path, present.blob, (problem,), None), commit, now)
        return 1

    def plan_tree(self, sha: str) -> list:
        """`argusctl diff`: what syncing the tree at `sha` would change, as one step from the
        store's state (like a resync; ownership is judged per commit, so not here)."""
        commit = self.repo.commit_info(sha)
        files = self.repo.tree_files(sha)
        users = {u for u in (user_of(f.path) for f in files) if u is not None}
        users |= {m.user_id for m in self.store.list_models()}
        users |= {r.user_id for r in self.store.rejections() if r.user_id != STRAY_USER}
        tree = {u: [f for f in files if user_of(f.path) == u and is_spec_path(f.path)] for u in users}
        blobs = self.repo.read_blobs([f.blob for fs in tree.values() for f in fs if f.mode != SYMLINK_MODE],
                                     self.policy.max_spec_bytes)
        changes = []
        for user in sorted(users):
            changes += self.plan_user_at(commit, user, tree[user], set(), blobs)
        return changes

    # -- writing a change ------------------------------------------------------------------------

    def _apply(self, change, commit: CommitInfo, now: str) -> None:
        store = self.store
        who = {"commit": commit.sha, "author": commit.author}
        if isinstance(change, CreateModel):
            r = change.resolved
            key = model_key_for(r.user_id, r.model_id_suffix, commit.sha)
            store.insert_model(model_key=key, user_id=r.user_id, model_id_suffix=r.model_id_suffix,
                               model_id=r.model_id, spec_path=change.spec_path, spec_yaml=change.spec_yaml,
                               resolved=r.to_dict(), commit_sha=commit.sha, commit_author=commit.author,
                               created_at=iso(commit.committed_at), now=now)
            store.append_event("CREATED", {**who, "model_id": r.model_id, "spec_path": change.spec_path,
                                           "num_replicas": r.num_replicas, "gpus_per_replica": r.gpus_per_replica},
                               now=now, model_key=key, user_id=r.user_id, spec_path=change.spec_path)
            store.append_event("QUEUED", {"generation": 1}, now=now, model_key=key, user_id=r.user_id)
        elif isinstance(change, UpdateModel):
            store.update_model_spec(change.model_key, spec_path=change.spec_path, spec_yaml=change.spec_yaml,
                                    resolved=change.resolved.to_dict(), commit_sha=commit.sha,
                                    commit_author=commit.author, now=now)
            row = store.get_model(change.model_key)
            store.append_event(change.kind.upper(), {**who, "generation": row.generation, "changes": change.changes},
                               now=now, model_key=change.model_key, user_id=row.user_id, spec_path=change.spec_path)
            store.append_event("QUEUED", {"generation": row.generation}, now=now, model_key=change.model_key,
                               user_id=row.user_id)
        elif isinstance(change, MoveModel):
            store.set_spec_path(change.model_key, change.spec_path, now)
            store.append_event("MOVED", {**who, "spec_path": change.spec_path}, now=now,
                               model_key=change.model_key, spec_path=change.spec_path)
        elif isinstance(change, DeleteModel):
            store.set_state(change.model_key, "DELETING", now=now, commit_sha=commit.sha,
                            commit_author=commit.author)
            store.append_event("DELETE_REQUESTED", {**who, "spec_path": change.spec_path}, now=now,
                               model_key=change.model_key, spec_path=change.spec_path)
        elif isinstance(change, RejectSpec):
            store.set_rejection(Rejection(change.spec_path, change.user_id, change.blob, commit.sha, commit.author,
                                          list(change.problems), now))
            store.append_event("REJECTED", {**who, "problems": list(change.problems),
                                            "kept_last_good_spec": change.model_key is not None},
                               now=now, model_key=change.model_key, user_id=change.user_id or None,
                               spec_path=change.spec_path)
        elif isinstance(change, ClearRejection):
            store.clear_rejection(change.spec_path)
            store.append_event("REJECTION_CLEARED", who, now=now, model_key=change.model_key,
                               spec_path=change.spec_path)
        else:  # pragma: no cover - plan_user returns only the types above
            raise TypeError(change)
        log.info("%s %s", type(change).__name__, getattr(change, "spec_path", ""))

"""The sync shell: walk new commits on the tracked branch and record each in ONE transaction.

For every commit: which users' files changed (git diff-tree), those users' spec files at
the commit (one git ls-tree), the judge's verdict on them (daemon/verdicts.py, core/verdict.py),
what that changes (sync/plan.py's plan_user), then the changes, their events and the cursor
written together. A crash leaves the store at the last commit
fully recorded; the next run resumes there. Cost follows the size of the change (the
changed users' files), not the size of the tree.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from daemon.core import layout
from daemon.core.layout import FILE_MODES, MODELS_DIR, user_of
from daemon.core.ownership import Changer, Refusal, ownership_refusals
from daemon.core.records import ModelRow, Rejection, iso
from daemon.core.spec import SpecPolicy
from daemon.core.states import EventType, ModelState, StrEnum
from daemon.core.verdict import TreeEntry, UserFacts, known_user
from daemon.errors import GitError, Problem
from daemon.gitrepo import CommitInfo, GitRepo, TreeFile, blob_id
from daemon.store import Store, utc_now
from daemon.sync import ids
from daemon.sync.plan import (Change, ClearRejection, CreateModel, DeleteModel, MoveModel, RejectSpec, UpdateModel,
                              ownership_holds, plan_user)
from daemon.verdicts import judge_files

log = logging.getLogger("argus.sync")

STRAY_USER = ""  # rejections of files that belong to no user directory


class SyncOutcome(StrEnum):
    NOOP = "noop"            # the branch has not moved
    EMPTY = "empty"          # the branch does not exist yet
    SYNCED = "synced"        # new commits recorded one by one
    RESYNCED = "resynced"    # the history was rewritten: recorded from the tree


@dataclass
class SyncResult:
    head: str | None = None
    commits: int = 0
    changes: int = 0
    outcome: SyncOutcome = SyncOutcome.NOOP


@dataclass(frozen=True)
class LedgerRead:
    commit: str | None   # what refs/argus/ids named when read (None: no ledger yet)
    ledger: ids.Ledger


_LEDGER_TROUBLE: dict[str, str | None] = {}   # repo -> the ledger problem last logged (logged once)


def _ledger_trouble(repo: str, message: str | None) -> None:
    if message is not None and _LEDGER_TROUBLE.get(repo) != message:
        log.error("%s", message)
    elif message is None and _LEDGER_TROUBLE.get(repo) is not None:
        log.info("the id ledger of %s is written again", repo)
    _LEDGER_TROUBLE[repo] = message


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
            result.outcome = SyncOutcome.EMPTY
            return result
        ledger = self._read_ledger()
        cursor = self.store.cursor()
        since = cursor[1] if cursor and cursor[0] == self.branch else None
        if since == head:
            self._keep_ledger(ledger)  # models DELETED since, or a ledger that is missing or stale
            return result
        if since is not None and not (self.repo.has_commit(since) and self.repo.is_ancestor(since, head)):
            log.warning("history of %s was rewritten (%s is not an ancestor of %s): resyncing from the tree",
                        self.branch, since[:12], head[:12])
            result.changes = self._resync(self.repo.commit_info(head), previous=since)
            result.commits, result.outcome = 1, SyncOutcome.RESYNCED
            self._keep_ledger(ledger)
            return result
        previous = since
        for commit in self.repo.commits(since, head):
            result.changes += self._record_commit(previous, commit, ledger if commit.sha == head else None)
            result.commits += 1
            previous = commit.sha
        result.outcome = SyncOutcome.SYNCED
        self._keep_ledger(ledger)
        return result

    # -- the id ledger (sync/ids.py) ----------------------------------------------------------------

    def _read_ledger(self) -> LedgerRead:
        """The repo's id ledger (an empty one when there is none). Raises GitError only when the
        repo itself is gone, like every other read of a sync."""
        commit, text = self.repo.read_ref_file(ids.LEDGER_REF, ids.LEDGER_FILE)
        if commit is None:
            ledger = ids.parse(None)
        else:  # a ledger commit without the file is not a ledger: written anew
            ledger = ids.parse(text.encode() if text is not None else b"")
        if ledger.problems:
            log.warning("the id ledger %s in %s: %s (left out; argusd writes it anew)", ids.LEDGER_REF,
                        self.repo.path, "; ".join(ledger.problems[:5]))
        return LedgerRead(commit, ledger)

    def _live_models(self) -> list[ids.LiveModel]:
        return [ids.LiveModel(user, suffix, ids.Identity(key, model_id, created))
                for user, suffix, key, model_id, created in self.store.identities()]

    def _restore_ids(self, ledger: LedgerRead, now: str) -> None:
        """A rebuilt store at the branch's head: each model takes back the key and public id the
        ledger holds for it, so clients and the running Serve apps find it under the same names."""
        for a in ids.adoptions(self._live_models(), ledger.ledger.entries, self.store.has_model_key):
            self.store.rekey_model(a.current, new_key=a.kept.model_key, model_id=a.kept.model_id,
                                   created_at=a.kept.created_at, now=now)
            self.store.append_event(EventType.ID_RESTORED, {
                "model_id": a.kept.model_id, "was": a.was,
                "message": f"kept public id {a.kept.model_id} from the id ledger ({ids.LEDGER_REF}); "
                           f"the rewritten history alone gives {a.was}"},
                now=now, model_key=a.kept.model_key, user_id=a.owner[0])
            log.info("rebuilt store: %s keeps its public id %s (the history alone gives %s)", a.owner[1],
                     a.kept.model_id, a.was)

    def _keep_ledger(self, read: LedgerRead) -> None:
        """Write the live models' ids to the ledger when they differ from it. Never while a store is
        being rebuilt: its ids are not the ones clients use until it reaches the head."""
        if self.store.rebuilding():
            return
        # Only what the ledger accepts back: a row it would leave out must not make argusd write
        # the ledger again on every tick (each write wakes the ref watcher).
        entries = ids.parse(ids.render(ids.snapshot(self._live_models()))).entries
        if entries == read.ledger.entries and not read.ledger.problems and read.commit is not None:
            return
        try:
            self.repo.write_ref_file(ids.LEDGER_REF, ids.LEDGER_FILE, ids.render(entries).decode(), read.commit,
                                     f"argusd: the ids of {len(entries)} model(s)")
        except GitError as exc:
            if not os.path.isdir(self.repo.path):
                raise  # the repo is gone: the sync loop reports that, once
            _ledger_trouble(self.repo.path, f"cannot write the id ledger {ids.LEDGER_REF} in {self.repo.path} "
                            f"({exc}); let argusd's user write the repository (objects/ and refs/), or a store "
                            "rebuilt after a rewritten history gives models new ids (docs/operating.md)")
            return
        _ledger_trouble(self.repo.path, None)

    # -- one commit ------------------------------------------------------------------------------

    def _record_commit(self, previous: str | None, commit: CommitInfo, ledger: LedgerRead | None = None) -> int:
        # Against the step before, not the first parent: a branch merged in by a fast-forward
        # is one step, judged by who made each path what it is (core.ownership).
        changes = self._changes(previous, commit.sha)
        users = sorted({u for u in (user_of(p) for p in changes) if u is not None})
        strays = sorted(p for p in changes if user_of(p) is None)
        pathspecs = [f"{MODELS_DIR}/{u}/" for u in users] + strays
        files = self.repo.tree_files(commit.sha, pathspecs) if pathspecs else []
        return self._record(commit, users, files, strays, ownership_refusals(changes, self.owners), event=None,
                            ledger=ledger)

    def _changes(self, previous: str | None, sha: str) -> dict[str, list[Changer]]:
        if not self.owners:  # no ownership checks: who changed a path does not matter
            return {p: [] for p in self.repo.changed_paths(previous, sha)}
        return self.repo.changers(previous, sha)

    def _resync(self, commit: CommitInfo, previous: str) -> int:
        files = self.repo.tree_files(commit.sha)
        users = {u for u in (user_of(f.path) for f in files) if u is not None}
        users |= {m.user_id for m in self.store.list_models()}
        users |= {r.user_id for r in self.store.rejections() if r.user_id != STRAY_USER}
        strays = sorted({f.path for f in files if user_of(f.path) is None} |
                        {r.spec_path for r in self.store.rejections(STRAY_USER)})
        event = (EventType.HISTORY_REWRITTEN, {"previous": previous, "head": commit.sha})
        # The same ownership rule as any step: what the rewrite changed, credited to the
        # commits that made it; a change no commit explains (a reset) is refused.
        if not self.owners:
            refusals: dict[str, Refusal] = {}
        elif self.repo.has_commit(previous):
            refusals = ownership_refusals(self.repo.changers(previous, commit.sha), self.owners)
        else:  # the old history is gone: every path that differs from what the store accepted
            refusals = ownership_refusals({p: [] for p in self._differs_from_store(files)}, self.owners)
        return self._record(commit, sorted(users), files, strays, refusals, event=event)

    def _differs_from_store(self, files: list[TreeFile]) -> set[str]:
        accepted = {m.spec_path: blob_id(m.spec_yaml.encode()) for m in self.store.list_models()}
        accepted.update({r.spec_path: r.blob_sha for r in self.store.rejections()})
        tree = {f.path: f.blob for f in files if layout.is_judged(f.path, f.mode)}
        return {p for p, blob in tree.items() if accepted.get(p) != blob} | (accepted.keys() - tree.keys())

    def _record(self, commit: CommitInfo, users: list[str], files: list[TreeFile], strays: list[str],
                refusals: dict[str, Refusal], event: tuple[str, dict] | None, ledger: LedgerRead | None = None) -> int:
        """Record one step in one transaction. `ledger`: this step is the branch's head; a store
        being rebuilt takes back the ledger's ids in the same transaction."""
        by_user: dict[str, list[TreeFile]] = {u: [] for u in users}
        for f in files:
            user = user_of(f.path)
            if user in by_user and layout.is_judged(f.path, f.mode):
                by_user[user].append(f)
        stray_present = {f.path: f for f in files if f.path in strays}
        # One `git cat-file --batch` for every spec this commit needs, read before the write lock.
        blobs = self.repo.read_blobs([f.blob for fs in by_user.values() for f in fs if f.mode in FILE_MODES],
                                     self.policy.max_spec_bytes)
        now = iso(self.clock())
        count = 0
        with self.store.transaction():
            if self.store.cursor() is None:  # a new store: built from the history, ids from the ledger at the head
                self.store.mark_rebuilding(now)
            if event is not None:
                self.store.append_event(event[0], event[1], now=now)
            if commit.committed_at is None:
                # A date no public id can carry (before 1970, after 9999): argusd's clock stands in.
                self.store.append_event(EventType.COMMIT_DATE_REFUSED, {"commit": commit.sha, "author": commit.author,
                                                                "committer_time": commit.raw_time, "used": now}, now=now)
            for user in users:
                count += self._record_user(commit, user, by_user[user], refusals, blobs, now)
            for path in strays:
                count += self._record_stray(commit, path, stray_present.get(path), now)
            if ledger is not None and self.store.rebuilding():
                self._restore_ids(ledger, now)
                self.store.rebuilt()
            self.store.set_cursor(self.branch, commit.sha, now)
        return count

    def _record_user(self, commit: CommitInfo, user: str, tree: list[TreeFile], refusals: dict[str, Refusal],
                     blobs: dict[str, bytes], now: str) -> int:
        changes = self.plan_user_at(commit, user, tree, refusals, blobs)
        for change in changes:
            self._apply(change, commit, now)
        return len(changes)

    def plan_user_at(self, commit: CommitInfo, user: str, tree: list[TreeFile], refusals: dict[str, Refusal],
                     blobs: dict[str, bytes], models: list[ModelRow] | None = None,
                     on_record: dict[str, Rejection] | None = None) -> list[Change]:
        """What recording this commit would change for one user (reads the store, writes nothing;
        `models` / `on_record`: the user's live models and rejections, when already read)."""
        if on_record is None:
            on_record = {r.spec_path: r for r in self.store.rejections(user)}
        if models is None:
            models = self.store.live_models_of(user)
        refused = ownership_holds([(f.path, f.blob) for f in tree],
                                        {path: r.message for path, r in refusals.items()}, models, on_record)
        facts = UserFacts(user, tuple(TreeEntry(f.path, f.blob, f.mode, blobs.get(f.blob)) for f in tree),
                          known=known_user(user, self.owners), refused=refused,
                          recorded={m.model_id_suffix: m.spec_path for m in models})
        verdicts = judge_files(facts, self.policy, log=log)
        rejections = {path: (r.blob_sha, tuple(r.problems)) for path, r in on_record.items()}
        return plan_user(user, verdicts, models, rejections, self._created_time(commit), self.policy)

    def _created_time(self, commit: CommitInfo) -> datetime:
        return commit.committed_at or self.clock()

    def _record_stray(self, commit: CommitInfo, path: str, present: TreeFile | None, now: str) -> int:
        existing = {r.spec_path: r for r in self.store.rejections(STRAY_USER)}
        message = layout.stray_problem(path, present.mode) if present is not None else None
        if message is None:
            if path in existing:
                self._apply(ClearRejection(path, None), commit, now)
                return 1
            return 0
        problem = Problem(path, 1, 1, message)
        old = existing.get(path)
        if old is not None and (old.blob_sha, tuple(old.problems)) == (present.blob, (problem,)):
            return 0
        self._apply(RejectSpec(STRAY_USER, path, present.blob, (problem,), None), commit, now)
        return 1

    def plan_tree(self, sha: str) -> list[Change]:
        """`argusctl diff`: what syncing the tree at `sha` would change, as one step from the
        store's state (like a resync; ownership is judged per commit, so not here)."""
        commit = self.repo.commit_info(sha)
        files = self.repo.tree_files(sha)
        models: dict[str, list[ModelRow]] = {}
        for model in self.store.list_models():  # one read each, not one per user
            models.setdefault(model.user_id, []).append(model)
        on_record: dict[str, dict[str, Rejection]] = {}
        for rejection in self.store.rejections():
            on_record.setdefault(rejection.user_id, {})[rejection.spec_path] = rejection
        users = {u for u in (user_of(f.path) for f in files) if u is not None}
        users |= models.keys()
        users |= on_record.keys() - {STRAY_USER}
        tree: dict[str, list[TreeFile]] = {u: [] for u in users}
        for f in files:  # one pass: grouping per user by scanning the tree per user was quadratic
            user = user_of(f.path)
            if user is not None and layout.is_judged(f.path, f.mode):
                tree[user].append(f)
        # A user whose files are byte for byte what the store accepted has nothing to change
        # (a sync re-reads only the users a commit touched, too): their specs are not parsed.
        changed = sorted(u for u in users if not _as_accepted(tree[u], models.get(u, []), on_record.get(u, {})))
        blobs = self.repo.read_blobs([f.blob for u in changed for f in tree[u] if f.mode in FILE_MODES],
                                     self.policy.max_spec_bytes)
        changes = []
        for user in changed:
            changes += self.plan_user_at(commit, user, tree[user], {}, blobs, models.get(user, []),
                                         on_record.get(user, {}))
        return changes

    # -- writing a change ------------------------------------------------------------------------

    def _apply(self, change: Change, commit: CommitInfo, now: str) -> None:
        store = self.store
        who = {"commit": commit.sha, "author": commit.author}
        if isinstance(change, CreateModel):
            r = change.resolved
            key = model_key_for(r.user_id, r.model_id_suffix, commit.sha)
            store.insert_model(model_key=key, user_id=r.user_id, model_id_suffix=r.model_id_suffix,
                               model_id=r.model_id, spec_path=change.spec_path, spec_yaml=change.spec_yaml,
                               resolved=r.to_dict(), commit_sha=commit.sha, commit_author=commit.author,
                               created_at=iso(self._created_time(commit)), now=now)
            store.append_event(EventType.CREATED, {**who, "model_id": r.model_id, "spec_path": change.spec_path,
                                           "num_replicas": r.num_replicas, "gpus_per_replica": r.gpus_per_replica},
                               now=now, model_key=key, user_id=r.user_id, spec_path=change.spec_path)
            store.append_event(EventType.QUEUED, {"generation": 1}, now=now, model_key=key, user_id=r.user_id)
        elif isinstance(change, UpdateModel):
            store.update_model_spec(change.model_key, spec_path=change.spec_path, spec_yaml=change.spec_yaml,
                                    resolved=change.resolved.to_dict(), commit_sha=commit.sha,
                                    commit_author=commit.author, now=now)
            row = store.get_model(change.model_key)
            store.append_event(EventType(change.kind.upper()), {**who, "generation": row.generation, "changes": change.changes},
                               now=now, model_key=change.model_key, user_id=row.user_id, spec_path=change.spec_path)
            store.append_event(EventType.QUEUED, {"generation": row.generation}, now=now, model_key=change.model_key,
                               user_id=row.user_id)
        elif isinstance(change, MoveModel):
            store.set_spec_path(change.model_key, change.spec_path, now)
            store.append_event(EventType.MOVED, {**who, "spec_path": change.spec_path}, now=now,
                               model_key=change.model_key, spec_path=change.spec_path)
        elif isinstance(change, DeleteModel):
            store.set_state(change.model_key, ModelState.DELETING, now=now, commit_sha=commit.sha,
                            commit_author=commit.author)
            store.append_event(EventType.DELETE_REQUESTED, {**who, "spec_path": change.spec_path}, now=now,
                               model_key=change.model_key, spec_path=change.spec_path)
        elif isinstance(change, RejectSpec):
            store.set_rejection(Rejection(change.spec_path, change.user_id, change.blob, commit.sha, commit.author,
                                          list(change.problems), now, change.kind))
            store.append_event(EventType.REJECTED, {**who, "problems": [p.to_dict() for p in change.problems],
                                            "kept_last_good_spec": change.model_key is not None},
                               now=now, model_key=change.model_key, user_id=change.user_id or None,
                               spec_path=change.spec_path)
        elif isinstance(change, ClearRejection):
            store.clear_rejection(change.spec_path)
            store.append_event(EventType.REJECTION_CLEARED, who, now=now, model_key=change.model_key,
                               spec_path=change.spec_path)
        else:  # pragma: no cover - plan_user returns only the types above
            raise TypeError(change)
        log.info("%s %s", type(change).__name__, getattr(change, "spec_path", ""))



def _as_accepted(files: list[TreeFile], models: list[ModelRow], on_record: dict[str, Rejection]) -> bool:
    """Whether a user's spec files are exactly what the store holds for them (live models'
    specs, and rejected files as they were rejected)."""
    accepted = {m.spec_path: blob_id(m.spec_yaml.encode()) for m in models if m.state != ModelState.DELETING}
    accepted.update({path: r.blob_sha for path, r in on_record.items()})
    return {f.path: f.blob for f in files} == accepted

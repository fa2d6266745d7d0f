"""The state store: SQLite in WAL mode, the daemon's memory of what it saw and did.

Writers (the daemon) use `transaction()`; readers (argusctl status/logs) open the file
read-only and never block or get blocked by the writer. Schema changes are forward
migrations keyed on `PRAGMA user_version`.

Upsert policy: a model is identified by (user_id, model_id suffix) while it
lives and keeps its `model_key` and public `model_id` for its whole life; a changed spec
bumps `generation` and re-queues it; an unchanged spec is a no-op with no event; a removed
spec moves it to DELETING; re-adding it while DELETING revives the same model; after
DELETED a new spec with the same suffix is a new model (new key, new timestamp).
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from daemon.core.records import Event, ModelRow, Rejection, RejectionKind, event_type
from daemon.core.records import iso, parse_iso  # noqa: F401 (the store's time format, read where rows are)
from daemon.core.states import EventType, ModelState, Role, known
from daemon.errors import NotFoundError, Problem, StoreError

STATES = tuple(ModelState)

MIGRATIONS: list[str] = [
    # 1: models, events, rejections, cursor
    """
    CREATE TABLE serve_models (
        model_key TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        model_id_suffix TEXT NOT NULL,
        model_id TEXT NOT NULL,
        spec_path TEXT NOT NULL,
        spec_yaml TEXT NOT NULL,
        resolved_json TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('QUEUED','DEPLOYING','RUNNING','FAILED','DELETING','DELETED')),
        error_summary TEXT,
        generation INTEGER NOT NULL DEFAULT 1,
        attempted_generation INTEGER,
        applied_generation INTEGER,
        commit_sha TEXT NOT NULL,
        commit_author TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE UNIQUE INDEX serve_models_live ON serve_models(user_id, model_id_suffix) WHERE state != 'DELETED';
    CREATE INDEX serve_models_model_id ON serve_models(model_id);
    CREATE INDEX serve_models_updated ON serve_models(updated_at);
    CREATE TABLE serve_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        model_key TEXT,
        user_id TEXT,
        spec_path TEXT,
        time TEXT NOT NULL,
        event_type TEXT NOT NULL,
        payload TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX serve_events_model ON serve_events(model_key, id);
    CREATE INDEX serve_events_path ON serve_events(spec_path, id);
    CREATE TABLE spec_rejections (
        spec_path TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        blob_sha TEXT NOT NULL,
        commit_sha TEXT NOT NULL,
        commit_author TEXT NOT NULL,
        problems TEXT NOT NULL,
        time TEXT NOT NULL
    );
    CREATE TABLE sync_cursor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        branch TEXT NOT NULL,
        commit_sha TEXT NOT NULL,
        synced_at TEXT NOT NULL
    );
    """,
    # 2: why a file is rejected: its content ('spec') or who changed it ('ownership'); an
    # ownership refusal stays until the file's owner changes the file
    """
    ALTER TABLE spec_rejections ADD COLUMN kind TEXT NOT NULL DEFAULT 'spec';
    CREATE INDEX spec_rejections_user ON spec_rejections(user_id);
    """,
    # 3: problems stay structured ({path, line, col, message}) in rejections and REJECTED
    # events; text is made only where they are shown
    lambda conn: _structure_problems(conn),
    # 4: what this store's argusd last saw of the cluster's lease (status names the active daemon)
    """
    CREATE TABLE daemon_lease (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        role    TEXT NOT NULL,
        me      TEXT NOT NULL,
        holder  TEXT,
        epoch   INTEGER,
        since   TEXT NOT NULL
    );
    """,
    # 5: a store being rebuilt from git (it began with no cursor) takes the public ids and model
    # keys of the repo's id ledger when it reaches the branch's head (sync/ids.py)
    """
    CREATE TABLE rebuild_pending (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        since   TEXT NOT NULL
    );
    """,
    # 6: this store's argusd instance id (daemon_instance). IF NOT EXISTS: argus before this
    # migration made the same table on first use, and such a store keeps its row (its id).
    """
    CREATE TABLE IF NOT EXISTS daemon_instance (
        id        INTEGER PRIMARY KEY CHECK (id = 1),
        instance  TEXT NOT NULL,
        host      TEXT NOT NULL,
        state_db  TEXT NOT NULL
    );
    """,
    # 7: a model may be SUSPENDED (its spec says so). SQLite cannot change a CHECK: the table is
    # made again with the new one and every row copied, in the migration's transaction.
    """
    CREATE TABLE serve_models_v7 (
        model_key TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        model_id_suffix TEXT NOT NULL,
        model_id TEXT NOT NULL,
        spec_path TEXT NOT NULL,
        spec_yaml TEXT NOT NULL,
        resolved_json TEXT NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('QUEUED','DEPLOYING','RUNNING','FAILED','SUSPENDED','DELETING','DELETED')),
        error_summary TEXT,
        generation INTEGER NOT NULL DEFAULT 1,
        attempted_generation INTEGER,
        applied_generation INTEGER,
        commit_sha TEXT NOT NULL,
        commit_author TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    INSERT INTO serve_models_v7 (model_key, user_id, model_id_suffix, model_id, spec_path, spec_yaml,
                                 resolved_json, state, error_summary, generation, attempted_generation,
                                 applied_generation, commit_sha, commit_author, created_at, updated_at)
        SELECT model_key, user_id, model_id_suffix, model_id, spec_path, spec_yaml, resolved_json, state,
               error_summary, generation, attempted_generation, applied_generation, commit_sha, commit_author,
               created_at, updated_at FROM serve_models;
    DROP TABLE serve_models;
    ALTER TABLE serve_models_v7 RENAME TO serve_models;
    CREATE UNIQUE INDEX serve_models_live ON serve_models(user_id, model_id_suffix) WHERE state != 'DELETED';
    CREATE INDEX serve_models_model_id ON serve_models(model_id);
    CREATE INDEX serve_models_updated ON serve_models(updated_at);
    """,
    # 8: the generation that serves a FAILED model beside its failed change (JSON of
    # serving.desired.Serving), so argusd can deploy it again when Serve loses it.
    """
    ALTER TABLE serve_models ADD COLUMN serving_json TEXT;
    """,
]

_LEGACY_PROBLEM = re.compile(r"^(?P<path>.*?):(?P<line>\d+):(?P<col>\d+): (?P<message>.*)$", re.S)


def _legacy_problem(text: str, path: str) -> dict:
    """A problem stored as "path:line:col: message" by argus before schema 3."""
    match = _LEGACY_PROBLEM.match(text)
    if match is None:
        return {"path": path, "line": 1, "col": 1, "message": text}
    return {**match.groupdict(), "line": int(match["line"]), "col": int(match["col"])}


def _structure_problems(conn: sqlite3.Connection) -> None:
    for path, problems in conn.execute("SELECT spec_path, problems FROM spec_rejections").fetchall():
        converted = [p if isinstance(p, dict) else _legacy_problem(p, path) for p in json.loads(problems)]
        conn.execute("UPDATE spec_rejections SET problems=? WHERE spec_path=?", (json.dumps(converted), path))
    for event_id, payload, spec_path in conn.execute(
            "SELECT id, payload, spec_path FROM serve_events WHERE event_type='REJECTED'").fetchall():
        data = json.loads(payload)
        data["problems"] = [p if isinstance(p, dict) else _legacy_problem(p, spec_path or "")
                            for p in data.get("problems", [])]
        conn.execute("UPDATE serve_events SET payload=? WHERE id=?", (json.dumps(data), event_id))


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _model_row(row: sqlite3.Row) -> ModelRow:
    data = dict(row)
    data["resolved"] = json.loads(data.pop("resolved_json"))
    serving = data.pop("serving_json", None)
    data["serving"] = json.loads(serving) if serving else None
    data["state"] = ModelState(data["state"])
    return ModelRow(**data)


def _event(row: sqlite3.Row) -> Event:
    data = dict(row)
    data["payload"] = json.loads(data["payload"])
    data["event_type"] = event_type(data["event_type"])
    return Event(**data)


REBUILD = ("stop argusd, move the file away and start argusd again: it rebuilds the store from git "
           "(docs/operating.md, 'Rebuilding the store')")


def unusable(path: str | None, exc: object) -> StoreError:
    """The one message for a store SQLite cannot read, with how to get a good one back."""
    where = f" {path}" if path else ""
    return StoreError(f"the state store{where} is not usable ({exc}); {REBUILD}")


_OPENING = threading.Lock()


def write_failed(path: str, exc: BaseException) -> StoreError:
    """The one message for a store argusd cannot write (a full disk, an I/O error): nothing is
    half written (each commit is one transaction), and every commit since is recorded later."""
    return StoreError(f"cannot write the state store {path} ({exc}): free space on its disk or fix the "
                      "I/O error; argusd retries, and records every commit since when it can write again")


class WriterLock:
    """One writer per store: argusd holds an exclusive lock on `<db>.lock` while it runs, so a
    second argusd (or an `argusd --once` beside the service) is refused instead of recording
    every commit again. The kernel drops the lock when the process dies, however it dies."""

    def __init__(self, db_path: str | os.PathLike):
        self.path = f"{db_path}.lock"
        self._fd: int | None = None

    def acquire(self) -> "WriterLock":
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot create the store's lock {self.path}: {exc.strerror}; check state.db "
                             "in the config and that this user may write there") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreError(f"another argusd (pid {holder}) is already writing the store {self.path[:-5]}; "
                             "stop it first (scripts/argusd_up.sh stop, systemctl stop argusd), or give this "
                             "one its own state.db") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Store:
    """One SQLite file. Not thread-safe: one Store per thread."""

    def __init__(self, conn: sqlite3.Connection, path: str):
        self.conn = conn
        self.path = path
        self._identity = _identity(path)

    def replaced(self) -> bool:
        """Whether the file was deleted or swapped since it was opened (writes would be lost)."""
        return _identity(self.path) != self._identity

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Store":
        """Open for writing, creating the file and migrating the schema as needed."""
        path = str(path)
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the state store {path}: {exc}; check state.db in the config") from None
        conn.row_factory = sqlite3.Row
        try:
            # One thread at a time: argusd's sync and reconcile threads both reopen a store
            # deleted under them, and two set-ups of one fresh file collide (WAL's switch:
            # "database is locked"; two migrations reading one version: "table already exists"),
            # each reported as an unusable store. No other process writes a store argusd holds
            # (WriterLock).
            with _OPENING:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
                store = cls(conn, path)
                store._migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise unusable(path, exc) from None
        return store

    @classmethod
    def open_readonly(cls, path: str | os.PathLike) -> "Store":
        """Open an existing store for reading; never creates or migrates anything."""
        path = str(path)
        if not os.path.exists(path):
            raise StoreError(f"no state store at {path}: start the daemon (argusd) to create it, "
                             "or point --config / state.db at the right file")
        try:
            conn = _connect_readonly(path)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            check = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise unusable(path, exc) from None
        if check != "ok":
            raise unusable(path, check)
        if version > len(MIGRATIONS):
            raise StoreError(f"the state store {path} has schema {version}, newer than this argus "
                             f"({len(MIGRATIONS)}); upgrade argusctl")
        if version < len(MIGRATIONS):
            raise StoreError(f"the state store {path} has schema {version}, older than this argus; "
                             "start argusd once to migrate it")
        return cls(conn, path)

    def close(self) -> None:
        self.conn.close()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"the state store {self.path} has schema {version}, newer than this argus "
                             f"({len(MIGRATIONS)}); upgrade argus")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # The version bump is inside the migration's own transaction, so a crash leaves
            # the store at the old version, not in between.
            if callable(script):
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    script(self.conn)
                    self.conn.execute(f"PRAGMA user_version={number}")
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
                self.conn.execute("COMMIT")
            else:  # executescript commits first
                self.conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version={number};\nCOMMIT;")

    @contextmanager
    def transaction(self) -> Iterator["Store"]:
        """All or nothing: the unit in which a commit is recorded."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    # -- models ------------------------------------------------------------------------------

    def insert_model(self, *, model_key: str, user_id: str, model_id_suffix: str, model_id: str, spec_path: str,
                     spec_yaml: str, resolved: dict[str, Any], commit_sha: str, commit_author: str,
                     created_at: str, now: str) -> None:
        self.conn.execute(
            "INSERT INTO serve_models (model_key, user_id, model_id_suffix, model_id, spec_path, spec_yaml,"
            " resolved_json, state, generation, commit_sha, commit_author, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'QUEUED', 1, ?, ?, ?, ?)",
            (model_key, user_id, model_id_suffix, model_id, spec_path, spec_yaml,
             json.dumps(resolved, sort_keys=True), commit_sha, commit_author, created_at, now))

    def update_model_spec(self, model_key: str, *, spec_path: str, spec_yaml: str, resolved: dict[str, Any],
                          commit_sha: str, commit_author: str, now: str, requeue: bool = True) -> None:
        """A new spec for a live model: bump the generation and (by default) queue it again."""
        self.conn.execute(
            "UPDATE serve_models SET spec_path=?, spec_yaml=?, resolved_json=?, commit_sha=?, commit_author=?,"
            " generation=generation+?, state=CASE WHEN ? THEN 'QUEUED' ELSE state END,"
            " error_summary=CASE WHEN ? THEN NULL ELSE error_summary END, updated_at=? WHERE model_key=?",
            (spec_path, spec_yaml, json.dumps(resolved, sort_keys=True), commit_sha, commit_author,
             1 if requeue else 0, requeue, requeue, now, model_key))

    def set_spec_path(self, model_key: str, spec_path: str, now: str) -> None:
        self.conn.execute("UPDATE serve_models SET spec_path=?, updated_at=? WHERE model_key=?",
                          (spec_path, now, model_key))

    def set_state(self, model_key: str, state: ModelState, *, error_summary: str | None = None, now: str,
                  commit_sha: str | None = None, commit_author: str | None = None) -> None:
        state = ModelState(state)  # a misspelt state fails here, not in SQLite's CHECK
        self.conn.execute(
            "UPDATE serve_models SET state=?, error_summary=?, updated_at=?,"
            " commit_sha=COALESCE(?, commit_sha), commit_author=COALESCE(?, commit_author) WHERE model_key=?",
            (state, error_summary, now, commit_sha, commit_author, model_key))

    def mark_attempted(self, model_key: str, generation: int) -> None:
        self.conn.execute("UPDATE serve_models SET attempted_generation=? WHERE model_key=?", (generation, model_key))

    def mark_applied(self, model_key: str, generation: int) -> None:
        self.conn.execute("UPDATE serve_models SET applied_generation=? WHERE model_key=?", (generation, model_key))

    def set_serving(self, model_key: str, serving: dict[str, Any] | None) -> None:
        """What serves a FAILED model beside its failure (None: nothing does)."""
        self.conn.execute("UPDATE serve_models SET serving_json=? WHERE model_key=?",
                          (json.dumps(serving, sort_keys=True) if serving is not None else None, model_key))

    def model_version(self, model_key: str) -> tuple[int, ModelState] | None:
        """(generation, state) of a model, for writes that must not overwrite a newer change."""
        row = self.conn.execute("SELECT generation, state FROM serve_models WHERE model_key=?", (model_key,)).fetchone()
        return (row["generation"], ModelState(row["state"])) if row else None

    def get_model(self, model_key: str) -> ModelRow:
        row = self.conn.execute("SELECT * FROM serve_models WHERE model_key=?", (model_key,)).fetchone()
        if row is None:
            raise NotFoundError(f"no model with key {model_key!r}")
        return _model_row(row)

    def list_models(self, *, user_id: str | None = None, include_deleted: bool = False,
                    states: tuple[ModelState, ...] | None = None, limit: int | None = None,
                    offset: int = 0) -> list[ModelRow]:
        """Ordered by updated_at (oldest first), then key, so output is stable."""
        where, args = [], []
        if user_id is not None:
            where.append("user_id=?")
            args.append(user_id)
        if states is not None:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(states)
        elif not include_deleted:
            where.append("state != 'DELETED'")
        sql = "SELECT * FROM serve_models"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY updated_at, model_key"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args.extend([limit, offset])
        return [_model_row(r) for r in self.conn.execute(sql, args)]

    def live_models_of(self, user_id: str) -> list[ModelRow]:
        """Every model of a user that is not DELETED (DELETING included: it can be revived)."""
        return self.list_models(user_id=user_id)

    def find_model(self, ref: str, *, user_id: str | None = None, include_deleted: bool = True) -> ModelRow:
        """A model by key, full public id, or suffix (unique among live models, or per --user)."""
        for column in ("model_key", "model_id"):
            # A public id comes back if a model is re-created within the same minute: live first.
            row = self.conn.execute(f"SELECT * FROM serve_models WHERE {column}=?"
                                    " ORDER BY state = 'DELETED', updated_at DESC LIMIT 1", (ref,)).fetchone()
            if row is not None:
                return _model_row(row)
        sql, args = "SELECT * FROM serve_models WHERE model_id_suffix=? AND state != 'DELETED'", [ref]
        if user_id is not None:
            sql += " AND user_id=?"
            args.append(user_id)
        rows = self.conn.execute(sql, args).fetchall()
        if len(rows) == 1:
            return _model_row(rows[0])
        if len(rows) > 1:
            ids = ", ".join(sorted(r["model_id"] for r in rows))
            raise NotFoundError(f"model {ref!r} is ambiguous ({ids}); give the full model id or --user")
        if include_deleted:
            sql = sql.replace("state != 'DELETED'", "state = 'DELETED'") + " ORDER BY updated_at DESC LIMIT 1"
            row = self.conn.execute(sql, args).fetchone()
            if row is not None:
                return _model_row(row)
        raise NotFoundError(f"no model {ref!r}; `argusctl status` lists the models")

    def has_model_key(self, model_key: str) -> bool:
        return self.conn.execute("SELECT 1 FROM serve_models WHERE model_key=?", (model_key,)).fetchone() is not None

    def identities(self) -> list[tuple[str, str, str, str, str]]:
        """(user_id, suffix, model_key, model_id, created_at) of every model not DELETED: the id
        ledger's view, read without parsing any spec."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT user_id, model_id_suffix, model_key, model_id, created_at FROM serve_models"
            " WHERE state != 'DELETED' ORDER BY user_id, model_id_suffix")]

    def rekey_model(self, model_key: str, *, new_key: str, model_id: str, created_at: str, now: str) -> None:
        """Give a model another key and public id (a rebuilt store taking back the ids clients use);
        its events follow it."""
        row = self.get_model(model_key)
        resolved = {**row.resolved, "model_id": model_id, "model_id_prefix": model_id[:-len(row.model_id_suffix) - 1]}
        # serving_json goes: its deployment is named by the old key (a rebuilt store has none anyway).
        self.conn.execute("UPDATE serve_models SET model_key=?, model_id=?, created_at=?, resolved_json=?, updated_at=?,"
                          " serving_json=NULL WHERE model_key=?", (new_key, model_id, created_at, json.dumps(resolved, sort_keys=True),
                                                 now, model_key))
        self.conn.execute("UPDATE serve_events SET model_key=? WHERE model_key=?", (new_key, model_key))

    # -- rebuilding from git -----------------------------------------------------------------

    def mark_rebuilding(self, now: str) -> None:
        self.conn.execute("INSERT OR IGNORE INTO rebuild_pending (id, since) VALUES (1, ?)", (now,))

    def rebuilding(self) -> bool:
        return self.conn.execute("SELECT 1 FROM rebuild_pending WHERE id=1").fetchone() is not None

    def rebuilt(self) -> None:
        self.conn.execute("DELETE FROM rebuild_pending")

    # -- events ------------------------------------------------------------------------------

    def append_event(self, event_type: EventType, payload: dict[str, Any] | None = None, *, now: str,
                     model_key: str | None = None, user_id: str | None = None,
                     spec_path: str | None = None) -> None:
        self.conn.execute(
            "INSERT INTO serve_events (model_key, user_id, spec_path, time, event_type, payload)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (model_key, user_id, spec_path, now, str(event_type), json.dumps(payload or {}, sort_keys=True)))

    def events(self, *, model_key: str | None = None, spec_path: str | None = None, after_id: int = 0,
               limit: int | None = None) -> list[Event]:
        """Events oldest first; for a model, also rejections of the file it lives in."""
        where, args = ["id > ?"], [after_id]
        if model_key is not None and spec_path is not None:
            where.append("(model_key=? OR (model_key IS NULL AND spec_path=?))")
            args.extend([model_key, spec_path])
        elif model_key is not None:
            where.append("model_key=?")
            args.append(model_key)
        elif spec_path is not None:
            where.append("spec_path=?")
            args.append(spec_path)
        sql = f"SELECT * FROM serve_events WHERE {' AND '.join(where)} ORDER BY id"
        if limit is not None:
            sql = f"SELECT * FROM ({sql.replace('ORDER BY id', 'ORDER BY id DESC')} LIMIT ?) ORDER BY id"
            args.append(limit)
        return [_event(r) for r in self.conn.execute(sql, args)]

    def last_event(self, model_key: str) -> Event | None:
        row = self.conn.execute("SELECT * FROM serve_events WHERE model_key=? ORDER BY id DESC LIMIT 1",
                                (model_key,)).fetchone()
        return _event(row) if row is not None else None

    def last_events(self) -> dict[str, Event]:
        """Each model's newest event, in one query (the reconciler reads them every tick)."""
        rows = self.conn.execute("SELECT e.* FROM serve_events e JOIN (SELECT MAX(id) AS id FROM serve_events"
                                 " WHERE model_key IS NOT NULL GROUP BY model_key) newest ON e.id = newest.id")
        return {row["model_key"]: _event(row) for row in rows}

    def last_events_of(self, event_types: tuple[EventType, ...]) -> dict[str, Event]:
        """Each model's newest event of these types, in one query."""
        marks = ",".join("?" * len(event_types))
        rows = self.conn.execute(f"SELECT e.* FROM serve_events e JOIN (SELECT MAX(id) AS id FROM serve_events"
                                 f" WHERE model_key IS NOT NULL AND event_type IN ({marks}) GROUP BY model_key)"
                                 " newest ON e.id = newest.id", tuple(str(t) for t in event_types))
        return {row["model_key"]: _event(row) for row in rows}

    def last_cluster_event(self, event_types: tuple[EventType, ...]) -> Event | None:
        """The newest of these events that belong to no model (the cluster's own)."""
        marks = ",".join("?" * len(event_types))
        row = self.conn.execute(f"SELECT * FROM serve_events WHERE model_key IS NULL AND event_type IN ({marks})"
                                " ORDER BY id DESC LIMIT 1", tuple(str(t) for t in event_types)).fetchone()
        return _event(row) if row is not None else None

    # -- the lease, as this store's argusd sees it ------------------------------------------------

    def set_lease_view(self, role: Role, me: str, holder: str | None, epoch: int | None, now: str) -> bool:
        """Record a change of role or holder; the same view again writes nothing."""
        current = self.lease_view()
        if current is not None and (current["role"], current["me"], current["holder"], current["epoch"]) == (
                role, me, holder, epoch):
            return False
        self.conn.execute("INSERT OR REPLACE INTO daemon_lease (id, role, me, holder, epoch, since)"
                          " VALUES (1, ?, ?, ?, ?, ?)", (Role(role).value, me, holder, epoch, now))
        return True

    def lease_view(self) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT role, me, holder, epoch, since FROM daemon_lease WHERE id=1").fetchone()
        return {**dict(row), "role": known(Role, row["role"])} if row is not None else None

    # -- rejections ----------------------------------------------------------------------------

    def set_rejection(self, rejection: Rejection) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO spec_rejections (spec_path, user_id, blob_sha, commit_sha, commit_author, problems,"
            " time, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (rejection.spec_path, rejection.user_id, rejection.blob_sha, rejection.commit_sha,
             rejection.commit_author, json.dumps([p.to_dict() for p in rejection.problems]), rejection.time,
             rejection.kind))

    def clear_rejection(self, spec_path: str) -> bool:
        return self.conn.execute("DELETE FROM spec_rejections WHERE spec_path=?", (spec_path,)).rowcount > 0

    def rejections(self, user_id: str | None = None) -> list[Rejection]:
        sql, args = "SELECT * FROM spec_rejections", []
        if user_id is not None:
            sql += " WHERE user_id=?"
            args.append(user_id)
        rows = self.conn.execute(sql + " ORDER BY spec_path", args).fetchall()
        return [Rejection(**{**dict(r), "problems": [Problem.from_dict(p) for p in json.loads(r["problems"])],
                             "kind": RejectionKind(r["kind"])})
                for r in rows]

    # -- cursor ------------------------------------------------------------------------------

    def cursor(self) -> tuple[str, str] | None:
        """(branch, commit_sha) of the last commit fully recorded, or None before the first sync."""
        row = self.conn.execute("SELECT branch, commit_sha FROM sync_cursor WHERE id=1").fetchone()
        return (row[0], row[1]) if row is not None else None

    def set_cursor(self, branch: str, commit_sha: str, now: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO sync_cursor (id, branch, commit_sha, synced_at) VALUES (1, ?, ?, ?)",
                          (branch, commit_sha, now))


def _identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _connect_readonly(path: str) -> sqlite3.Connection:
    """Read-only, also for a user who may not write the store's directory: SQLite needs the
    WAL index (`-shm`) for a WAL store, which such a user cannot create once argusd has
    stopped and removed it; with no writer running the file is complete, so it is read as
    immutable then."""
    def connect(uri: str) -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn

    try:
        return connect(f"file:{path}?mode=ro")
    except sqlite3.OperationalError:
        if os.access(os.path.dirname(path) or ".", os.W_OK) or os.path.exists(f"{path}-wal"):
            raise
        return connect(f"file:{path}?mode=ro&immutable=1")


# -- argusd's instance id (the lease's daemon name; helper "errors", self-contained) ----------------

def daemon_instance(store: Store, host: str, state_db: str, fresh: str) -> str:
    """This store's argusd instance id (daemon/serving/lease.py): `fresh` the first time, then
    the same on every start, so a restarted argusd knows its own lease. A store opened under
    another host name or path than the one it was made for (copied or moved) takes `fresh`
    instead: it is another daemon, and stands by behind the original's lease like any other
    (migration 6 makes the table; only argusd, under the writer lock, asks)."""
    conn = store.conn
    row = conn.execute("SELECT instance, host, state_db FROM daemon_instance WHERE id=1").fetchone()
    if row is not None and (row["host"], row["state_db"]) == (host, state_db):
        return row["instance"]
    remember_daemon_instance(store, fresh, host, state_db)
    return fresh


def remember_daemon_instance(store: Store, instance: str, host: str, state_db: str) -> None:
    """Record `instance` as this store's argusd instance, whatever the store held."""
    store.conn.execute("INSERT OR REPLACE INTO daemon_instance (id, instance, host, state_db) VALUES (1, ?, ?, ?)",
                       (instance, host, state_db))

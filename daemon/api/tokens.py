"""API tokens: `argusctl token create/list/revoke` write them, argusd's API reads them.

A token is shown once; only its SHA-256 is kept (tokens are 32 random bytes, so a plain hash
is enough: there is nothing to guess). Each token carries its user, whether it is an admin
token, and the git identity that user's API writes are committed with. The file is its own
SQLite database beside the state store, because rebuilding the store from git must not
lose anyone's tokens.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from daemon.errors import NotFoundError, StoreError, UsageError

TOKEN_PREFIX = "argus_"
SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    token_id    TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL,
    admin       INTEGER NOT NULL,
    git_name    TEXT NOT NULL,
    git_email   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
"""


@dataclass(frozen=True)
class Identity:
    """Who a request acts as, and how their commits are signed."""

    user: str
    admin: bool
    git_name: str
    git_email: str
    token_id: str = ""


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    user: str
    admin: bool
    git_name: str
    git_email: str
    created_at: str
    revoked_at: str | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def tokens_path(state_db: str) -> str:
    """Where the tokens live: beside the state store."""
    return os.path.join(os.path.dirname(state_db), "api-tokens.db")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenStore:
    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            self._conn.row_factory = sqlite3.Row
            self._conn.executescript(SCHEMA)
            os.chmod(self.path, 0o600)  # hashes only, but nobody else's business
        except (OSError, sqlite3.DatabaseError) as exc:
            raise StoreError(f"the API token file {self.path} is not usable ({exc}); move it away and "
                             "create the tokens again with `argusctl token create`") from None

    def close(self) -> None:
        self._conn.close()

    def create(self, user: str, admin: bool, git_name: str, git_email: str) -> tuple[TokenInfo, str]:
        """A new token for `user`; returns its record and the token itself (shown once)."""
        if not git_name.strip() or "@" not in git_email or any(c in git_name + git_email for c in "<>\n"):
            raise UsageError(f"git identity {git_name!r} <{git_email}> is not usable; pass --name and --email")
        token_id = secrets.token_hex(4)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        info = TokenInfo(token_id, user, admin, git_name, git_email, _now(), None)
        with self._lock:
            self._conn.execute("INSERT INTO api_tokens VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                               (token_id, _hash(token), user, int(admin), git_name, git_email, info.created_at))
        return info, token

    def list(self) -> list[TokenInfo]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM api_tokens ORDER BY created_at, token_id").fetchall()
        return [TokenInfo(r["token_id"], r["user_id"], bool(r["admin"]), r["git_name"], r["git_email"],
                          r["created_at"], r["revoked_at"]) for r in rows]

    def revoke(self, token_id: str) -> TokenInfo:
        with self._lock:
            changed = self._conn.execute("UPDATE api_tokens SET revoked_at=? WHERE token_id=? AND revoked_at IS NULL",
                                         (_now(), token_id)).rowcount
        if not changed:
            raise NotFoundError(f"no active token {token_id!r}; `argusctl token list` shows them")
        return next(t for t in self.list() if t.token_id == token_id)

    def authenticate(self, token: str) -> Identity | None:
        """The identity of a live token, or None."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        with self._lock:
            row = self._conn.execute("SELECT * FROM api_tokens WHERE token_hash=? AND revoked_at IS NULL",
                                     (_hash(token),)).fetchone()
        if row is None:
            return None
        return Identity(row["user_id"], bool(row["admin"]), row["git_name"], row["git_email"], row["token_id"])

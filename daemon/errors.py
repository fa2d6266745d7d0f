"""Domain errors. The engine raises these; the CLI maps them to messages and exit codes."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class ProblemKind(str, Enum):
    """What sort of mistake a problem is (the HTTP API answers 400, 422 and 403 by it)."""

    SYNTAX = "syntax"        # the file is not YAML argus reads
    INVALID = "invalid"      # a field is missing, mistyped or over a limit
    FORBIDDEN = "forbidden"  # it reaches outside the user's own roots


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one input file, at a 1-based line and column."""

    path: str
    line: int
    col: int
    message: str
    kind: ProblemKind = field(default=ProblemKind.INVALID, compare=False)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"

    def to_dict(self) -> dict:
        return {"path": self.path, "line": self.line, "col": self.col, "message": self.message,
                "kind": self.kind.value}

    @classmethod
    def from_dict(cls, data: dict) -> "Problem":
        return cls(data["path"], int(data["line"]), int(data["col"]), data["message"],
                   ProblemKind(data.get("kind", ProblemKind.INVALID.value)))


class ArgusError(Exception):
    """Base of every error the engine reports to a user. `str()` is one line naming the fix."""


class UsageError(ArgusError):
    """The caller asked for something that cannot be done as asked (bad path, bad flag value)."""


class ConfigError(ArgusError):
    """The config file is missing, unreadable or invalid."""


class SpecError(ArgusError):
    """A spec is invalid; `problems` holds every problem found, each with its position."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class StoreError(ArgusError):
    """The state store is missing, from a newer version, or unusable."""


class NotFoundError(ArgusError):
    """A named model (or other object) does not exist."""


class GitError(ArgusError):
    """The GitOps repository is missing, corrupt, or a git operation failed."""


class ClusterError(ArgusError):
    """Ray or Serve could not be reached or refused a request."""


class ConflictError(GitError):
    """A write lost to a concurrent edit of the same spec; nothing of it was pushed."""


class RefusedError(GitError):
    """The GitOps repo's pre-receive hook refused a push (ownership, layout); nothing changed."""

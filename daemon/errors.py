"""Domain errors. The engine raises these; the CLI and the API translate each by its `fault`
(to an exit code, to an HTTP status) and nothing else."""
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


class Fault(str, Enum):
    """Whose fault an error is, so what the caller can do about it. The one question both the
    CLI's exit codes (argusctl/common.py) and the API's HTTP statuses (daemon/api/http.py) answer;
    docs/cli.md and docs/api.md hold the one table."""

    INPUT = "input"                      # what was sent is invalid: fix it (a spec, a request body)
    USAGE = "usage"                      # asked for something that cannot be done as asked (a path, a flag)
    UNAUTHENTICATED = "unauthenticated"  # who is asking is unknown (no token, a revoked one)
    NOT_ALLOWED = "not_allowed"          # known, but may not do this (the hook refused it, admin only)
    NOT_FOUND = "not_found"              # no such model (or it is someone else's)
    CONFLICT = "conflict"                # a concurrent change won; nothing changed: run it again
    ENVIRONMENT = "environment"          # config, store, git repo or cluster not usable: an operator fixes it


class ArgusError(Exception):
    """Base of every error argus reports to a user. `str()` is one line naming the fix; `fault`
    says whose fault it is. The library raises; the CLI and the API translate by `fault` alone."""

    fault: Fault

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not hasattr(cls, "fault"):  # one home for the answer: no error without it
            raise TypeError(f"{cls.__name__} must say whose fault it is (a `fault` of daemon.errors.Fault)")


class UsageError(ArgusError):
    """The caller asked for something that cannot be done as asked (bad path, bad flag value)."""

    fault = Fault.USAGE


class ConfigError(ArgusError):
    """The config file is missing, unreadable or invalid."""

    fault = Fault.ENVIRONMENT


class SpecError(ArgusError):
    """A spec is invalid; `problems` holds every problem found, each with its position. A spec
    that reaches outside the user's own roots is not allowed rather than merely invalid."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

    @property
    def fault(self) -> Fault:  # type: ignore[override]
        forbidden = any(p.kind is ProblemKind.FORBIDDEN for p in self.problems)
        return Fault.NOT_ALLOWED if forbidden else Fault.INPUT


class StoreError(ArgusError):
    """The state store is missing, from a newer version, or unusable."""

    fault = Fault.ENVIRONMENT


class NotFoundError(ArgusError):
    """A named model (or other object) does not exist."""

    fault = Fault.NOT_FOUND


class GitError(ArgusError):
    """The GitOps repository is missing, corrupt, or a git operation failed."""

    fault = Fault.ENVIRONMENT


class ClusterError(ArgusError):
    """Ray or Serve could not be reached or refused a request."""

    fault = Fault.ENVIRONMENT


class ConflictError(ArgusError):
    """A write lost to a concurrent edit of the same spec; nothing of it was pushed."""

    fault = Fault.CONFLICT


class RefusedError(ArgusError):
    """The GitOps repo's pre-receive hook refused a push (ownership, layout); nothing changed."""

    fault = Fault.NOT_ALLOWED


class ForbiddenError(ArgusError):
    """The caller may see this, but not do it (an admin-only route, another user's model, a
    write by cookie not from the UI's own pages)."""

    fault = Fault.NOT_ALLOWED


class UnauthenticatedError(ArgusError):
    """The caller did not say who they are, or said it with a token argus does not know."""

    fault = Fault.UNAUTHENTICATED

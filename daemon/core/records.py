"""The records argus keeps of its models, as the rest of argus reads them: a model, an event,
a refused spec file. Plain typed values; the store (daemon/store.py) persists them and the
sync plan, describe.py and the API take them without touching SQLite."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from daemon.core.states import LIVE_STATES, EventType, ModelState, RejectionKind, known
from daemon.errors import Problem


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    # fromisoformat (3.11 reads the "Z"): ~20x faster than strptime, which large diffs felt.
    return datetime.fromisoformat(text).astimezone(timezone.utc)


@dataclass(frozen=True)
class ModelRow:
    model_key: str
    user_id: str
    model_id_suffix: str
    model_id: str
    spec_path: str
    spec_yaml: str
    resolved: dict[str, Any]
    state: ModelState
    error_summary: str | None
    generation: int
    attempted_generation: int | None
    applied_generation: int | None
    commit_sha: str
    commit_author: str
    created_at: str
    updated_at: str
    # FAILED beside a generation that serves on: that generation's deployment (serving.desired.Serving).
    serving: dict[str, Any] | None = None

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Event:
    id: int
    model_key: str | None
    user_id: str | None
    spec_path: str | None
    time: str
    event_type: EventType | str   # a type this argus does not know (a newer one's) stays text
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def event_type(text: str) -> EventType | str:
    return known(EventType, text)


@dataclass(frozen=True)
class Rejection:
    spec_path: str
    user_id: str
    blob_sha: str
    commit_sha: str
    commit_author: str
    problems: list[Problem]
    time: str
    kind: RejectionKind = RejectionKind.SPEC

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "problems": [p.to_dict() for p in self.problems]}

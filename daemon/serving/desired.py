"""What the reconcile decision reads of each model (the store's view, with the facts the shell
checked) and what it decides for it: a state transition and an event. Pure."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from daemon.core.adapters import AdapterReading
from daemon.core.spec import ResolvedServingSpec
from daemon.core.states import EventType, ModelState
from daemon.serving.llm_config import ModelDeployment
from daemon.serving.observe import ReplicaLog, summarize_failure


@dataclass(frozen=True)
class Serving:
    """The generation that serves a FAILED model beside its failed change (rolled back), as the
    store keeps it: the deployment as Serve ran it, so argus can deploy it again when Serve
    loses it (Ray restarted, its app deleted); and what the model said when it failed, said
    again once that generation serves again."""

    deployment: ModelDeployment
    failure: str

    def to_dict(self) -> dict[str, Any]:
        d = self.deployment
        return {"model_id": d.model_id, "llm_config": d.llm_config, "num_replicas": d.num_replicas,
                "autoscaling": d.autoscaling, "failure": self.failure}

    @classmethod
    def from_dict(cls, model_key: str, data: dict[str, Any]) -> "Serving":
        return cls(ModelDeployment(model_key, data["model_id"], data["llm_config"], int(data["num_replicas"]),
                                   data.get("autoscaling")), str(data.get("failure") or ""))


@dataclass(frozen=True)
class DesiredModel:
    model_key: str
    model_id: str
    state: ModelState
    generation: int
    spec: ResolvedServingSpec
    # Why the folder cannot be served now: for a QUEUED model spec.source_problem; for one that
    # deploys or runs (adapters too), spec.path_problem (swapped out of its owner's roots).
    source_problem: str | None = None
    last_event: tuple[EventType | str, dict] | None = None   # (type, payload) of its newest event (a newer argus's type stays text)
    was_running: bool = False     # reached RUNNING before (so an update keeps it routable)
    ran_this_generation: bool = False  # this very generation reached RUNNING (a redeploy after Serve lost it)
    adapter: AdapterReading | None = None   # an adapter's folder facts, or why it cannot be served
    applied_generation: int | None = None   # the generation that serves (last reached RUNNING)
    applied_at: datetime | None = None      # when its newest generation was applied to Serve
    # Autoscaled to zero: the newest of its IDLE/WOKE events, and since when Serve has wanted a
    # replica of it while it runs none (the shell's memory of earlier ticks; None: not waking,
    # or argusd started meanwhile).
    last_scale: EventType | None = None
    waking_since: datetime | None = None
    # Who made its spec's generation and in which commit (for a suspended model's 503).
    author: str | None = None
    commit: str | None = None
    # FAILED with its serving generation kept beside the failure (rolled back): how that one runs.
    serving: Serving | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", ModelState(self.state))


@dataclass(frozen=True)
class Transition:
    model_key: str
    state: ModelState | None        # None: no state change, only an event
    event_type: EventType
    payload: dict[str, Any]
    error_summary: str | None = None
    attempted_generation: int | None = None
    applied_generation: int | None = None
    # A model that fails this tick: the generation that serves on beside the failure (None:
    # nothing serves any more), kept by the store while it is FAILED.
    records_serving: bool = False
    serving: Serving | None = None
    # A first start's RUNNING: the log of the replica that started, where argusd's shell reads
    # the replica's own phases (daemon/core/replica_contract.py) into the event.
    replica_log: ReplicaLog | None = None

    def __post_init__(self) -> None:
        if self.state is not None:
            object.__setattr__(self, "state", ModelState(self.state))
        object.__setattr__(self, "event_type", EventType(self.event_type))


def once(model: DesiredModel, event_type: EventType, payload: dict[str, Any]) -> bool:
    """Whether an event says something new (a persisting condition is recorded once)."""
    return model.last_event != (event_type, payload)


def failed(model: DesiredModel, message: str) -> Transition:
    return Transition(model.model_key, ModelState.FAILED, EventType.FAILED, {"message": message},
                      error_summary=summarize_failure(message))

"""The words argus's records are made of, as types: a model's state, an event's type, and the
statuses Ray Serve reports. `str` enums: they compare equal to, store and print as their value."""
from __future__ import annotations

import enum
from typing import TypeVar


class StrEnum(str, enum.Enum):
    # str() and f-strings give the value on every Python (3.10's (str, Enum) gave "Class.MEMBER").
    __str__ = str.__str__
    __format__ = str.__format__


class ModelState(StrEnum):
    QUEUED = "QUEUED"          # recorded, waiting for reconcile (or for resources)
    DEPLOYING = "DEPLOYING"    # applied to Serve, not healthy yet
    RUNNING = "RUNNING"        # Serve reports it healthy
    FAILED = "FAILED"          # Serve (or the deploy-time check) gave up; error_summary says why
    SUSPENDED = "SUSPENDED"    # its spec says suspended: true; no replica, no GPU, requests get 503
    DELETING = "DELETING"      # its spec is gone; Serve is removing it
    DELETED = "DELETED"        # gone from Serve; kept for its history


LIVE_STATES = (ModelState.QUEUED, ModelState.DEPLOYING, ModelState.RUNNING, ModelState.FAILED, ModelState.SUSPENDED)


class EventType(StrEnum):
    # from git (sync)
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    SCALED = "SCALED"
    REVIVED = "REVIVED"
    MOVED = "MOVED"
    QUEUED = "QUEUED"
    DELETE_REQUESTED = "DELETE_REQUESTED"
    REJECTED = "REJECTED"
    REJECTION_CLEARED = "REJECTION_CLEARED"
    HISTORY_REWRITTEN = "HISTORY_REWRITTEN"
    COMMIT_DATE_REFUSED = "COMMIT_DATE_REFUSED"
    ID_RESTORED = "ID_RESTORED"      # a rebuilt store took back the model's key and public id from the id ledger
    # from Serve (reconcile)
    APPLIED = "APPLIED"
    APPLY_FAILED = "APPLY_FAILED"
    PENDING_RESOURCES = "PENDING_RESOURCES"
    RUNNING = "RUNNING"
    FAILED = "FAILED"
    DRIFT_REPAIRED = "DRIFT_REPAIRED"
    DEGRADED = "DEGRADED"            # a running model's replica died or fails health checks; Serve replaces it
    RECOVERED = "RECOVERED"          # healthy again after DEGRADED
    REPLICAS_LOST = "REPLICAS_LOST"  # a RUNNING model Serve has no running replica of (Ray restarted, app gone)
    REPLICA_START_FAILED = "REPLICA_START_FAILED"  # a replica failed to start and Serve retries: why it is not up
    ROLLOUT_STARTED = "ROLLOUT_STARTED"  # a new generation starts beside the serving one
    CANARY_STARTED = "CANARY_STARTED"  # the new generation answered and takes a share of the requests beside the serving one
    SWITCHED = "SWITCHED"            # the new generation answered and takes the model's requests
    ROLLED_BACK = "ROLLED_BACK"      # the new generation failed; the serving one stays (model FAILED)
    SUSPENDED = "SUSPENDED"          # its spec says suspended: its replicas are gone, its GPUs free
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"  # waits QUEUED: its owner's GPUs (users.<user>.max_gpus) are taken
    WOKE = "WOKE"                    # an autoscaled model at zero replicas got a request and runs again
    IDLE = "IDLE"                    # an autoscaled model went down to zero replicas (no load)
    # the cluster as a whole (no model): argusd could not reach Ray's dashboard, and could again
    CLUSTER_UNREACHABLE = "CLUSTER_UNREACHABLE"
    CLUSTER_REACHABLE = "CLUSTER_REACHABLE"
    WAITING_FOR_BASE = "WAITING_FOR_BASE"  # an adapter whose base model cannot take it now (the reason says why)
    DELETED = "DELETED"


E = TypeVar("E", bound=StrEnum)


def known(kind: type[E], text: str) -> E | str:
    """`text` as a member of `kind`, or as it is when this argus does not know it (a newer argus
    wrote it): records are read, never refused, for a word they hold."""
    return kind(text) if text in kind._value2member_map_ else text


CLUSTER_EVENTS = (EventType.CLUSTER_UNREACHABLE, EventType.CLUSTER_REACHABLE)
# States that only Serve can confirm: while the cluster cannot be reached, they are not known.
SERVE_CONFIRMED_STATES = (ModelState.DEPLOYING, ModelState.RUNNING)


class Role(StrEnum):
    """A daemon's part in its cluster's lease (daemon/serving/lease.py); stored as its value."""

    ACTIVE = "active"        # holds the lease: reconciles
    STANDBY = "standby"      # another daemon holds a live lease: touches nothing
    CLAIMING = "claiming"    # wrote a claim; waits to read it back


# Here, not in records.py: the judge (lint, the hook) names a refusal without creating the
# record classes it never makes (19 M instructions of `argusctl lint`).
class RejectionKind(StrEnum):
    """Why a spec file is not applied; stored as its value."""

    SPEC = "spec"            # the file's content breaks a spec rule
    OWNERSHIP = "ownership"  # the change came from someone who may not make it; stays until the owner changes it

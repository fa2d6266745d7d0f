"""One active argusd per Ray cluster: a lease kept in the cluster itself.

The lease is the user_config of a tiny Serve app argus owns (`argus-lease`), so every argusd
that reaches the cluster sees it, whatever store or repo it has. The active daemon renews it
(beat + 1) every third of the lease time with its normal apply; a standby that sees the value
unchanged for a whole lease time (measured on its own monotonic clock, so clock skew between
machines does not matter) claims the next epoch. A claim changes nothing else (every app goes
back as Serve has it), and a daemon applies its models only once it reads its claim back:
two daemons that claim at once both see who won before either applies anything.

A daemon's name in the lease (`daemon_name`) is `<instance>.<boot>@<host>:<store>`. The
instance is made from the host name, the store's path and the GitOps repo (`stable_instance`)
and kept in the store (`daemon.store.daemon_instance`; a store of an argus before this keeps
the random id it was given), so a restarted argusd, one whose reconciler was rebuilt, or one
whose store was rebuilt in place knows a lease of its instance as its own dead self's and
claims it at once instead of standing by for a lease time. In the lease, host and store are
for people to read: `decide` compares instance and boot only. The store does use them, once,
to tell a copied or moved store from its original (`daemon_instance` makes that host's and
path's instance then).
The boot is random per process, so two live daemons of one instance (two hosts of one name,
each with the same store path and GitOps repo, or a store copied byte for byte to such a host)
never read each other's claim as their own. Each
claims by instance at most once, before it was ever active: the one started later takes the
lease from the live earlier one at once, and the earlier one stands by from its next read of
the lease, so for at most the tick it had begun both may apply; afterwards only one is active.

Pure: `decide` is a function of what the daemon remembers, what Serve shows and the time.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

from daemon.core.states import Role  # noqa: F401 (the lease's roles; the store records them too)


def daemon_name(instance: str, boot: str, host: str, state_db: str) -> str:
    """This argusd process's name in the lease: its store's instance id, a per-process boot id,
    and (for display only) its host and store file."""
    return f"{instance}.{boot}@{host}:{state_db}"


def stable_instance(host: str, state_db: str, repo: str) -> str:
    """The instance id argusd gives a store that has none: the same for the same host name, store
    path and GitOps repo, so a store rebuilt in place (or lost with its state directory) still
    names the daemon whose lease it finds; a store copied to another host or path, or a daemon
    of another repo (two hosts of one name, both with the default store path), names another."""
    return hashlib.sha256(f"{host}\0{state_db}\0{repo}".encode()).hexdigest()[:16]


def instance_of(name: str) -> str:
    """The instance a name in the lease belongs to (a name not made by `daemon_name` is its own)."""
    return name.partition("@")[0].partition(".")[0] if "@" in name else name


def display_name(name: str) -> str:
    """A name in the lease as people read it: `host:store (instance 1a2b3c4d)`."""
    head, at, where = name.partition("@")
    return f"{where} (instance {instance_of(name)[:8]})" if at else name


@dataclass(frozen=True)
class LeaseValue:
    holder: str
    epoch: int
    beat: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"holder": self.holder, "epoch": self.epoch, "beat": self.beat}

    @classmethod
    def from_dict(cls, data: Any) -> "LeaseValue | None":
        if not isinstance(data, dict):
            return None
        holder, epoch, beat = data.get("holder"), data.get("epoch"), data.get("beat", 0)
        if not isinstance(holder, str) or not isinstance(epoch, int) or not isinstance(beat, int):
            return None
        return cls(holder, epoch, beat)


@dataclass(frozen=True)
class LeaseMemory:
    seen: LeaseValue | None = None    # the value last read from Serve
    seen_since: float = 0.0           # when it was first read unchanged (monotonic)
    mine: LeaseValue | None = None    # what this daemon last wrote
    written_at: float = 0.0
    confirmed: bool = False           # Serve showed `mine` (this daemon has been active on it)
    # This process may no longer claim a lease of its instance at once: it did so already, or it
    # has been active itself (a lease of its instance it did not write is then a live twin's).
    heir_done: bool = False


@dataclass(frozen=True)
class LeaseStep:
    role: Role
    write: LeaseValue | None          # the value to put into Serve now (claim or renewal), or None
    memory: LeaseMemory


def decide(memory: LeaseMemory, observed: LeaseValue | None, me: str, now: float, ttl: float,
           busy: bool = False) -> LeaseStep:
    """This daemon's role for this tick, and what (if anything) to write: an early-return ladder.

    `busy`: Serve is building an application. Any PUT then makes Serve cancel and restart that
    build (Ray 2.60 application_state.apply_app_config), so the holder does not renew while it
    lasts, and a standby does not count that time towards the lease's expiry."""
    if observed != memory.seen or busy:
        memory = replace(memory, seen=observed, seen_since=now)
    # Mine, as I last claimed it: active; renew every third of the lease time.
    if (observed is not None and memory.mine is not None and observed.holder == me
            and observed.epoch == memory.mine.epoch):
        memory = replace(memory, confirmed=True, heir_done=True)
        if now - memory.written_at >= ttl / 3 and not busy:
            renewal = LeaseValue(me, observed.epoch, max(observed.beat, memory.mine.beat) + 1)
            return LeaseStep(Role.ACTIVE, renewal, replace(memory, mine=renewal, written_at=now))
        return LeaseStep(Role.ACTIVE, None, memory)
    # A lease of my instance that this process did not write: my own earlier life (a restart or
    # a rebuilt reconciler). Claim the next epoch now (once Serve is not building: a PUT would
    # restart the build), once per process; I apply only once I read it back.
    if (observed is not None and instance_of(observed.holder) == instance_of(me) and memory.mine is None
            and not memory.heir_done and not busy):
        claim = LeaseValue(me, observed.epoch + 1, 0)
        return LeaseStep(Role.CLAIMING, claim,
                         replace(memory, mine=claim, written_at=now, confirmed=False, heir_done=True))
    # I claimed and Serve does not show it yet (or shows another claim made at the same time):
    # wait for one lease time before trying again.
    if memory.mine is not None and not memory.confirmed and now - memory.written_at < ttl and (
            observed is None or observed.epoch <= memory.mine.epoch):
        if observed is not None and observed.holder != me and observed.epoch == memory.mine.epoch:
            return LeaseStep(Role.STANDBY, None, replace(memory, mine=None))  # the other claim won
        return LeaseStep(Role.CLAIMING, None, memory)
    # Nobody holds it, or its holder stopped renewing a whole lease time ago: claim the next epoch.
    if observed is None or now - memory.seen_since >= ttl:
        claim = LeaseValue(me, (observed.epoch if observed is not None else 0) + 1, 0)
        return LeaseStep(Role.CLAIMING, claim, replace(memory, mine=claim, written_at=now, confirmed=False))
    # Another daemon holds a live lease.
    return LeaseStep(Role.STANDBY, None, replace(memory, mine=None, confirmed=False))

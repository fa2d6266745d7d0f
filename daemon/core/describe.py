"""How a model's state and events read to a person: one wording for `argusctl status/logs`
and the HTTP API and UI. Pure: takes the records (core/records.py), returns text."""
from __future__ import annotations

from typing import Any, Mapping

from daemon.core.records import Event, ModelRow, Rejection, event_type
from daemon.core.states import EventType, ModelState, StrEnum
from daemon.errors import Problem


def reason_of(model: ModelRow, rejection: Rejection | None) -> str:
    if rejection is not None:
        first = rejection.problems[0]
        where = f"line {first.line}:{first.col}" if first.path == rejection.spec_path else f"{first.path}:{first.line}"
        return f"spec rejected, last good spec kept: {where}: {first.message}"
    return model.error_summary or ""


def problem_text(problem: Problem | Mapping[str, Any]) -> str:
    """One stored problem as `path:line:col: message` (events keep them structured)."""
    if isinstance(problem, Mapping):
        return f"{problem.get('path')}:{problem.get('line')}:{problem.get('col')}: {problem.get('message')}"
    return str(problem)


# -- adapters ------------------------------------------------------------------------------------


class AdapterLoad(StrEnum):
    """Where a LoRA adapter is on its base model's replicas, as its state says (an adapter has
    no replicas of its own: its state is whether the base's vLLM has it)."""

    WAITING = "waiting for base"   # QUEUED: its base does not run or does not take it (the reason says why)
    LOADING = "loading"            # DEPLOYING: in the base's adapter table; its first answer not in yet
    LOADED = "loaded"              # RUNNING: the base's replicas answered by its id
    FAILED = "failed to load"      # FAILED: vLLM or its folder refused it (the reason says why)
    UNLOADING = "unloading"        # DELETING: its spec is gone; the base's table still holds it
    REMOVED = "removed"            # DELETED


ADAPTER_LOAD = {ModelState.QUEUED: AdapterLoad.WAITING, ModelState.DEPLOYING: AdapterLoad.LOADING,
                ModelState.RUNNING: AdapterLoad.LOADED, ModelState.FAILED: AdapterLoad.FAILED,
                ModelState.DELETING: AdapterLoad.UNLOADING, ModelState.DELETED: AdapterLoad.REMOVED,
                ModelState.SUSPENDED: AdapterLoad.WAITING}   # adapter specs cannot be suspended; bases can


def adapter_load(state: ModelState) -> AdapterLoad:
    return ADAPTER_LOAD[ModelState(state)]


# -- values and changes --------------------------------------------------------------------------


def value_text(value: Any) -> str:
    """A stored value as a person writes it: `none`, `a, b`, `max_rank 16, max_loaded 4`."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {value_text(v)}" for k, v in value.items()) or "{}"
    if isinstance(value, (list, tuple)):
        return ", ".join(value_text(v) for v in value) or "none"
    return str(value)


def change_texts(field: str, old: Any, new: Any) -> list[str]:
    """What changed in one field, as phrases: `num_replicas 1 -> 2`; a table of settings (like
    adapters or engine_kwargs) key by key, and `adapters set: ...` / `adapters removed` when it
    appears or goes as a whole."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            if key not in new:
                out.append(f"{field}.{key} removed (was {value_text(old[key])})")
            elif key not in old:
                out.append(f"{field}.{key} set to {value_text(new[key])}")
            elif old[key] != new[key]:
                out += change_texts(f"{field}.{key}", old[key], new[key])
        return out
    if old is None or old == {}:
        return [f"{field} set: {value_text(new)}" if isinstance(new, Mapping) else f"{field} set to {value_text(new)}"]
    if new is None or new == {}:
        return [f"{field} removed (was {value_text(old)})"]
    return [f"{field} {value_text(old)} -> {value_text(new)}"]


def changes_text(changes: Mapping[str, Any]) -> str:
    """A spec's changes (field -> [old, new], as sync records them) as one line."""
    return "; ".join(t for field, (old, new) in sorted(changes.items()) for t in change_texts(field, old, new))


# -- events --------------------------------------------------------------------------------------


def _generation(p: dict) -> str:
    return f"generation {p.pop('generation')}" if "generation" in p else "the spec"


def _replicas(n: Any) -> str:
    return f"{n} replica" + ("" if n == 1 else "s")


def _what(kind: EventType | str, p: dict) -> str:
    """The event's own words, from its payload (consumes the keys it uses)."""
    if kind == EventType.REJECTED:
        kept = p.pop("kept_last_good_spec", None)
        return ("; ".join(problem_text(q) for q in p.pop("problems", []))
                + (" (the last good spec keeps serving)" if kept else ""))
    if "changes" in p:
        gen = _generation(p)
        return f"{gen}: {changes_text(p.pop('changes'))}"
    if kind == EventType.CREATED:
        model_id, path = p.pop("model_id", "?"), p.pop("spec_path", "?")
        replicas, gpus = p.pop("num_replicas", 0), p.pop("gpus_per_replica", 0)
        # An adapter is created with no replicas of its own (it runs on its base's).
        size = f", {_replicas(replicas)} x {gpus} GPU" if replicas else ""
        return f"{model_id} from {path}{size}"
    if kind == EventType.QUEUED:
        return f"{_generation(p)} waits for argusd to apply it"
    if kind == EventType.APPLIED:
        gen, base = _generation(p), p.pop("base_model", None)
        if base is not None:
            return f"{gen} added to the adapters of base model {base}, loading on its replicas"
        replicas = p.pop("num_replicas", None)
        return f"{gen} sent to Ray Serve" + (f" with {_replicas(replicas)}" if replicas is not None else "")
    if kind == EventType.RUNNING:
        gen, base = _generation(p), p.pop("base_model", None)
        if base:
            return f"{gen} loaded on base model {base}; it answers by its id"
        took, placed, start = p.pop("deploy_s", None), p.pop("placed_s", None), p.pop("replica_start_s", None)
        imports, engine = p.pop("replica_imports_s", None), p.pop("replica_engine_s", None)
        if took is None:
            return f"{gen} serves"
        inside = (f": its process and imports {imports:g} s, vLLM's engine {engine:g} s"
                  if imports is not None and engine is not None else "")
        phases = (f" (Serve's build and placement {placed:g} s, then the replica's start {start:g} s{inside})"
                  if placed is not None and start is not None else "")
        return f"{gen} serves, {took:g} s after it was sent to Ray Serve{phases}"
    if kind == EventType.RECOVERED and "running_replicas" in p:
        return f"healthy again, {_replicas(p.pop('running_replicas'))} running"
    if kind in (EventType.MOVED, EventType.DELETE_REQUESTED) and "spec_path" in p:
        path = p.pop("spec_path")
        return f"spec now at {path}" if kind == EventType.MOVED else f"{path} removed"
    if kind == EventType.DELETED:
        return "gone from Ray Serve"
    if kind == EventType.WOKE:
        took, running = p.pop("wake_s", None), p.pop("running_replicas", None)
        return ("woke" + (f" in {took:g} s" if took is not None else " (argusd restarted meanwhile: time unknown)")
                + (f", {_replicas(running)} running" if running is not None else ""))
    if kind in (EventType.ROLLOUT_STARTED, EventType.CANARY_STARTED, EventType.SWITCHED, EventType.ROLLED_BACK):
        # The message names the generations; the full reason stays in the event (argusctl logs --json).
        for key in ("generation", "serving_generation", "from_generation", "reason", "percent", "seconds",
                    "canary"):
            p.pop(key, None)
        return str(p.pop("message", ""))
    if kind == EventType.REJECTION_CLEARED:
        return "the spec is valid again"
    if kind == EventType.HISTORY_REWRITTEN:
        return f"the branch was rewritten: {str(p.pop('previous', '?'))[:12]} -> {str(p.pop('head', '?'))[:12]}"
    if kind == EventType.COMMIT_DATE_REFUSED:
        raw, used = p.pop("committer_time", "?"), p.pop("used", "?")
        return f"commit date {raw} cannot be a model id's date; argusd's clock ({used}) stands in"
    if "message" in p:
        message = str(p.pop("message"))
        if "free_gpus_then" in p:
            message += f" ({value_text(p.pop('free_gpus_then'))} GPUs free then)"
        return message
    return ""


def describe_event(event: Event) -> str:
    """One readable line for an event: its own words, then anything else it carries as
    `key value`, then who made it and in which commit."""
    p = dict(event.payload)
    who = f" by {p.pop('author')}" if "author" in p else ""
    commit = f" ({str(p.pop('commit'))[:12]})" if "commit" in p else ""
    what = _what(event_type(str(event.event_type)), p)
    rest = ", ".join(f"{k} {value_text(v)}" for k, v in sorted(p.items()))
    text = "; ".join(t for t in (what, rest) if t)
    return f"{text}{who}{commit}".strip()


# -- replicas: the range, now, and why -----------------------------------------------------------


class ReplicasWhy(StrEnum):
    """Why a model runs the replicas it runs (one word for status, the API, the UI, /metrics)."""

    FIXED = "fixed"                      # num_replicas
    AT_MIN = "at min_replicas"           # autoscaled, no more load than min_replicas take
    SCALED_BY_LOAD = "scaled up by load" # autoscaled above min_replicas
    IDLE = "idle"                        # autoscaled to zero: the next request wakes it
    SUSPENDED = "suspended"              # its spec says suspended
    WAITING_FOR_GPUS = "waiting for GPUs"  # not placed (queued, or a wake Serve cannot place)
    OVER_QUOTA = "over quota"            # waits for its owner's GPU quota
    NOT_RUNNING = "not running"          # queued, deploying, failed, deleting


def replicas_view(model: ModelRow, last_event: Event | None, last_scale: Event | None,
                  last_wake: Event | None, running: int | None = None) -> dict[str, Any] | None:
    """A model's replicas as every surface shows them: its range (min/max; equal when fixed),
    the replicas running now (`running`, when the caller read Serve; else what the store knows:
    0 when idle or suspended), why, and its last wake (when, and how long it took). `last_event`:
    its newest event; `last_scale`: its newest IDLE or WOKE; `last_wake`: its newest WOKE. None
    for an adapter (it runs on its base's replicas)."""
    r = model.resolved
    if r.get("base_model"):
        return None
    scaling = r.get("autoscaling")
    low = int(scaling["min_replicas"]) if scaling else int(r["num_replicas"])
    high = int(scaling["max_replicas"]) if scaling else int(r["num_replicas"])
    kind = event_type(str(last_event.event_type)) if last_event is not None else None
    idle = last_scale is not None and event_type(str(last_scale.event_type)) == EventType.IDLE
    if model.state == ModelState.SUSPENDED or (r.get("suspended") and model.state == ModelState.QUEUED):
        why, now = ReplicasWhy.SUSPENDED, 0 if model.state == ModelState.SUSPENDED else running
    elif kind == EventType.QUOTA_EXCEEDED and model.state == ModelState.QUEUED:
        why, now = ReplicasWhy.OVER_QUOTA, running
    elif kind == EventType.PENDING_RESOURCES and model.state in (ModelState.QUEUED, ModelState.RUNNING):
        why, now = ReplicasWhy.WAITING_FOR_GPUS, running
    elif model.state != ModelState.RUNNING:
        why, now = ReplicasWhy.NOT_RUNNING, running
    elif not scaling:
        why, now = ReplicasWhy.FIXED, running if running is not None else low
    elif running is not None:
        why = (ReplicasWhy.IDLE if running == 0 and idle else
               ReplicasWhy.SCALED_BY_LOAD if running > low else ReplicasWhy.AT_MIN)
        now = running
    elif idle:
        why, now = ReplicasWhy.IDLE, 0
    else:
        why, now = ReplicasWhy.AT_MIN, None
    wake = None
    if last_wake is not None:
        wake = {"at": last_wake.time, "took_s": last_wake.payload.get("wake_s")}
    return {"min": low, "max": high, "autoscaled": bool(scaling), "now": now, "why": why.value, "last_wake": wake}


def replicas_text(view: dict[str, Any] | None) -> str:
    """The replicas column: "2" (fixed), "1 of 0-3" (autoscaled, running now), "0-3" (not known)."""
    if view is None:
        return "-"
    if not view["autoscaled"]:
        return str(view["max"]) if view["now"] is None else (
            str(view["now"]) if view["now"] == view["max"] else f"{view['now']} of {view['max']}")
    span = f"{view['min']}-{view['max']}"
    return span if view["now"] is None else f"{view['now']} of {span}"


def replicas_line(view: dict[str, Any] | None) -> str:
    """One line for a model's page: range, now, why and the last wake."""
    if view is None:
        return "- (a LoRA adapter: runs on its base model's replicas)"
    text = f"{replicas_text(view)} ({view['why']})"
    wake = view.get("last_wake")
    if wake is not None:
        took = wake.get("took_s")
        text += f"; last woke {str(wake['at'])[:19]}Z" + (f" in {took:g} s" if took is not None else "")
    return text

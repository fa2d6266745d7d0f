"""How a model's state and events read to a person: one wording for `argusctl status/logs`
and the HTTP API and UI. Pure: takes store rows and events, returns text."""
from __future__ import annotations

from daemon.core.states import EventType


def reason_of(model, rejection) -> str:
    if rejection is not None:
        first = rejection.problems[0]
        where = f"line {first.line}:{first.col}" if first.path == rejection.spec_path else f"{first.path}:{first.line}"
        return f"spec rejected, last good spec kept: {where}: {first.message}"
    return model.error_summary or ""


def problem_text(problem) -> str:
    """One stored problem as `path:line:col: message` (events keep them structured)."""
    if isinstance(problem, dict):
        return f"{problem.get('path')}:{problem.get('line')}:{problem.get('col')}: {problem.get('message')}"
    return str(problem)


def describe_event(event) -> str:
    """One readable line for an event's payload."""
    p = dict(event.payload)
    who = f" by {p.pop('author')}" if "author" in p else ""
    commit = f" ({p.pop('commit')[:12]})" if "commit" in p else ""
    if event.event_type == EventType.REJECTED:
        return "; ".join(problem_text(q) for q in p.get("problems", [])) + who + commit
    if "changes" in p:
        changes = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in sorted(p.pop("changes").items()))
        return f"gen {p.pop('generation', '?')}: {changes}{who}{commit}"
    if "message" in p:
        return str(p.pop("message")) + who + commit
    rest = ", ".join(f"{k}={v}" for k, v in sorted(p.items()))
    return f"{rest}{who}{commit}".strip()

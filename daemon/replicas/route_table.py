"""The front end's route table as argusd writes it (the user_config of the ArgusIngress deployment,
`{"models": [serve_config.Route.to_json(), ...]}`), and the front end's decisions on it as pure
functions: which ids /v1/models lists, where a request's `model` goes, and the answers the front
end gives by itself in OpenAI's error shape. Standard library only: unit-tested without Ray."""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from daemon.replicas.names import WAKE_RETRY_AFTER_MAX_S, canary_key, probed_model


class ErrorCode(str, Enum):
    """The `error.code` of the front end's own answers (OpenAI's code for an unknown model)."""

    MODEL_NOT_FOUND = "model_not_found"       # the table does not hold the model
    MODEL_UNAVAILABLE = "model_unavailable"   # a known model with no serving generation (e.g. starting)
    MODEL_REQUIRED = "model_required"         # no `model` in a request while several are served
    MODEL_WAKING = "model_waking"             # may be at zero: no replica took the request within hold_s


def error_type(status: int) -> str:
    """OpenAI's `error.type` for an HTTP status."""
    named = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
    if status in named:
        return named[status]
    return "server_error" if status >= 500 else "invalid_request_error"


@dataclass(frozen=True)
class Answer:
    """An HTTP answer the front end gives without calling any replica."""

    status: int
    message: str
    code: ErrorCode
    retry_after: int | None = None   # seconds, sent as the Retry-After header

    def body(self) -> dict[str, Any]:
        """OpenAI's error shape."""
        return {"error": {"message": self.message, "type": error_type(self.status), "param": None,
                          "code": self.code.value}}

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


def not_found(model: str) -> Answer:
    """A model the table does not hold, worded as OpenAI words it."""
    return Answer(404, f"The model `{model}` does not exist or you do not have access to it.",
                  ErrorCode.MODEL_NOT_FOUND)


def model_required(listed: list[str]) -> Answer:
    return Answer(400, "You must provide a model parameter: this endpoint serves "
                       f"{', '.join(listed) if listed else 'no model yet'}.", ErrorCode.MODEL_REQUIRED)


def waking(model: str, hold_s: float) -> Answer:
    """A request held hold_s seconds for a model that may be at zero replicas, which no replica
    took (Serve queues a request the same way while every replica is at max_ongoing_requests,
    so the hold bounds that wait too)."""
    retry_after = max(1, min(WAKE_RETRY_AFTER_MAX_S, math.ceil(hold_s)))
    return Answer(503, f"model {model} got no replica for this request within {hold_s:g} s (it is waking up "
                       f"from zero replicas, or all of its replicas are busy); retry in {retry_after} s",
                  ErrorCode.MODEL_WAKING, retry_after)


def hold_expired(model: str, hold_s: float, assigned: bool) -> Answer | None:
    """What a held request gets when its hold runs out: nothing when a replica already took it
    (the bound is on the wait for a replica, never on a generation in progress), else the
    waking answer (the front end then withdraws the request from Serve's queue)."""
    return None if assigned else waking(model, hold_s)


@dataclass(frozen=True)
class Target:
    """Where the front end sends a model's requests: a Serve app's deployment, and the
    multiplexed model id (an adapter's public id, which its base's server loads) or None."""

    app: str
    deployment: str
    multiplexed_model_id: str | None


@dataclass(frozen=True)
class Entry:
    """One route of the table. A probe entry (model_id = names.probe_id(X)) reaches X's next
    generation and is never listed; an entry with `unavailable` is answered by the front end
    itself and is not listed either (it cannot answer), though GET /v1/models/{id} says why."""

    model_id: str
    app: str
    deployment: str
    max_request_context_length: int | None = None
    base_model: str | None = None
    probe: bool = False
    unavailable: Answer | None = None
    hold_s: float | None = None   # may have no replica: hold a request this long while it wakes
    # A canary: this share (%) of the requests goes to another app's deployment (the model's new
    # generation), the rest to app/deployment.
    canary_app: str | None = None
    canary_deployment: str | None = None
    canary_percent: int = 0

    @property
    def listed(self) -> bool:
        """Whether /v1/models lists it: only ids a client can be answered on."""
        return not self.probe and self.unavailable is None

    @property
    def held_for(self) -> float | None:
        """How long the front end holds this model's requests for a replica, or None: it never
        does (no hold_s: the model always has replicas; or the front end answers it itself).
        Requests of a model that is not held go to Serve untouched (nothing added per request)."""
        return self.hold_s if self.unavailable is None else None

    @property
    def target(self) -> Target | None:
        """None: the front end answers this id itself. An adapter's requests (its probe's too)
        go to its base's deployment with the ADAPTER's public id as the multiplexed model id."""
        if self.unavailable is not None:
            return None
        adapter = None
        if self.base_model is not None:
            adapter = probed_model(self.model_id) if self.probe else self.model_id
        return Target(self.app, self.deployment, adapter)

    @property
    def canary(self) -> Target | None:
        """Where the canary share of the requests goes (None: no split); an adapter's keeps its
        multiplexed model id (it follows its base's split)."""
        target = self.target
        if target is None or self.canary_app is None or self.canary_deployment is None or self.canary_percent <= 0:
            return None
        return Target(self.canary_app, self.canary_deployment, target.multiplexed_model_id)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "Entry":
        """One `serve_config.Route.to_json()`."""
        unavailable = raw.get("unavailable")
        answer = None
        if unavailable is not None:
            after = unavailable.get("retry_after")
            answer = Answer(int(unavailable["status"]), str(unavailable["message"]), ErrorCode.MODEL_UNAVAILABLE,
                            None if after is None else int(after))
        hold = raw.get("hold_s")
        canary = raw.get("canary") or {}
        return cls(str(raw["model_id"]), str(raw.get("app") or ""), str(raw.get("deployment") or ""),
                   raw.get("max_request_context_length"), raw.get("base_model"), bool(raw.get("probe", False)),
                   answer, None if hold is None else float(hold), canary.get("app"), canary.get("deployment"),
                   int(canary.get("percent") or 0))


def parse_table(user_config: dict[str, Any] | None) -> dict[str, Entry]:
    """The table by model id, from the front end's user_config."""
    entries = [Entry.from_json(raw) for raw in (user_config or {}).get("models") or []]
    return {entry.model_id: entry for entry in entries}


@dataclass(frozen=True)
class HandleSpec:
    """One handle the front end keeps: where it goes, how long its requests are held (None: not
    held), and whether its requests are counted by generation (while a canary splits the model)."""

    target: Target
    held_for: float | None = None
    counted: bool = False


def handle_targets(table: dict[str, Entry]) -> dict[str, HandleSpec]:
    """Every handle the front end keeps, by the key `route` returns: each served entry's, and its
    canary's under names.canary_key (both counted, so the two generations compare)."""
    out: dict[str, HandleSpec] = {}
    for model_id, entry in table.items():
        target = entry.target
        if target is None:
            continue
        out[model_id] = HandleSpec(target, entry.held_for, entry.canary is not None)
        if entry.canary is not None:
            out[canary_key(model_id)] = HandleSpec(entry.canary, entry.held_for, True)
    return out


def listed_ids(table: dict[str, Entry]) -> list[str]:
    return sorted(model_id for model_id, entry in table.items() if entry.listed)


def route(table: dict[str, Entry], model: str | None, roll: float) -> str | Answer:
    """Where a request's `model` goes: the key of the handle that serves it (handle_targets),
    or the answer the front end gives itself (the model's `unavailable` answer; 404 for an id
    the table does not hold; 400 for no `model` while not exactly one model is listed). Ray's
    "base:lora" ids are not argus's (an adapter has an entry of its own), so they are unknown
    ids here. `roll`: a uniform draw in [0, 1) for this request; below an entry's canary share
    the request goes to the canary (the whole request: a stream stays on the handle it began on)."""
    if model is None:
        listed = listed_ids(table)
        if len(listed) != 1:
            return model_required(listed)
        model = listed[0]
    entry = table.get(model)
    if entry is None:
        return not_found(model)
    if entry.unavailable is not None:
        return entry.unavailable
    if entry.canary is not None and roll * 100 < entry.canary_percent:
        return canary_key(model)
    return model


def card_answer(table: dict[str, Entry], model: str) -> str | Answer:
    """GET /v1/models/{model}: the id of a listed model, or why there is no card (a starting
    model's own answer: a client may poll it; 404 for a probe id or an unknown id)."""
    entry = table.get(model)
    if entry is None or entry.probe:
        return not_found(model)
    if entry.unavailable is not None:
        return entry.unavailable
    return model


def served_model(model: str | None, own_id: str) -> str | None:
    """The `model` a model server hands vLLM: a probe id of its own model becomes its own id
    (vLLM knows only that one, and answers with it); any other id is left for vLLM to refuse."""
    return own_id if probed_model(model) == own_id else model

"""The probes: one tiny request through the one OpenAI endpoint, as a client would send it,
by an adapter's public id or by a new generation's probe id. Its answer is the proof that a
base replica's vLLM loaded the adapter, or that the new generation answers before clients
are switched to it (or vLLM's reason why not); Serve's status cannot say, because adapters
load on demand, inside a request, and a healthy replica may still refuse every request."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from daemon.serving.observe import final_exception

PROBE_TIMEOUT_S = 60.0
# The endpoint is busy or a replica is being replaced: no verdict, ask again next tick.
TRANSIENT = (404, 429, 500, 502, 503, 504)


def endpoint_url(http_host: str, http_port: int, dashboard_url: str) -> str:
    """Where argusd reaches the endpoint: Serve's host, or the dashboard's host when Serve
    binds every interface (argusd may run on another machine than the head)."""
    host = http_host
    if host in ("0.0.0.0", "::", ""):
        host = urllib.parse.urlsplit(dashboard_url).hostname or "127.0.0.1"
    return f"http://{host}:{http_port}"


def adapter_verdict(code: int, message: str) -> tuple[bool, str | None]:
    """(decided, failure) from the endpoint's answer to an adapter's id: (True, None) it
    answered; (True, message) the endpoint refused it for good (vLLM could not load it);
    (False, None) no verdict yet (busy, or Serve has not routed it)."""
    if code == 200:
        return True, None
    if code in TRANSIENT and "lora" not in message.lower():
        return False, None
    return True, f"vLLM could not load the adapter ({code}): {_reason(message)}"


def generation_verdict(code: int, message: str) -> tuple[bool, str | None]:
    """The same for a new generation's probe id (names.probe_id). A 4xx other than 404/429 is a
    definite failure (the generation refuses what every client would send); 5xx and 404 are
    asked again (the front end or the replica is still being reconfigured)."""
    if code == 200:
        return True, None
    if code in TRANSIENT:
        return False, None
    return True, f"the new generation answered {code}: {_reason(message)}"


def probe_adapter(base_url: str, model_id: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str | None]:
    """The adapter probe: (decided, failure) as adapter_verdict; unreachable: no verdict."""
    answer = _ask(base_url, model_id, timeout)
    return (False, None) if answer is None else adapter_verdict(*answer)


def probe_model(base_url: str, model_id: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str | None]:
    """The rollout probe by a new generation's probe id: (decided, failure) as
    generation_verdict; unreachable: no verdict."""
    answer = _ask(base_url, model_id, timeout)
    return (False, None) if answer is None else generation_verdict(*answer)


def _ask(base_url: str, model_id: str, timeout: float) -> tuple[int, str] | None:
    """One 1-token completion by `model_id`: (HTTP status, error message), None if unreachable."""
    body = json.dumps({"model": model_id, "prompt": "Hi", "max_tokens": 1, "temperature": 0}).encode()
    request = urllib.request.Request(f"{base_url}/v1/completions", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
        return 200, ""
    except urllib.error.HTTPError as exc:
        return exc.code, _error_message(exc.read().decode(errors="replace"))
    except (urllib.error.URLError, OSError):
        return None


def _error_message(text: str) -> str:
    """The message of an OpenAI-style error body (Serve puts the replica's traceback in it)."""
    try:
        data: Any = json.loads(text)
    except ValueError:
        return text
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(data.get("detail") if isinstance(data, dict) and "detail" in data else data)


REASON_CHARS = 1000


def _reason(message: str) -> str:
    """The final exception of a traceback (vLLM's own words), else the message."""
    return (final_exception(message) or " ".join(message.split()))[:REASON_CHARS]

"""The adapter probe: one tiny request by an adapter's public id through the one OpenAI
endpoint, as a client would send it. Its answer is the proof that a base replica's vLLM
loaded the adapter (or vLLM's reason why not); Serve's status cannot say, because adapters
load on demand, inside a request."""
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


def probe_adapter(base_url: str, model_id: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str | None]:
    """(decided, failure): (True, None) when the adapter answered; (True, message) when the
    endpoint refused it for good (vLLM could not load it); (False, None) when there is no
    verdict yet (unreachable, busy, or Serve has not routed it)."""
    body = json.dumps({"model": model_id, "prompt": "Hi", "max_tokens": 1, "temperature": 0}).encode()
    request = urllib.request.Request(f"{base_url}/v1/completions", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
        return True, None
    except urllib.error.HTTPError as exc:
        message = _error_message(exc.read().decode(errors="replace"))
        if exc.code in TRANSIENT and "lora" not in message.lower():
            return False, None
        return True, f"vLLM could not load the adapter ({exc.code}): {_reason(message)}"
    except (urllib.error.URLError, OSError):
        return False, None


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

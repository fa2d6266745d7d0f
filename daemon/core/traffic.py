"""A model's recent traffic from Ray Serve's own per-deployment metrics: requests, failures and
latency per model, from two scrapes of every Ray node's metrics export (Prometheus text).

What Ray 2.60 exports (ray/serve/_private/replica.py, ReplicaMetricsManager), per replica, with
the tags deployment, application, replica and route (the error counter also exception_type):
  ray_serve_deployment_request_counter_total   requests that finished WITHOUT an exception
  ray_serve_deployment_error_counter_total     requests that raised (the two never count one request twice)
  ray_serve_deployment_processing_latency_ms   histogram of both, in milliseconds
They count what reached a model's replicas only: a request the front end answered itself (an
unknown model's 404, a model with no serving generation's 503) never reaches a model's
deployment, so it is in no model's numbers (the front end has no per-model counter of its own).

A model may run in more than one Serve application at once (one per generation: `llm-<key>`,
and the next beside it), each with the deployment `LLMServer:<key>`: its numbers are the sum
over every application of argus's and every replica, route and node."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from prometheus_client.parser import text_string_to_metric_families

from daemon.core.states import StrEnum


class Series(StrEnum):
    """The samples argus reads, by their name in the Prometheus text."""
    SUCCEEDED = "ray_serve_deployment_request_counter_total"
    FAILED = "ray_serve_deployment_error_counter_total"
    LATENCY_SUM_MS = "ray_serve_deployment_processing_latency_ms_sum"
    LATENCY_COUNT = "ray_serve_deployment_processing_latency_ms_count"
    # argus's front end's own count while a canary splits a model (names.FRONTEND_REQUESTS_METRIC):
    # tags application and deployment of the generation it sent a request to, and outcome.
    FRONT_END = "ray_argus_frontend_requests_total"


SERIES_NAMES = frozenset(s.value for s in Series)

# One time series of one node: what it counts, whose model, and every label (replica, route, ...).
SeriesKey = tuple[Series, str, frozenset[tuple[str, str]]]


@dataclass(frozen=True)
class ModelNaming:
    """How Serve's tags name an argus model (daemon/replicas/names.py has the values)."""
    deployment_prefix: str   # "LLMServer:" + model key
    app_prefix: str          # every application of argus's models starts with it

    def model_key(self, labels: Mapping[str, str]) -> Optional[str]:
        deployment, app = labels.get("deployment", ""), labels.get("application", "")
        if not deployment.startswith(self.deployment_prefix) or not app.startswith(self.app_prefix):
            return None
        return deployment[len(self.deployment_prefix):] or None


# Every family argus reads starts so. A node's export is large (900 KB, 2,650 lines on one CPU
# node with four tiny Serve apps; more with vLLM's own metrics) and parsing all of it took
# 1.4 s here: only these lines are parsed.
FAMILY_PREFIX = ("ray_serve_deployment_", "ray_argus_frontend_")
_FIRST_LINE = re.compile(r"(#|[a-zA-Z_:][a-zA-Z0-9_:]*[{ ])")


def parse_export(text: str, naming: ModelNaming) -> dict[SeriesKey, float]:
    """The argus models' series in one node's metrics export. Text that is not Prometheus's
    format raises ValueError (the caller says the metrics cannot be read)."""
    first = text.lstrip()
    if first and not _FIRST_LINE.match(first):
        raise ValueError(f"not Prometheus text: {first[:40]!r}")
    heads = FAMILY_PREFIX + tuple(f"# {kind} {prefix}" for kind in ("HELP", "TYPE") for prefix in FAMILY_PREFIX)
    ours = "\n".join(line for line in text.splitlines() if line.startswith(heads))
    found: dict[SeriesKey, float] = {}
    for family in text_string_to_metric_families(ours):
        for sample in family.samples:
            if sample.name not in SERIES_NAMES:
                continue
            key = naming.model_key(sample.labels)
            if key is not None:
                found[(Series(sample.name), key, frozenset(sample.labels.items()))] = float(sample.value)
    return found


@dataclass(frozen=True)
class Scrape:
    """Every node's export read at one time (`at`: seconds since the epoch). A node that
    could not be read is absent."""
    at: float
    nodes: Mapping[str, Mapping[SeriesKey, float]]


@dataclass(frozen=True)
class ModelTraffic:
    """One model over one interval."""
    requests_per_s: float            # every request its replicas finished, failed ones included
    failures_per_s: float            # those that raised
    mean_latency_ms: Optional[float]  # None: no request finished in the interval

    def to_dict(self) -> dict[str, Optional[float]]:
        return {"requests_per_s": round(self.requests_per_s, 4), "failures_per_s": round(self.failures_per_s, 4),
                "mean_latency_ms": None if self.mean_latency_ms is None else round(self.mean_latency_ms, 1)}


IDLE = ModelTraffic(0.0, 0.0, None)


def _increase(before: Optional[float], after: float) -> float:
    # A counter that went down was reset (its replica restarted): it counted `after` since then.
    # A series new since the last scrape of its node started from zero (Ray exports a series
    # from its first increment on).
    if before is None or after < before:
        return after
    return after - before


def model_traffic(before: Scrape, after: Scrape) -> dict[str, ModelTraffic]:
    """Each model's requests, failures and mean latency between two scrapes, summed over every
    node read both times (a node seen only once has no interval) and every series on it."""
    seconds = after.at - before.at
    if seconds <= 0:
        raise ValueError("the second scrape must be later than the first")
    totals: dict[str, dict[Series, float]] = {}
    for node, series in after.nodes.items():
        if node not in before.nodes:
            continue
        earlier = before.nodes[node]
        for key, value in series.items():
            kind, model = key[0], key[1]
            per_model = totals.setdefault(model, {s: 0.0 for s in Series})
            per_model[kind] += _increase(earlier.get(key), value)
    return {model: ModelTraffic(
        requests_per_s=(t[Series.SUCCEEDED] + t[Series.FAILED]) / seconds,
        failures_per_s=t[Series.FAILED] / seconds,
        mean_latency_ms=t[Series.LATENCY_SUM_MS] / t[Series.LATENCY_COUNT] if t[Series.LATENCY_COUNT] > 0 else None)
        for model, t in totals.items()}


@dataclass(frozen=True)
class Counts:
    """Requests one generation's replicas finished over an interval, and how many of them raised."""
    requests: float = 0.0
    failures: float = 0.0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.requests + other.requests, self.failures + other.failures)

    @property
    def failure_rate(self) -> float:
        return self.failures / self.requests if self.requests > 0 else 0.0


# (model key, Serve application): one generation of one model.
AppKey = tuple[str, str]


def app_counts(before: Scrape, after: Scrape) -> dict[AppKey, Counts]:
    """Each generation's requests and failures between two scrapes (a model runs one Serve app
    per generation, so its serving and its new generation are counted apart): as the front end
    counted them where it did (a canary's), else as the generation's replicas did (they count
    what raised, not an error the model server answered)."""
    front: dict[AppKey, Counts] = {}
    replicas: dict[AppKey, Counts] = {}
    for node, series in after.nodes.items():
        if node not in before.nodes:
            continue
        for key, value in series.items():
            kind, model, labels = key
            tags = dict(labels)
            grew = _increase(before.nodes[node].get(key), value)
            app = (model, tags.get("application", ""))
            if kind == Series.FRONT_END:
                front[app] = front.get(app, Counts()) + Counts(grew, grew if tags.get("outcome") == "failed" else 0.0)
            elif kind in (Series.SUCCEEDED, Series.FAILED):
                replicas[app] = replicas.get(app, Counts()) + Counts(grew, grew if kind == Series.FAILED else 0.0)
    return {app: front.get(app, counts) for app, counts in {**replicas, **front}.items()}


@dataclass(frozen=True)
class TrafficPoint:
    """One interval of `seconds` ending at `at`: every model's traffic, or why there is none
    (`problem`); `apps`: the same counted per generation (app_counts)."""
    at: float
    seconds: float
    models: Mapping[str, ModelTraffic]
    problem: Optional[str] = None
    apps: Mapping[AppKey, Counts] = field(default_factory=dict)


def counts_since(points: Iterable[TrafficPoint], model_key: str, since: float) -> dict[str, Counts]:
    """A model's counts per Serve app over the intervals that began at `since` or later (a fair
    window for two generations: the same intervals for both, none from before the canary)."""
    out: dict[str, Counts] = {}
    for point in points:
        if point.problem is not None or point.at - point.seconds < since:
            continue
        for (model, app), counts in point.apps.items():
            if model == model_key:
                out[app] = out.get(app, Counts()) + counts
    return out


def model_history(points: Iterable[TrafficPoint], model_key: str) -> list[dict[str, object]]:
    """One model's points for the page, oldest first. A model absent from a good point had no
    request then (0/s); a point with a problem has no numbers (a gap in the chart)."""
    out: list[dict[str, object]] = []
    for point in points:
        if point.problem is not None:
            out.append({"at": point.at, "seconds": point.seconds, "requests_per_s": None, "failures_per_s": None,
                        "mean_latency_ms": None})
        else:
            out.append({"at": point.at, "seconds": point.seconds, **point.models.get(model_key, IDLE).to_dict()})
    return out


def ring_length(window_seconds: float, interval_seconds: float) -> int:
    """How many points hold `window_seconds` of history at one point per interval."""
    return max(2, int(window_seconds // interval_seconds) + 1)

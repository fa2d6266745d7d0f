"""A model's traffic from Ray Serve's metrics (daemon/core/traffic.py), over real Prometheus text
captured from a real Ray 2.60 Serve (tests/fixtures/ray_metrics/README.md says how). Between the
two captures the Serve apps got: llm-k1 3 answered + 1 raising, llm-k1-g2 (k1's next
generation) 2 + 2, llm-k2 1, an app `other` with deployment LLMServer:k1 (not argus's) 4, and
3 requests for no route (404 at Serve's proxy)."""
import json
from pathlib import Path

import pytest

from daemon.core.traffic import IDLE, ModelNaming, ModelTraffic, Scrape, Series, TrafficPoint, model_history, \
    model_traffic, parse_export, ring_length
from daemon.traffic import ARGUS_NAMING, MetricsUnavailable, TrafficRecorder, metrics_endpoints

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ray_metrics"
BEFORE = parse_export((FIXTURES / "before.prom").read_text(), ARGUS_NAMING)
AFTER = parse_export((FIXTURES / "after.prom").read_text(), ARGUS_NAMING)


def counts(got: dict[str, ModelTraffic], seconds: float) -> dict[str, tuple[int, int]]:
    return {k: (round(t.requests_per_s * seconds), round(t.failures_per_s * seconds)) for k, t in got.items()}


def without(series: dict, model: str) -> dict:
    return {k: v for k, v in series.items() if k[1] != model}


CASES = [
    # what happened between the scrapes                  before              after               seconds  (requests, failures) per model
    ("both of k1's apps summed, k2 apart, `other` and the 404s in no model",
     {"n1": BEFORE}, {"n1": AFTER}, 10, {"k1": (8, 3), "k2": (1, 0)}),
    ("nothing sent: every model with series is idle",
     {"n1": AFTER}, {"n1": AFTER}, 5, {"k1": (0, 0), "k2": (0, 0)}),
    ("a replica restarted (its counters went down): it counted what it shows since",
     {"n1": AFTER}, {"n1": BEFORE}, 10, {"k1": (sum(v for k, v in BEFORE.items() if k[1] == "k1" and k[0] == Series.SUCCEEDED)
                                               + sum(v for k, v in BEFORE.items() if k[1] == "k1" and k[0] == Series.FAILED),
                                               sum(v for k, v in BEFORE.items() if k[1] == "k1" and k[0] == Series.FAILED)),
                                        "k2": (1, 0)}),
    ("k2's replica is new since the first scrape: counted from zero",
     {"n1": without(BEFORE, "k2")}, {"n1": AFTER}, 10, {"k1": (8, 3), "k2": (2, 0)}),
    ("a node read only the second time has no interval",
     {"n1": BEFORE}, {"n1": AFTER, "n2": AFTER}, 10, {"k1": (8, 3), "k2": (1, 0)}),
    ("a node that was not read the second time counts nothing",
     {"n1": BEFORE, "n2": BEFORE}, {"n2": BEFORE}, 10, {"k1": (0, 0), "k2": (0, 0)}),
    ("two nodes, each with the same traffic: summed",
     {"n1": BEFORE, "n2": BEFORE}, {"n1": AFTER, "n2": AFTER}, 10, {"k1": (16, 6), "k2": (2, 0)}),
]


@pytest.mark.parametrize("what,before,after,seconds,expected", CASES, ids=[c[0] for c in CASES])
def test_requests_and_failures_per_model(what, before, after, seconds, expected):
    got = model_traffic(Scrape(100.0, before), Scrape(100.0 + seconds, after))
    assert counts(got, seconds) == expected


def test_the_capture_has_what_ray_260_exports():
    # Every series argus reads is in the capture, for both of k1's apps (the names are Ray's).
    kinds = {(k[0], dict(k[2])["application"]) for k in AFTER if k[1] == "k1"}
    # (the front end's own count is argus's, exported only while a canary runs: not in Ray's capture)
    assert kinds == {(s, app) for s in Series if s != Series.FRONT_END for app in ("llm-k1", "llm-k1-g2")}
    labels = dict(next(k[2] for k in AFTER if k[0] == Series.FAILED))
    assert {"deployment", "application", "replica", "route", "exception_type"} <= set(labels)
    raw = (FIXTURES / "after.prom").read_text()
    # `other` (not argus's) has k1's deployment name and its 4 requests, and counts for no model.
    assert 'application="other",deployment="LLMServer:k1"' in raw
    assert not any(dict(k[2])["application"] == "other" for k in AFTER)
    # The 404s for no route are only in the proxy's counter (route ""), in no deployment's.
    assert 'route="",status_code="404"} 3.0' in raw
    # Ray exports a counter from its first increment on: no error series before any error.
    assert not any(k[0] == Series.FAILED for k in BEFORE) and any(k[0] == Series.FAILED for k in AFTER)


def test_only_the_families_argus_reads_are_parsed_and_other_text_is_refused():
    with_noise = "# HELP ray_node_cpu x\n# TYPE ray_node_cpu gauge\nray_node_cpu{a=\"1\"} 3.0\n" + \
        (FIXTURES / "after.prom").read_text()
    assert parse_export(with_noise, ARGUS_NAMING) == AFTER
    assert parse_export("", ARGUS_NAMING) == {}


def test_latency_is_the_mean_over_the_interval():
    got = model_traffic(Scrape(0.0, {"n": BEFORE}), Scrape(10.0, {"n": AFTER}))
    summed = {kind: sum(v - BEFORE.get(k, 0.0) for k, v in AFTER.items() if k[1] == "k1" and k[0] == kind)
              for kind in (Series.LATENCY_SUM_MS, Series.LATENCY_COUNT)}
    assert summed[Series.LATENCY_COUNT] == 8  # the histogram counts failed requests too
    assert got["k1"].mean_latency_ms == pytest.approx(summed[Series.LATENCY_SUM_MS] / 8)
    assert 0 < got["k1"].mean_latency_ms < 10_000
    idle = model_traffic(Scrape(0.0, {"n": AFTER}), Scrape(5.0, {"n": AFTER}))
    assert idle["k1"].mean_latency_ms is None


def test_rates_are_per_second():
    got = model_traffic(Scrape(0.0, {"n": BEFORE}), Scrape(4.0, {"n": AFTER}))
    assert (got["k1"].requests_per_s, got["k1"].failures_per_s) == (2.0, 0.75)


def test_scrapes_out_of_order_are_refused():
    with pytest.raises(ValueError):
        model_traffic(Scrape(5.0, {}), Scrape(5.0, {}))


@pytest.mark.parametrize("labels,key", [
    ({"deployment": "LLMServer:k1", "application": "llm-k1"}, "k1"),
    ({"deployment": "LLMServer:k1", "application": "llm-k1-g2"}, "k1"),
    ({"deployment": "LLMServer:k1", "application": "other"}, None),        # not one of argus's apps
    ({"deployment": "ArgusIngress", "application": "argus"}, None),        # the front end
    ({"deployment": "LLMServer:", "application": "llm-"}, None),
    ({"application": "llm-k1"}, None),
])
def test_which_model_a_series_is(labels, key):
    assert ARGUS_NAMING.model_key(labels) == key
    assert ModelNaming("D:", "a-").model_key({"deployment": "D:x", "application": "a-1"}) == "x"


@pytest.mark.parametrize("text", ["<html>not metrics</html>", 'ray_serve_deployment_request_counter_total{a="1" 3'])
def test_text_that_is_not_prometheus_is_an_error(text):
    with pytest.raises(ValueError):
        parse_export(text, ARGUS_NAMING)


def test_a_model_history_has_zeros_when_idle_and_gaps_when_unread():
    busy = ModelTraffic(2.0, 0.5, 120.04)
    points = [TrafficPoint(10.0, 5.0, {"k1": busy}), TrafficPoint(15.0, 5.0, {}),
              TrafficPoint(16.0, 0.0, {}, problem="cannot reach"), TrafficPoint(20.0, 5.0, {"k2": busy})]
    assert model_history(points, "k1") == [
        {"at": 10.0, "seconds": 5.0, "requests_per_s": 2.0, "failures_per_s": 0.5, "mean_latency_ms": 120.0},
        {"at": 15.0, "seconds": 5.0, **IDLE.to_dict()},
        {"at": 16.0, "seconds": 0.0, "requests_per_s": None, "failures_per_s": None, "mean_latency_ms": None},
        {"at": 20.0, "seconds": 5.0, "requests_per_s": 0.0, "failures_per_s": 0.0, "mean_latency_ms": None}]


@pytest.mark.parametrize("window,interval,length", [(1800, 5, 361), (1800, 1, 1801), (1800, 3600, 2), (1800, 7, 258)])
def test_the_ring_holds_the_window(window, interval, length):
    assert ring_length(window, interval) == length


def test_each_alive_nodes_metrics_url_from_the_dashboards_node_summary():
    summary = json.loads((FIXTURES / "nodes-summary.json").read_text())  # captured from the same Ray
    (node,) = summary["data"]["summary"]
    # Ray reported the machine's address although the head was started with 127.0.0.1.
    assert metrics_endpoints(summary) == {node["raylet"]["nodeId"]: "http://192.0.2.2:58431/metrics"}
    dead = json.loads(json.dumps(summary))
    dead["data"]["summary"][0]["raylet"]["state"] = "DEAD"
    assert metrics_endpoints(dead) == {}
    assert metrics_endpoints({}) == {} and metrics_endpoints(None) == {}


class FakeSampler:
    """Unit test of the recorder's bookkeeping only; the real sampler is tested against a real
    Ray (tests/integration/test_traffic_from_ray.py)."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.now = 0.0

    def clock(self):
        return self.now

    def scrape(self):
        self.now += 5
        answer = self.answers.pop(0)
        if isinstance(answer, str):
            raise MetricsUnavailable(answer)
        return Scrape(self.now, {"n": answer})


def test_the_recorder_keeps_the_window_and_starts_again_after_a_failed_scrape():
    recorder = TrafficRecorder(FakeSampler([BEFORE, AFTER, "cannot reach the Ray dashboard", BEFORE, AFTER]),
                               interval_seconds=5, window_seconds=5)
    recorder.tick()
    assert recorder.history("k1")["points"] == []  # one scrape is no interval
    recorder.tick()
    recorder.tick()
    view = recorder.history("k1")
    assert (view["available"], view["problem"]) == (False, "cannot reach the Ray dashboard")
    recorder.tick()  # the first good scrape after the failure: no interval across the gap
    recorder.tick()
    view = recorder.history("k1")
    assert view["available"] is True and view["window_seconds"] == 5
    assert [p["at"] for p in view["points"]] == [15.0, 25.0]  # 2 points kept (5 s at 5 s each): 10.0 is gone
    assert [p["requests_per_s"] for p in view["points"]] == [None, 8 / 5]

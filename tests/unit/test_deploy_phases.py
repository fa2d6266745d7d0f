"""A first deploy's RUNNING event says how long it took and where Serve started its replica
(judge.deploy_phases), read from what Serve reports (the newest running replica's start_time_s),
and argusctl logs prints it (describe_event)."""
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from daemon.core.describe import describe_event
from daemon.core.records import Event
from daemon.core.states import EventType
from daemon.serving.judge import deploy_phases
from daemon.serving.observe import observed_from_status
from daemon.serving.plan import plan
from test_reconcile_plan import CPU, PER_MODEL, model, served, states

APPLIED = datetime(2026, 12, 2, 22, 13, 16, 400000, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return APPLIED + timedelta(seconds=seconds)


@pytest.mark.parametrize("applied_at, replica_started, now, expected", [
    # Serve started the replica 3.7 s after the apply; argusd saw it serve 63.8 s after the apply.
    (APPLIED, at(3.7), at(63.8), {"deploy_s": 63.8, "placed_s": 3.7, "replica_start_s": 60.1}),
    # What Serve reports has no start time: only the total.
    (APPLIED, None, at(63.8), {"deploy_s": 63.8}),
    # A replica that started before the apply (Serve kept it) or after this tick (clocks apart): no split.
    (APPLIED, at(-5), at(63.8), {"deploy_s": 63.8}),
    (APPLIED, at(70), at(63.8), {"deploy_s": 63.8}),
    # No apply time (an older store) or no clock: nothing is claimed.
    (None, at(3.7), at(63.8), {}),
    (APPLIED, at(3.7), None, {}),
])
def test_deploy_phases(applied_at, replica_started, now, expected):
    assert deploy_phases(applied_at, replica_started, now) == expected


def test_the_newest_running_replicas_start_is_read_from_serves_status():
    status = {"applications": {"llm-a": {"status": "RUNNING", "deployments": {"LLMServer:a": {
        "status": "HEALTHY", "replicas": [
            {"state": "RUNNING", "start_time_s": 100.5},
            {"state": "RUNNING", "start_time_s": 160.25},
            {"state": "STARTING", "start_time_s": 200.0},       # not running yet: not the one that serves
        ]}}}}}
    deployment = observed_from_status(status).apps["llm-a"].deployments["LLMServer:a"]
    assert deployment.running_replicas == 2
    assert deployment.newest_running_since == datetime.fromtimestamp(160.25, timezone.utc)
    bare = {"applications": {"llm-a": {"status": "RUNNING", "deployments": {"LLMServer:a": {
        "status": "HEALTHY", "replicas": [{"state": "RUNNING"}]}}}}}
    assert observed_from_status(bare).apps["llm-a"].deployments["LLMServer:a"].newest_running_since is None


def test_a_first_deploy_is_recorded_running_with_its_phases():
    applied = plan([model("a")], observed_from_status(None), capacity=None, settings=CPU, serve=PER_MODEL).apply
    deploying = replace(model("a", "DEPLOYING"), applied_at=APPLIED)

    def seen(config):
        observed = served(config)
        for app in observed.apps.values():
            for name, deployment in list(app.deployments.items()):
                if name == "LLMServer:a":
                    app.deployments[name] = replace(deployment, newest_running_since=at(3.7))
        return observed

    # The first tick that sees it healthy routes it; the next records RUNNING (test_reconcile_plan).
    p = plan([deploying], seen(applied), capacity=None, settings=CPU, serve=PER_MODEL, now=at(62.0))
    routed = seen(p.apply)
    p = plan([deploying], routed, capacity=None, settings=CPU, serve=PER_MODEL, now=at(63.8))
    assert states(p) == [("a", "RUNNING", "RUNNING")]
    assert p.transitions[0].payload == {"generation": 1, "deploy_s": 63.8, "placed_s": 3.7, "replica_start_s": 60.1}
    # The same generation running again after Serve lost its replicas: its apply was long ago, so
    # no time is claimed for this start.
    again = replace(deploying, ran_this_generation=True, was_running=True)
    p = plan([again], routed, capacity=None, settings=CPU, serve=PER_MODEL, now=at(3600))
    assert [t.payload for t in p.transitions if t.event_type == "RUNNING"] == [{"generation": 1}]


def event(payload):
    return Event(1, "m-1", "alice", None, "2026-12-02T22:14:20Z", EventType.RUNNING, payload)


@pytest.mark.parametrize("payload, text", [
    ({"generation": 1, "deploy_s": 63.8, "placed_s": 3.7, "replica_start_s": 60.1},
     "generation 1 serves, 63.8 s after it was sent to Ray Serve (Serve's build and placement 3.7 s, "
     "then the replica's start 60.1 s)"),
    ({"generation": 2, "deploy_s": 63.8}, "generation 2 serves, 63.8 s after it was sent to Ray Serve"),
    ({"generation": 1}, "generation 1 serves"),      # an event an earlier argus recorded
])
def test_logs_print_the_phases(payload, text):
    assert describe_event(event(payload)) == text

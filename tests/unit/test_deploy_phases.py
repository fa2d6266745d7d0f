"""A first deploy's RUNNING event says how long it took and where Serve started its replica
(judge.deploy_phases), read from what Serve reports (the newest running replica's start_time_s),
how that replica spent its start (the line it writes to its log, core/replica_contract.py), and
argusctl logs prints it (describe_event)."""
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from daemon.argusd import reconcile_wait
from daemon.core.describe import describe_event
from daemon.core.replica_contract import ReplicaStart, read_replica_start, replica_start_line
from daemon.core.records import Event
from daemon.core.states import EventType
from daemon.serving.judge import deploy_phases
from daemon.serving.observe import ReplicaLog, observed_from_status
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
            {"state": "RUNNING", "start_time_s": 160.25, "node_id": "n2", "log_file_path": "/serve/replica_2.log"},
            {"state": "RUNNING", "start_time_s": 100.5, "node_id": "n1", "log_file_path": "/serve/replica_1.log"},
            {"state": "STARTING", "start_time_s": 200.0, "node_id": "n3",   # not running yet: not the one that serves
             "log_file_path": "/serve/replica_3.log"},
        ]}}}}}
    deployment = observed_from_status(status).apps["llm-a"].deployments["LLMServer:a"]
    assert deployment.running_replicas == 2
    assert deployment.newest_running_since == datetime.fromtimestamp(160.25, timezone.utc)
    assert deployment.newest_running_log == ReplicaLog("n2", "/serve/replica_2.log")
    bare = {"applications": {"llm-a": {"status": "RUNNING", "deployments": {"LLMServer:a": {
        "status": "HEALTHY", "replicas": [{"state": "RUNNING"}]}}}}}
    seen = observed_from_status(bare).apps["llm-a"].deployments["LLMServer:a"]
    assert seen.newest_running_since is None and seen.newest_running_log is None
    # A start time without the node or the file: when it started is known, not where its log is.
    no_node = {"applications": {"llm-a": {"status": "RUNNING", "deployments": {"LLMServer:a": {
        "status": "HEALTHY", "replicas": [{"state": "RUNNING", "start_time_s": 1.0, "log_file_path": "/f.log"}]}}}}}
    seen = observed_from_status(no_node).apps["llm-a"].deployments["LLMServer:a"]
    assert seen.newest_running_since is not None and seen.newest_running_log is None


def test_a_first_deploy_is_recorded_running_with_its_phases():
    applied = plan([model("a")], observed_from_status(None), capacity=None, settings=CPU, serve=PER_MODEL).apply
    deploying = replace(model("a", "DEPLOYING"), applied_at=APPLIED)

    log = ReplicaLog("n1", "/serve/replica_a.log")

    def seen(config):
        observed = served(config)
        for app in observed.apps.values():
            for name, deployment in list(app.deployments.items()):
                if name == "LLMServer:a":
                    app.deployments[name] = replace(deployment, newest_running_since=at(3.7),
                                                    newest_running_log=log)
        return observed

    # The first tick that sees it healthy routes it; the next records RUNNING (test_reconcile_plan).
    p = plan([deploying], seen(applied), capacity=None, settings=CPU, serve=PER_MODEL, now=at(62.0))
    assert p.transitions == [] and p.awaiting_route   # held back until routed: argusd looks again soon
    routed = seen(p.apply)
    p = plan([deploying], routed, capacity=None, settings=CPU, serve=PER_MODEL, now=at(63.8))
    assert states(p) == [("a", "RUNNING", "RUNNING")] and not p.awaiting_route
    assert p.transitions[0].payload == {"generation": 1, "deploy_s": 63.8, "placed_s": 3.7, "replica_start_s": 60.1}
    # The replica that started is named for the shell, which reads its own phases from its log.
    assert p.transitions[0].replica_log == log
    # The same generation running again after Serve lost its replicas: its apply was long ago, so
    # no time is claimed for this start.
    again = replace(deploying, ran_this_generation=True, was_running=True)
    p = plan([again], routed, capacity=None, settings=CPU, serve=PER_MODEL, now=at(3600))
    assert [(t.payload, t.replica_log) for t in p.transitions if t.event_type == "RUNNING"] == [
        ({"generation": 1}, None)]


def event(payload):
    return Event(1, "m-1", "alice", None, "2026-12-02T22:14:20Z", EventType.RUNNING, payload)


@pytest.mark.parametrize("payload, text", [
    ({"generation": 1, "deploy_s": 63.8, "placed_s": 3.7, "replica_start_s": 60.1},
     "generation 1 serves, 63.8 s after it was sent to Ray Serve (Serve's build and placement 3.7 s, "
     "then the replica's start 60.1 s)"),
    ({"generation": 1, "deploy_s": 63.8, "placed_s": 3.7, "replica_start_s": 60.1, "replica_imports_s": 19.4,
      "replica_engine_s": 34.1},
     "generation 1 serves, 63.8 s after it was sent to Ray Serve (Serve's build and placement 3.7 s, "
     "then the replica's start 60.1 s: its process and imports 19.4 s, vLLM's engine 34.1 s)"),
    ({"generation": 2, "deploy_s": 63.8}, "generation 2 serves, 63.8 s after it was sent to Ray Serve"),
    ({"generation": 1}, "generation 1 serves"),      # an event an earlier argus recorded
])
def test_logs_print_the_phases(payload, text):
    assert describe_event(event(payload)) == text


def test_a_replica_reports_its_start_in_one_line_argusd_reads_back():
    line = replica_start_line(process_created=1000.0, constructed=1019.43, engine_begun=1019.6, engine_started=1053.7)
    assert line == 'argus replica start: {"imports_s": 19.4, "engine_s": 34.1}'
    # As Serve's text log format writes it, with whatever it puts after the message.
    text = ("INFO 2026-12-03 06:01:02,345 llm-m-1_LLMServer:m-1 abc -- Started initializing replica.\n"
            f"INFO 2026-12-03 06:01:36,417 llm-m-1_LLMServer:m-1 abc -- {line} {{'extra': 1}}\n"
            "INFO 2026-12-03 06:01:36,420 llm-m-1_LLMServer:m-1 abc -- Finished initializing replica.\n")
    assert read_replica_start(text) == ReplicaStart(19.4, 34.1)
    assert ReplicaStart(19.4, 34.1).to_payload() == {"replica_imports_s": 19.4, "replica_engine_s": 34.1}


@pytest.mark.parametrize("text, expected", [
    # The newest line wins (a log holds one start; a replica restarted in place writes another).
    ('argus replica start: {"imports_s": 1, "engine_s": 2}\nargus replica start: {"imports_s": 3, "engine_s": 4}',
     ReplicaStart(3.0, 4.0)),
    ("no such line", None),
    ("", None),
    # A line not as written by replica_start_line is ignored, not guessed at.
    ('argus replica start: {"imports": 1, "engine": 2}', None),
    ("argus replica start: 19.4 s", None),
    ('argus replica start: {"imports_s": "x", "engine_s": 2}', None),
    ('argus replica start: {"imports_s": -1, "engine_s": 2}', None),   # clocks moved under it
])
def test_reading_a_replicas_start(text, expected):
    assert read_replica_start(text) == expected


@pytest.mark.parametrize("poll, recheck_soon, soon_before, expected", [
    (2.0, False, 0, (2.0, 0)),     # nothing waits to be routed: the poll interval
    (2.0, True, 0, (0.5, 1)),      # a model serves and waits for the front end's route: look again soon
    (5.0, True, 9, (0.5, 10)),     # ...up to ten times in a row
    (5.0, True, 10, (5.0, 11)),    # a front end that never takes the route is not polled fast forever
    (5.0, False, 11, (5.0, 0)),    # ...and a tick that waits for nothing starts the count again
    (0.2, True, 0, (0.2, 1)),      # a poll faster than the recheck stays as fast
])
def test_reconcile_wait(poll, recheck_soon, soon_before, expected):
    assert reconcile_wait(poll, recheck_soon, soon_before) == expected

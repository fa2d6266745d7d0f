"""A canary rollout through argusd's loop in-process: a real store fed by a real git repo, Serve's
REST API stood in by tests/serve_fake.py, Ray's metrics export by scripted scrapes of real
Prometheus text (what Ray 2.60's replicas export, per Serve app). It checks the shell's wiring:
the canary begins after the probe, the front end's route carries the split, `argusctl status`
says it, the counts argusd reads decide, and a restarted argusd resumes it. The decision itself
is table-tested in tests/unit/test_canary.py; the split on a real Serve in test_frontend_serve.py."""
from datetime import datetime, timedelta, timezone

import pytest

from daemon.argusd import Daemon
from daemon.config import load_config
from daemon.core.states import EventType, ModelState
from daemon.core.traffic import Scrape, parse_export
from daemon.replicas.names import model_app_name as app_name
from daemon.store import Store
from daemon.traffic import ARGUS_NAMING, CanaryWatch
from helpers import GitOps, run_argusctl, spec, write_config
from serve_fake import FakeServe

T = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
CANARY = "rollout:\n  canary_percent: 10\n  canary_seconds: 60\n"


class Clock:
    def __init__(self) -> None:
        self.now = T

    def __call__(self) -> datetime:
        return self.now


class Metrics:
    """Ray's metrics export as argusd's sampler returns it: each generation's cumulative counts of
    requests that succeeded and that failed."""

    def __init__(self, clock: Clock, key: str) -> None:
        self.clock, self.key = clock, key
        self.counts = {app_name(key): [0, 0], app_name(key) + "-b": [0, 0]}   # ok, failed

    def scrape(self) -> Scrape:
        line = ('ray_serve_deployment_{}_counter_total{{application="{}",deployment="LLMServer:{}",replica="r",'
                'route="/"}} {}')
        text = ["# TYPE ray_serve_deployment_request_counter_total counter"]
        text += [line.format("request", app, self.key, ok) for app, (ok, _) in self.counts.items()]
        text += ["# TYPE ray_serve_deployment_error_counter_total counter"]
        text += [line.format("error", app, self.key, bad) for app, (_, bad) in self.counts.items()]
        return Scrape(self.clock().timestamp(), {"n1": parse_export("\n".join(text) + "\n", ARGUS_NAMING)})


@pytest.fixture
def world(tmp_path):
    (tmp_path / "private" / "hf" / "m").mkdir(parents=True)
    gitops = GitOps(tmp_path / "g")
    path = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "s.db", repo=gitops.bare)
    store = Store.open(tmp_path / "s.db")
    serve = FakeServe()
    daemon = Daemon(load_config(path), store, serve, watch=False)
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("a")
    gitops.push()
    yield gitops, daemon, serve, store, path
    daemon._drop_repo()
    store.close()


def wire(daemon: Daemon, clock: Clock, metrics: Metrics | None) -> None:
    daemon.reconciler.clock = clock
    daemon.reconciler.probe_rollout = lambda model_id: (True, None)
    if metrics is not None:
        daemon.reconciler.canary_watch = CanaryWatch(metrics, 30, monotonic=lambda: clock().timestamp(),
                                                     clock=lambda: clock().timestamp())


def front_route(serve, model_id):
    routes = serve.apps["argus"]["deployed_app_config"]["deployments"][0]["user_config"]["models"]
    return next(r for r in routes if r["model_id"] == model_id)


def into_canary(world, clock):
    """Generation 1 runs; generation 2 (a canary of 10 % for 60 s) is probed and begins its
    canary at T. Returns the model and its candidate's app."""
    gitops, daemon, serve, store, config = world
    wire(daemon, clock, None)
    daemon.tick()
    serve.settle()
    daemon.tick()
    daemon.tick()
    model = store.list_models()[0]
    assert model.state == ModelState.RUNNING
    gitops.write("models.d/alice/a.yaml", spec("a") + "engine_kwargs:\n  max_num_seqs: 8\n" + CANARY)
    gitops.commit("a: max_num_seqs 8, with a canary")
    gitops.push()
    daemon.tick()
    assert store.list_models()[0].state == ModelState.DEPLOYING
    serve.settle()
    daemon.tick()   # healthy: probed, answered, the canary begins
    began = [e for e in store.events() if e.event_type == EventType.CANARY_STARTED]
    assert [e.payload["percent"] for e in began] == [10]
    return model, app_name(model.model_key) + "-b"


@pytest.mark.parametrize("new_fails", [True, False])
def test_a_canary_runs_through_the_loop_and_a_restarted_argusd_decides_it(world, new_fails):
    gitops, daemon, serve, store, config = world
    clock = Clock()
    model, candidate = into_canary(world, clock)
    route = front_route(serve, model.model_id)
    assert (route["app"], route["canary"]) == (app_name(model.model_key), {
        "app": candidate, "deployment": f"LLMServer:{model.model_key}", "percent": 10})
    shown = run_argusctl("--config", str(config), "status", "-o", "json")
    (row,) = __import__("json").loads(shown.stdout)["models"]
    assert (row["state"], row["reason"]) == ("DEPLOYING", "generation 2 takes 10 % beside generation 1 (serving) "
                                                          "for 60 s (canary)")
    # argusd restarts mid-canary: the new one reads the canary back (the store's event, Serve's
    # apps) and reads Ray's metrics from its own start.
    again = Daemon(daemon.config, store, serve, watch=False)
    metrics = Metrics(clock, model.model_key)
    wire(again, clock, metrics)
    try:
        puts = len(serve.puts)
        for seconds, old, new in ((10, (0, 0), (0, 0)), (40, (270, 3), (30, 9 if new_fails else 0)),
                                  (70, (540, 6), (60, 18 if new_fails else 0))):
            clock.now = T + timedelta(seconds=seconds)
            metrics.counts[app_name(model.model_key)] = list(old)
            metrics.counts[candidate] = list(new)
            again.tick()
        assert len(serve.puts) == puts + 1   # nothing re-applied during the canary; then its end
        row = store.list_models()[0]
        if new_fails:
            assert row.state == ModelState.FAILED and row.applied_generation == 1
            assert row.error_summary == (
                "generation 2 failed: its failure rate in the canary was significantly above the serving one's "
                "(z = 9.4 > 2; generation 2: 18 of 78 requests failed (23.1 %); generation 1: 6 of 546 requests "
                "failed (1.1 %)); "
                "serving generation 1")
            assert sorted(serve.apps) == ["argus", app_name(model.model_key)]
            assert "canary" not in front_route(serve, model.model_id)
        else:
            assert row.state == ModelState.RUNNING and row.applied_generation == 2
            (switched,) = [e for e in store.events() if e.event_type == EventType.SWITCHED]
            assert switched.payload["message"] == (
                "switched from generation 1 to 2: canary passed (generation 2: 0 of 60 requests failed (0.0 %); "
                "generation 1: 6 of 546 requests failed (1.1 %))")
            assert front_route(serve, model.model_id)["app"] == candidate
            assert "canary" not in front_route(serve, model.model_id)
    finally:
        again._drop_repo()


@pytest.mark.parametrize("restart_at", [45, 90, 600])
def test_an_argusd_restarted_late_in_a_canary_waits_for_a_full_window_before_deciding(world, restart_at):
    """Restarted 45 s into a 60 s canary, or after its end (or long after: argusd was down): the
    counts before are gone; it used to switch at once ("not compared": no counts yet) or on the
    30 s it read at the end (10 requests on the new generation, too few to compare) a generation
    that failed 60 % of its requests. It waits until it read 60 s, the split in place, then
    rolls back."""
    gitops, daemon, serve, store, config = world
    clock = Clock()
    model, candidate = into_canary(world, clock)
    again = Daemon(daemon.config, store, serve, watch=False)
    metrics = Metrics(clock, model.model_key)
    wire(again, clock, metrics)
    try:
        puts = len(serve.puts)
        old, new = [0, 0], [0, 0]
        for tick in range(3):      # a tick every 30 s from the restart; 90 and 10 requests per 30 s
            clock.now = T + timedelta(seconds=restart_at + 30 * tick)
            metrics.counts[app_name(model.model_key)] = list(old)
            metrics.counts[candidate] = list(new)
            again.tick()
            row = store.list_models()[0]
            if tick < 2:
                assert row.state == ModelState.DEPLOYING and len(serve.puts) == puts, tick
                assert front_route(serve, model.model_id)["canary"]["app"] == candidate
            old, new = [old[0] + 89, old[1] + 1], [new[0] + 4, new[1] + 6]
        assert row.state == ModelState.FAILED and row.applied_generation == 1
        assert row.error_summary == (
            "generation 2 failed: its failure rate in the canary was significantly above the serving one's "
            "(z = 9.8 > 2; generation 2: 12 of 20 requests failed (60.0 %); generation 1: 2 of 180 requests failed "
            "(1.1 %)); serving generation 1")
        assert "canary" not in front_route(serve, model.model_id)
    finally:
        again._drop_repo()

"""The reconcile shell and the daemon loop in-process: a real store fed by a real git repo,
and Serve's REST API stood in by tests/serve_fake.py. The decisions are table-tested in
tests/unit/test_reconcile_plan.py; the real Serve runs in tests/e2e."""
import json
import os

import time

import pytest

from daemon.argusd import Daemon
from daemon.config import load_config
from daemon.core.describe import describe_event
from daemon.core.states import EventType, ModelState
from daemon.replicas.names import MODEL_APP_PREFIX, model_app_name as app_name
from daemon.serving.reconciler import Reconciler
from daemon.store import Store
from helpers import GitOps, run_argusctl, spec, write_config
from serve_fake import FakeServe


@pytest.fixture
def world(tmp_path):
    (tmp_path / "private" / "hf" / "m").mkdir(parents=True)
    gitops = GitOps(tmp_path / "g")
    path = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "s.db", repo=gitops.bare)
    config = load_config(path)
    store = Store.open(tmp_path / "s.db")
    serve = FakeServe()
    daemon = Daemon(config, store, serve, watch=False)
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("a")
    gitops.push()
    yield gitops, daemon, serve, store
    daemon._drop_repo()
    store.close()


def state_of(store, suffix="a"):
    return next(m.state for m in store.list_models() if m.model_id_suffix == suffix)


def events_of(store, event_type):
    return [e for e in store.events() if e.event_type == event_type]


def test_a_push_goes_queued_deploying_running_in_the_loop(world):
    gitops, daemon, serve, store = world
    assert daemon.tick()
    assert state_of(store) == ModelState.DEPLOYING and len(serve.puts) == 1
    assert daemon.tick() and state_of(store) == ModelState.DEPLOYING  # Serve still updating
    assert not daemon.reconcile_soon
    serve.settle()
    assert daemon.tick() and state_of(store) == ModelState.DEPLOYING   # routed now; recorded the tick after
    assert daemon.reconcile_soon   # ...which comes sooner than the poll interval
    assert daemon.tick() and state_of(store) == ModelState.RUNNING
    assert not daemon.reconcile_soon
    puts = len(serve.puts)
    assert daemon.tick() and len(serve.puts) == puts  # level-triggered: a no-op writes nothing
    events = len(store.events())
    assert daemon.tick() and len(store.events()) == events


def test_a_first_start_is_recorded_with_how_its_replica_spent_it(world):
    """The RUNNING event of a first start carries the replica's own phases, read from the line
    its replica wrote to its Serve log (Ray's log API, stood in here); a log that cannot be read
    leaves them out and nothing else."""
    gitops, daemon, serve, store = world
    assert daemon.tick()
    serve.settle(started_at=time.time())
    (app,) = [name for name in serve.apps if name.startswith(MODEL_APP_PREFIX)]
    (deployment,) = serve.apps[app]["deployments"]
    log_file = f"/serve/replica_{app}_{deployment}.log"
    serve.replica_logs[("node-1", log_file)] = (
        "INFO 2026-12-03 06:01:02,345 replica -- Started initializing replica.\n"
        'INFO 2026-12-03 06:01:36,417 replica -- argus replica start: {"imports_s": 19.4, "engine_s": 34.1}\n'
        "INFO 2026-12-03 06:01:36,420 replica -- Finished initializing replica.\n")
    assert daemon.tick() and daemon.tick() and state_of(store) == ModelState.RUNNING
    (running,) = events_of(store, EventType.RUNNING)
    assert serve.log_reads == [("node-1", log_file)]   # read once: for the tick that recorded RUNNING
    assert {k: running.payload[k] for k in ("replica_imports_s", "replica_engine_s")} == {
        "replica_imports_s": 19.4, "replica_engine_s": 34.1}
    assert {"deploy_s", "placed_s", "replica_start_s"} <= set(running.payload)
    assert describe_event(running).endswith(": its process and imports 19.4 s, vLLM's engine 34.1 s)")


def test_a_first_start_whose_replica_log_cannot_be_read_is_recorded_without_its_phases(world):
    gitops, daemon, serve, store = world
    assert daemon.tick()
    serve.settle(started_at=time.time())
    assert daemon.tick() and daemon.tick() and state_of(store) == ModelState.RUNNING
    (running,) = events_of(store, EventType.RUNNING)
    assert len(serve.log_reads) == 1
    assert {"deploy_s", "placed_s", "replica_start_s"} <= set(running.payload)
    assert not {"replica_imports_s", "replica_engine_s"} & set(running.payload)


def test_a_replica_log_that_reads_as_anything_unexpected_costs_only_its_own_phases(world):
    """Two models start in one tick: the first one's log read raises (not a ClusterError: a
    reply Ray cut off, bytes that are not UTF-8), the second one's is not read at all (a node
    whose agent does not answer must not hold the tick twice); both RUNNING events are recorded,
    without the replica's phases."""
    gitops, daemon, serve, store = world
    gitops.write("models.d/alice/b.yaml", spec("b"))
    gitops.commit("b")
    gitops.push()
    assert daemon.tick()
    serve.settle(started_at=time.time())
    for app in [name for name in serve.apps if name.startswith(MODEL_APP_PREFIX)]:
        (deployment,) = serve.apps[app]["deployments"]
        serve.replica_logs[("node-1", f"/serve/replica_{app}_{deployment}.log")] = ValueError("not text")
    assert daemon.tick() and daemon.tick()
    assert state_of(store, "a") == state_of(store, "b") == ModelState.RUNNING
    running = events_of(store, EventType.RUNNING)
    assert len(running) == 2 and len(serve.log_reads) == 1
    assert all("deploy_s" in e.payload and "replica_imports_s" not in e.payload for e in running)


def test_argusd_looks_again_soon_while_the_front_end_takes_a_new_route(world):
    """The tick that routes a model that serves, and the no-op ticks while the front end's
    replicas take the new route table, each ask for the next tick soon; the tick that records
    RUNNING does not."""
    gitops, daemon, serve, store = world
    serve.slow_frontend = True
    assert daemon.tick()
    serve.settle()
    assert daemon.tick() and daemon.reconcile_soon and state_of(store) == ModelState.DEPLOYING   # routed
    puts = len(serve.puts)
    assert daemon.tick() and daemon.reconcile_soon and len(serve.puts) == puts   # a no-op: the front end updates
    assert state_of(store) == ModelState.DEPLOYING
    serve.settle()
    assert daemon.tick() and not daemon.reconcile_soon and state_of(store) == ModelState.RUNNING


def test_an_apply_failure_is_recorded_once_until_it_changes(world):
    gitops, daemon, serve, store = world
    serve.put_error = "PUT /api/serve/applications/ failed (500): boom"
    for _ in range(3):
        assert not daemon.tick()
    assert len(events_of(store, EventType.APPLY_FAILED)) == 1
    assert state_of(store) == ModelState.QUEUED  # last attempted is not last applied
    serve.put_error = "cannot reach the Ray dashboard"
    daemon.tick()
    assert [e.payload["message"] for e in events_of(store, EventType.APPLY_FAILED)] == [
        "PUT /api/serve/applications/ failed (500): boom", "cannot reach the Ray dashboard"]
    serve.put_error = None
    assert daemon.tick() and state_of(store) == ModelState.DEPLOYING


def test_drift_is_repaired(world):
    gitops, daemon, serve, store = world
    daemon.tick()
    serve.settle()
    daemon.tick()
    daemon.tick()   # the front end routes it; RUNNING is recorded the tick after
    assert state_of(store) == ModelState.RUNNING
    key = store.list_models()[0].model_key
    serve.drop(app_name(key))
    daemon.tick()
    # Its app removed behind argusd's back: Serve has no replica of it, so not RUNNING; applied again.
    (lost,) = events_of(store, EventType.REPLICAS_LOST)
    assert lost.payload == {"message": "Serve has no replica of it; redeploying"}
    assert state_of(store) == ModelState.DEPLOYING
    assert app_name(key) in serve.apps  # applied again
    serve.settle()
    daemon.tick()
    daemon.tick()   # the front end routes it; RUNNING is recorded the tick after
    assert state_of(store) == ModelState.RUNNING


def test_a_failed_deployment_fails_alone(world):
    gitops, daemon, serve, store = world
    gitops.write("models.d/alice/b.yaml", spec("b"))
    gitops.commit("b")
    gitops.push()
    daemon.tick()
    serve.settle()
    daemon.tick()
    keys = {m.model_id_suffix: m.model_key for m in store.list_models()}
    serve.fail(f"LLMServer:{keys['b']}", "ValueError: max_model_len (1000000) is greater than the model's")
    assert serve.jobs == []
    daemon.tick()
    assert state_of(store, "b") == ModelState.FAILED
    (job,) = serve.jobs  # its engine processes may have outlived it: the reaper job runs once
    assert "VLLM::" in job and "NodeAffinitySchedulingStrategy" in job
    assert "max_model_len (1000000)" in next(m.error_summary for m in store.list_models() if m.model_id_suffix == "b")
    assert state_of(store, "a") == ModelState.RUNNING


def test_the_reconciler_takes_its_client(world):
    gitops, daemon, serve, store = world
    assert isinstance(daemon.reconciler, Reconciler) and daemon.reconciler.client is serve


def test_a_transition_planned_before_a_concurrent_sync_is_dropped(world):
    """Sync runs beside reconcile: a commit recorded while reconcile's PUT is in flight must
    not be overwritten by the transitions planned from the older state."""
    gitops, daemon, serve, store = world
    real_put = serve.put_config

    def put_while_a_push_lands(config):
        real_put(config)
        gitops.write("models.d/alice/a.yaml", spec("a", replicas=2))
        gitops.commit("a: 2 replicas")
        gitops.push()
        assert daemon._sync()  # what the sync thread does meanwhile
        serve.put_config = real_put

    serve.put_config = put_while_a_push_lands
    daemon.tick()
    model = store.list_models()[0]
    assert (model.state, model.generation) == (ModelState.QUEUED, 2)  # not DEPLOYING for generation 1
    assert not events_of(store, EventType.APPLIED)
    assert daemon.tick()
    model = store.get_model(model.model_key)
    assert (model.state, model.attempted_generation) == (ModelState.DEPLOYING, 2)


def test_an_adapter_pushed_next_to_its_base_goes_through_its_states(world):
    """The shell with adapters: the folder read from disk, the probe asked only once Serve and
    the front end hold the adapter (the probe stands in for the endpoint here; the real one
    is in the zero-disruption e2e), and the base's app changed only in place."""
    gitops, daemon, serve, store = world
    root = daemon.config.storage.root
    folder = f"{root}/users/alice/adapters/t"
    os.makedirs(folder)
    with open(f"{folder}/adapter_config.json", "w") as handle:
        json.dump({"peft_type": "LORA", "r": 8}, handle)
    gitops.write("models.d/alice/a.yaml", spec("a") + "adapters:\n  max_rank: 8\n")
    gitops.commit("a takes adapters")
    gitops.push()
    daemon.tick()
    serve.settle()
    daemon.tick()
    daemon.tick()   # the front end routes it; RUNNING is recorded the tick after
    assert state_of(store) == ModelState.RUNNING
    base_key = next(m.model_key for m in store.list_models() if m.model_id_suffix == "a")
    base_app = serve.apps[app_name(base_key)]
    asked = []
    daemon.reconciler.probe = lambda model_id: (asked.append(model_id), (True, None))[1]
    gitops.write("models.d/alice/t.yaml", "model_id: t\nbase_model: a\nmodel_source: $HOME/adapters/t\n")
    gitops.commit("adapter t")
    gitops.push()
    daemon.tick()
    assert state_of(store, "t") == ModelState.DEPLOYING and not asked   # the table goes in first
    daemon.tick()
    assert state_of(store, "t") == ModelState.RUNNING and len(asked) == 1
    assert serve.apps[app_name(base_key)] is base_app and base_app["status"] == "RUNNING"  # applied in place
    gitops.rm("models.d/alice/t.yaml")
    gitops.commit("no t")
    gitops.push()
    daemon.tick()
    serve.settle()
    daemon.tick()
    daemon.tick()   # the front end routes it; RUNNING is recorded the tick after
    assert next(m.state for m in store.list_models(include_deleted=True) if m.model_id_suffix == "t") == "DELETED"


def test_a_ray_restart_is_not_shown_as_running(world, tmp_path):
    """Ray stopped (argusd cannot reach it), then started empty: status says so at each step,
    records each change once, and says RUNNING again only once Serve runs the model again."""
    gitops, daemon, serve, store = world
    config = tmp_path / "c.yaml"
    daemon.tick()
    serve.settle()
    daemon.tick()
    daemon.tick()   # the front end routes it; RUNNING is recorded the tick after
    assert state_of(store) == ModelState.RUNNING
    # Ray stopped: the dashboard does not answer.
    serve.unreachable = "cannot reach the Ray dashboard at http://127.0.0.1:8265 (Connection refused)"
    for _ in range(3):
        assert not daemon.tick()
    (down,) = events_of(store, EventType.CLUSTER_UNREACHABLE)
    assert down.model_key is None and "Connection refused" in down.payload["message"]
    shown = status_json(config)
    assert shown["cluster"] == {"reachable": False, "since": down.time, "message": down.payload["message"]}
    (row,) = shown["models"]
    assert (row["state"], row["state_shown"]) == ("RUNNING", "UNKNOWN")
    assert row["reason"] == f"cluster unreachable since {down.time[:19]}Z; last seen RUNNING"
    table = run_argusctl("--config", str(config), "status").stdout
    assert f"Ray Serve: unreachable since {down.time[:19]}Z" in table and " UNKNOWN " in table
    assert " RUNNING " not in table.splitlines()[-1]
    detail = run_argusctl("--config", str(config), "status", "a").stdout
    assert "State:" in detail and "UNKNOWN" in detail.split("State:")[1].splitlines()[0]
    assert f"cluster unreachable since {down.time[:19]}Z; last seen RUNNING" in detail
    # Ray is back, with nothing in Serve: not RUNNING, redeployed, recorded once.
    serve.unreachable = None
    serve.restart()
    for _ in range(3):
        assert daemon.tick()
    assert len(events_of(store, EventType.CLUSTER_REACHABLE)) == 1
    assert len(events_of(store, EventType.REPLICAS_LOST)) == 1
    assert len(serve.jobs) == 1   # engine processes the old replicas left behind are reaped, once
    (row,) = status_json(config)["models"]
    assert (row["state_shown"], row["reason"]) == ("DEPLOYING", "Serve has no replica of it; redeploying")
    assert status_json(config)["cluster"] == {"reachable": True}
    assert app_name(store.list_models()[0].model_key) in serve.apps
    serve.settle()
    assert daemon.tick()
    (row,) = status_json(config)["models"]
    assert (row["state_shown"], row["reason"]) == ("RUNNING", "")


def test_why_a_model_is_not_up_is_shown_while_serve_retries(world, tmp_path):
    gitops, daemon, serve, store = world
    daemon.tick()
    key = store.list_models()[0].model_key
    retry = ("A replica failed to start with exception. Retrying {} more time(s). Error:\n"
             "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
             "ValueError: max_model_len (999999) is greater than the derived max_model_len (8192).")
    for remaining in (2, 1, 0):
        serve.retrying(f"LLMServer:{key}", retry.format(remaining))
        assert daemon.tick()
    (event,) = events_of(store, EventType.REPLICA_START_FAILED)
    reason = ("A replica failed to start with exception. ValueError: max_model_len (999999) is greater than the "
              "derived max_model_len (8192).")
    assert event.payload == {"message": reason}
    (row,) = status_json(tmp_path / "c.yaml")["models"]
    assert (row["state"], row["reason"]) == ("DEPLOYING", reason)
    serve.fail(f"LLMServer:{key}", "The deployment failed to start 3 times in a row.")
    daemon.tick()
    assert state_of(store) == ModelState.FAILED


def status_json(config):
    result = run_argusctl("--config", str(config), "status", "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_nothing_is_applied_while_the_store_is_behind_git(world, tmp_path):
    """A store that has recorded no commit (new or lost) or is being rebuilt from the history
    would apply what users did not commit (no models: every app removed; an older commit:
    older versions): reconcile leaves Serve as it is, read from the store's own state each tick,
    and applies again once sync has caught up."""
    from daemon.core.spec import SpecPolicy
    from daemon.gitrepo import GitRepo
    from daemon.serving.reconciler import ReconcileOutcome, sync_behind
    from daemon.sync.syncer import Syncer

    gitops, daemon, serve, store = world
    daemon.tick()
    serve.settle()
    daemon.tick()
    daemon.tick()   # the front end routes it; RUNNING is recorded the tick after
    assert state_of(store) == ModelState.RUNNING
    running, puts = set(serve.apps), len(serve.puts)
    fresh = Store.open(tmp_path / "fresh.db")
    try:
        reconciler = Reconciler(fresh, serve, daemon.config, reap=lambda: None)
        assert sync_behind(fresh) == "the store has recorded no commit yet"
        assert reconciler.tick().outcome == ReconcileOutcome.WAITING_FOR_SYNC
        assert reconciler.tick().outcome == ReconcileOutcome.WAITING_FOR_SYNC
        assert set(serve.apps) == running and len(serve.puts) == puts   # nothing removed
        Syncer(fresh, GitRepo(gitops.bare), "main", SpecPolicy.from_config(daemon.config)).sync_once()
        assert sync_behind(fresh) is None   # the rebuild reached the head in the same pass
        with fresh.transaction():
            fresh.mark_rebuilding("2026-01-01T00:00:00Z")   # as a rebuild between two commits leaves it
        assert reconciler.tick().outcome == ReconcileOutcome.WAITING_FOR_SYNC and len(serve.puts) == puts
        with fresh.transaction():
            fresh.rebuilt()
        assert reconciler.tick().outcome != ReconcileOutcome.WAITING_FOR_SYNC
    finally:
        fresh.close()


def test_a_change_rolls_out_beside_the_serving_app_and_a_restarted_argusd_finishes_it(world):
    """The shell with a rollout: the new generation goes into the second slot, the probe (a
    stand-in for the endpoint here; the real one is in the zero-disruption e2e) is asked only
    once Serve reports it healthy, and the old app goes once the front end routes to the new.
    argusd restarted in between (a new Daemon on the same store and Serve) carries on."""
    gitops, daemon, serve, store = world
    daemon.tick()
    serve.settle()
    daemon.tick()
    daemon.tick()   # the front end routes it; RUNNING is recorded the tick after
    key = next(m.model_key for m in store.list_models())
    assert state_of(store) == ModelState.RUNNING and list(serve.apps) == ["argus", app_name(key)]
    gitops.write("models.d/alice/a.yaml", spec("a") + "engine_kwargs:\n  max_num_seqs: 8\n")
    gitops.commit("a: max_num_seqs 8")
    gitops.push()
    asked = []
    daemon.reconciler.probe_rollout = lambda model_id: (asked.append(model_id), (True, None))[1]
    daemon.tick()
    assert state_of(store) == ModelState.DEPLOYING
    assert sorted(serve.apps) == ["argus", app_name(key), app_name(key) + "-b"]
    assert serve.apps[app_name(key)]["status"] == "RUNNING"          # the serving app was not touched
    daemon.tick()
    assert not asked                                                  # not healthy yet: not asked
    # argusd restarts mid-rollout: the new one reads the rollout back from the store and Serve.
    again = Daemon(daemon.config, store, serve, watch=False)
    again.reconciler.probe_rollout = lambda model_id: (asked.append(model_id), (True, None))[1]
    serve.settle()
    try:
        again.tick()
        model = store.list_models()[0]
        assert asked == [f"{model.model_id}@next"]
        assert model.state == ModelState.RUNNING and model.applied_generation == model.generation == 2
        assert [e.payload["message"] for e in events_of(store, EventType.SWITCHED)] == ["switched from generation 1 to 2"]
        again.tick()
        assert sorted(serve.apps) == ["argus", app_name(key) + "-b"]  # the old generation drained
        routes = serve.apps["argus"]["deployed_app_config"]["deployments"][0]["user_config"]["models"]
        assert [(r["model_id"], r["app"]) for r in routes] == [(model.model_id, app_name(key) + "-b")]
    finally:
        again._drop_repo()


AUTOSCALED = ("model_id: {id}\nmodel_source: $HOME/common/hf/m\n"
              "autoscaling:\n  min_replicas: 0\n  max_replicas: 2\n  scale_down_delay_s: 60\n")


def test_a_rollout_of_a_model_at_zero_wakes_it_in_the_background_and_probes_once_a_replica_runs(world):
    """The new generation of a model at zero replicas is ready at zero; its probe's request would
    hold the tick for a whole cold start (and the lease it renews), so the shell sends it in the
    background, once, and probes for the verdict on a later tick, once a replica runs."""
    import threading

    gitops, daemon, serve, store = world
    gitops.write("models.d/alice/a.yaml", AUTOSCALED.format(id="a"))
    gitops.commit("a autoscaled")
    gitops.push()
    daemon.tick()
    serve.settle()
    daemon.tick()
    daemon.tick()
    assert state_of(store) == ModelState.RUNNING
    key = store.list_models()[0].model_key
    gitops.write("models.d/alice/a.yaml", AUTOSCALED.format(id="a") + "engine_kwargs:\n  max_num_seqs: 8\n")
    gitops.commit("a: max_num_seqs 8")
    gitops.push()
    release, asked = threading.Event(), []

    def probe(model_id, *timeout):   # a cold start: the request is held until a replica runs
        asked.append((model_id, timeout))
        if timeout:
            release.wait(30)
        return True, None

    daemon.reconciler.probe_rollout = probe
    daemon.tick()
    serve.settle()                                # the candidate is healthy at zero replicas
    started = time.monotonic()
    daemon.tick()
    daemon.tick()
    assert time.monotonic() - started < 10        # the ticks did not wait for the wake
    model_id = store.list_models()[0].model_id
    assert [a[0] for a in asked] == [f"{model_id}@next"] and asked[0][1]   # sent once, in the background
    assert state_of(store) == ModelState.DEPLOYING                         # no verdict from the wake
    serve.scale(f"LLMServer:{key}", running=1, target=1)                   # woken: a replica runs
    release.set()
    daemon.tick()
    model = store.list_models()[0]
    assert asked[-1] == (f"{model_id}@next", ()) and model.state == ModelState.RUNNING
    assert model.applied_generation == model.generation


def test_an_autoscaled_model_goes_to_zero_and_wakes_through_the_loop(world):
    """The shell with a store and git: an autoscaled model (min_replicas 0) is RUNNING at zero
    replicas, IDLE and WOKE are recorded once each in the store, and WOKE carries how long the
    wake took, measured by the shell across ticks (from argusd's clock)."""
    from datetime import datetime, timedelta, timezone

    gitops, daemon, serve, store = world
    gitops.write("models.d/alice/a.yaml", AUTOSCALED.format(id="a"))
    gitops.commit("a autoscaled")
    gitops.push()
    clock = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
    daemon.reconciler.clock = lambda: clock[0]
    daemon.tick()
    serve.settle()
    daemon.tick()
    daemon.tick()   # the front end routes it; RUNNING is recorded the tick after
    key = store.list_models()[0].model_key
    deployment = f"LLMServer:{key}"
    assert state_of(store) == ModelState.RUNNING            # at zero: no cold start at deploy
    assert serve.apps[app_name(key)]["deployed_app_config"]["deployments"][0]["autoscaling_config"]["min_replicas"] == 0
    daemon.tick()
    daemon.tick()
    assert len(events_of(store, EventType.IDLE)) == 1       # once
    serve.scale(deployment, running=0, target=1, status="UPSCALING")   # a request woke it
    daemon.tick()
    clock[0] += timedelta(seconds=37)
    daemon.tick()
    assert state_of(store) == ModelState.RUNNING and not events_of(store, EventType.REPLICAS_LOST)
    clock[0] += timedelta(seconds=5)
    serve.scale(deployment, running=1, target=1)
    daemon.tick()
    daemon.tick()
    (woke,) = events_of(store, EventType.WOKE)
    assert woke.payload == {"wake_s": 42.0, "running_replicas": 1}
    route = next(r for r in serve.apps["argus"]["deployed_app_config"]["deployments"][0]["user_config"]["models"]
                 if r["model_id"] == store.list_models()[0].model_id)
    assert route["hold_s"] == daemon.reconciler.serve.wake_timeout_s
    serve.scale(deployment, running=0, target=0)
    daemon.tick()
    assert len(events_of(store, EventType.IDLE)) == 2


def test_a_suspended_model_is_suspended_in_the_store_and_resumes(world):
    """suspended: true through git, sync and the loop: the model's app leaves Serve, the store
    records SUSPENDED (the schema takes it), the front end answers 503 naming the commit's author
    and short sha; suspended: false deploys it again."""
    gitops, daemon, serve, store = world
    daemon.tick()
    serve.settle()
    daemon.tick()
    daemon.tick()   # the front end routes it; RUNNING is recorded the tick after
    key = store.list_models()[0].model_key
    gitops.write("models.d/alice/a.yaml", spec("a") + "suspended: true\n")
    sha = gitops.commit("suspend a")
    gitops.push()
    daemon.tick()
    daemon.tick()
    assert app_name(key) not in serve.apps
    assert state_of(store) == ModelState.SUSPENDED and len(events_of(store, EventType.SUSPENDED)) == 1
    route = next(r for r in serve.apps["argus"]["deployed_app_config"]["deployments"][0]["user_config"]["models"]
                 if r["model_id"] == store.list_models()[0].model_id)
    assert route["unavailable"]["status"] == 503 and sha[:7] in route["unavailable"]["message"]
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("resume a")
    gitops.push()
    daemon.tick()
    assert app_name(key) in serve.apps and state_of(store) == ModelState.DEPLOYING
    serve.settle()
    daemon.tick()
    daemon.tick()   # the front end routes it; RUNNING is recorded the tick after
    assert state_of(store) == ModelState.RUNNING


def test_a_model_over_its_owners_quota_waits_queued_through_the_loop(tmp_path):
    """The quota as argusd's config says it (users.alice.max_gpus, read by the shell through
    Config.gpu_quota), lowered after the commit was recorded: the queued model waits QUEUED
    with one QUOTA_EXCEEDED naming the key, and nothing of it is applied."""
    (tmp_path / "private" / "hf" / "m").mkdir(parents=True)
    gitops = GitOps(tmp_path / "g")
    gitops.write("models.d/alice/a.yaml", spec("a", replicas=2))
    gitops.commit("a")
    gitops.push()
    store = Store.open(tmp_path / "s.db")
    serve = FakeServe()
    serve.put_error = "cannot reach the Ray dashboard"      # recorded, not applied: a stays QUEUED
    before = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "s.db", repo=gitops.bare)
    daemon = Daemon(load_config(before), store, serve, watch=False)
    daemon.tick()
    daemon._drop_repo()
    assert state_of(store) == ModelState.QUEUED
    after = write_config(tmp_path / "c2.yaml", root=tmp_path / "private", db=tmp_path / "s.db", repo=gitops.bare,
                         extra="users:\n  alice:\n    max_gpus: 1\n")
    serve.put_error = None
    daemon = Daemon(load_config(after), store, serve, watch=False)
    try:
        daemon.tick()
        daemon.tick()
        (over,) = events_of(store, EventType.QUOTA_EXCEEDED)
        assert "users.alice.max_gpus" in over.payload["message"] and "needs 2" in over.payload["message"]
        assert state_of(store) == ModelState.QUEUED
        assert not [a for a in serve.apps if a.startswith("llm-")]
    finally:
        daemon._drop_repo()
        store.close()


def push_refused_change(gitops, daemon, serve, text: str) -> None:
    """Pushes `text` as alice's a.yaml, a change whose new generation's probe is refused: it is
    rolled back within two ticks."""
    gitops.write("models.d/alice/a.yaml", text)
    gitops.commit("a: max_num_seqs 8")
    gitops.push()
    daemon.reconciler.probe_rollout = lambda model_id: (True, "the new generation answered 400: bad")
    daemon.tick()
    serve.settle()
    daemon.tick()


def test_a_rolled_back_model_whose_serving_app_serve_lost_is_deployed_again_from_the_store(world, tmp_path):
    """Generation 2 fails beside generation 1 (its probe is refused): rolled back, FAILED,
    generation 1 serves on. Ray restarts with nothing in Serve and argusd restarts too (a new
    Daemon on the same store): generation 1 comes back exactly as it ran, read from the store
    (not the failed generation 2), status says so meanwhile and clients get 503, not 404;
    once it runs again the status is the rollback's again."""
    gitops, daemon, serve, store = world
    config = tmp_path / "c.yaml"
    daemon.tick()
    serve.settle()
    daemon.tick()
    daemon.tick()
    key = next(m.model_key for m in store.list_models())
    gen1 = json.loads(json.dumps(serve.apps[app_name(key)]["deployed_app_config"]))
    push_refused_change(gitops, daemon, serve, spec("a") + "engine_kwargs:\n  max_num_seqs: 8\n")
    model = store.list_models()[0]
    assert (model.state, model.applied_generation, model.generation) == (ModelState.FAILED, 1, 2)
    assert model.serving["llm_config"] == gen1["args"]["llm_config"]
    rolled_back = model.error_summary
    assert rolled_back.startswith("generation 2 failed: the new generation answered 400") and rolled_back.endswith(
        "; serving generation 1")
    serve.restart()
    again = Daemon(daemon.config, store, serve, watch=False)
    try:
        again.tick()
        assert serve.apps[app_name(key)]["deployed_app_config"] == gen1      # generation 1, as it ran
        routes = serve.apps["argus"]["deployed_app_config"]["deployments"][0]["user_config"]["models"]
        assert [(r["model_id"], (r.get("unavailable") or {}).get("status")) for r in routes] == [(model.model_id, 503)]
        (row,) = status_json(config)["models"]
        assert (row["state"], row["reason"]) == ("FAILED", f"{rolled_back}: Serve has no replica of it; redeploying")
        assert [e.payload["message"] for e in events_of(store, EventType.REPLICAS_LOST)] == [
            "serving generation 1: Serve has no replica of it; redeploying"]
        serve.settle()
        again.tick()
        again.tick()
        routes = serve.apps["argus"]["deployed_app_config"]["deployments"][0]["user_config"]["models"]
        assert [(r["model_id"], r["app"]) for r in routes] == [(model.model_id, app_name(key))]
        assert [e.payload["message"] for e in events_of(store, EventType.RECOVERED)] == [
            "serving generation 1 serves again"]
        (row,) = status_json(config)["models"]
        assert (row["state"], row["reason"]) == ("FAILED", rolled_back)
        assert len(events_of(store, EventType.REPLICAS_LOST)) == 1
    finally:
        again._drop_repo()


def adapter_folder(daemon, rank=8):
    folder = f"{daemon.config.storage.root}/users/alice/adapters/t"
    os.makedirs(folder)
    with open(f"{folder}/adapter_config.json", "w") as handle:
        json.dump({"peft_type": "LORA", "r": rank}, handle)


def running_base(gitops, daemon, serve, text):
    gitops.write("models.d/alice/a.yaml", text)
    gitops.commit("a")
    gitops.push()
    daemon.tick()
    serve.settle()
    daemon.tick()
    daemon.tick()


def push_adapter(gitops):
    gitops.write("models.d/alice/t.yaml", "model_id: t\nbase_model: a\nmodel_source: $HOME/adapters/t\n")
    gitops.commit("adapter t")
    gitops.push()


def test_an_adapter_pushed_while_its_base_first_takes_adapters_waits_for_the_switch(world):
    """Generation 2 of the base is the first with `adapters:`; the adapter pushed while it
    starts beside generation 1 waits (with why) instead of going to generation 1's engine,
    and is loaded and probed on generation 2 once that one serves."""
    gitops, daemon, serve, store = world
    adapter_folder(daemon)
    running_base(gitops, daemon, serve, spec("a"))
    asked = []
    daemon.reconciler.probe = lambda model_id: (asked.append(model_id), (True, None))[1]
    daemon.reconciler.probe_rollout = lambda model_id: (True, None)
    gitops.write("models.d/alice/a.yaml", spec("a") + "adapters:\n  max_rank: 8\n")
    gitops.commit("a takes adapters")
    gitops.push()
    daemon.tick()
    assert state_of(store) == ModelState.DEPLOYING
    push_adapter(gitops)
    daemon.tick()
    adapter = next(m for m in store.list_models() if m.model_id_suffix == "t")
    assert adapter.state == ModelState.QUEUED and not asked
    assert adapter.error_summary.endswith("serving generation 1 takes no adapters; generation 2, starting beside "
                                          "it, can: the adapter is loaded once it serves")
    key = next(m.model_key for m in store.list_models() if m.model_id_suffix == "a")
    assert all(not (app["deployed_app_config"]["deployments"][0].get("user_config") or {}).get("adapters")
               for name, app in serve.apps.items() if name.startswith(app_name(key)))
    serve.settle()
    for _ in range(4):
        daemon.tick()
    base = next(m for m in store.list_models() if m.model_id_suffix == "a")
    assert (base.state, base.applied_generation) == (ModelState.RUNNING, 2)
    assert state_of(store, "t") == ModelState.RUNNING and asked == [adapter.model_id]


def test_an_adapter_pushed_on_a_rolled_back_base_is_probed_and_runs(world):
    gitops, daemon, serve, store = world
    adapter_folder(daemon)
    running_base(gitops, daemon, serve, spec("a") + "adapters:\n  max_rank: 8\n")
    push_refused_change(gitops, daemon, serve, spec("a") + "adapters:\n  max_rank: 8\nengine_kwargs:\n  max_num_seqs: 8\n")
    assert state_of(store) == ModelState.FAILED
    asked = []
    daemon.reconciler.probe = lambda model_id: (asked.append(model_id), (True, None))[1]
    push_adapter(gitops)
    daemon.tick()
    assert state_of(store, "t") == ModelState.DEPLOYING and not asked   # the table goes in first
    daemon.tick()
    assert state_of(store, "t") == ModelState.RUNNING and len(asked) == 1

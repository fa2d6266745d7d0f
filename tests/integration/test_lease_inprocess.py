"""Two argusd reconcilers (each with its own store and repo) on one Serve, in-process: only
the lease holder ever applies its models; a standby takes over one lease time after the
holder stops. Serve is tests/serve_fake.py (a PUT replaces the set, like Serve); the real
cluster runs the same in tests/e2e/test_lease_e2e.py."""
import json
import os
import shutil
import socket
import sqlite3
import time
from pathlib import Path

from daemon.argusd import Daemon
from daemon.config import load_config
from daemon.serving.lease import Role, display_name, instance_of, stable_instance
from daemon.serving.reconciler import ReconcileOutcome, Reconciler
from daemon.store import Store, WriterLock
from daemon.sync.syncer import Syncer
from daemon.gitrepo import GitRepo
from daemon.core.spec import SpecPolicy
from helpers import GitOps, run_argusctl, spec, write_config
from serve_fake import FakeServe


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def daemon(tmp_path, name, serve, clock):
    (tmp_path / name / "private" / "hf" / "m").mkdir(parents=True)
    gitops = GitOps(tmp_path / name / "g")
    gitops.write(f"models.d/{name}/m.yaml", spec(f"from-{name}"))
    gitops.commit(name)
    gitops.push()
    path = write_config(tmp_path / name / "c.yaml", root=tmp_path / name / "private", db=tmp_path / name / "s.db",
                        repo=gitops.bare, lease_seconds=30)
    config = load_config(path)
    store = Store.open(tmp_path / name / "s.db")
    Syncer(store, GitRepo(gitops.bare), "main", SpecPolicy.from_config(config)).sync_once()
    return Reconciler(store, serve, config, identity=name, monotonic=clock, reap=lambda: None)


def model_apps(serve):
    return sorted(name for name in serve.apps if name.startswith("llm-"))


def test_only_the_holder_applies_and_a_standby_takes_over(tmp_path):
    serve, clock = FakeServe(), Clock()
    a, b = daemon(tmp_path, "alice", serve, clock), daemon(tmp_path, "bob", serve, clock)
    a_key = a.store.list_models()[0].model_key
    b_key = b.store.list_models()[0].model_key
    assert a.tick().outcome == ReconcileOutcome.CLAIMED
    assert len(serve.puts) == 1 and model_apps(serve) == []      # a claim changes nothing else
    clock.now = 2
    assert b.tick().outcome == ReconcileOutcome.STANDBY           # a's claim is live
    assert a.tick().outcome == ReconcileOutcome.APPLIED and model_apps(serve) == [f"llm-{a_key}"]
    assert (a.store.lease_view()["role"], a.store.lease_view()["holder"]) == ("active", "alice")
    b_view = b.store.lease_view()
    assert (b_view["role"], b_view["holder"], b_view["me"]) == ("standby", "alice", "bob")
    for t in range(4, 60, 2):                                     # a renews; b never applies
        clock.now = t
        a.tick()
        serve.settle()
        assert b.tick().outcome == ReconcileOutcome.STANDBY
        assert model_apps(serve) == [f"llm-{a_key}"]
    assert b.store.lease_view() == b_view  # the same view tick after tick: nothing written
    # a dies at 60 (it renewed within the last 10 s). b takes over one lease time after the last
    # renewal it saw, and only then applies.
    outcomes = {}
    for t in range(60, 120, 2):
        clock.now = t
        outcomes[t] = b.tick().outcome
        if outcomes[t] == ReconcileOutcome.APPLIED:
            break
    claimed = min(t for t, o in outcomes.items() if o == ReconcileOutcome.CLAIMED)
    assert 50 + 30 <= claimed <= 60 + 30, outcomes
    assert all(o != ReconcileOutcome.APPLIED for t, o in outcomes.items() if t <= claimed)
    assert model_apps(serve) == [f"llm-{b_key}"]
    assert serve.apps["argus-lease"]["deployed_app_config"]["deployments"][0]["user_config"]["holder"] == "bob"
    assert (b.store.lease_view()["role"], b.store.lease_view()["holder"]) == ("active", "bob")
    shown = run_argusctl("--config", str(tmp_path / "bob" / "c.yaml"), "status")
    assert "argusd: this store's daemon (bob) is the active one since " in shown.stdout, shown.stdout + shown.stderr


def test_after_a_ray_restart_the_claiming_daemon_does_not_say_running(tmp_path):
    """Ray restarts: the lease went with everything else, so argusd claims it again before it
    applies. Meanwhile its model is DEPLOYING (Serve has no replica of it), recorded once; it
    is redeployed once the claim holds and RUNNING once Serve runs it."""
    serve, clock = FakeServe(), Clock()
    a = daemon(tmp_path, "alice", serve, clock)
    (row,) = a.store.list_models()
    assert a.tick().outcome == ReconcileOutcome.CLAIMED
    clock.now = 2
    assert a.tick().outcome == ReconcileOutcome.APPLIED
    serve.settle()
    clock.now = 4
    a.tick()
    a.tick()   # the front end routes it; RUNNING is recorded the tick after
    assert a.store.list_models()[0].state == "RUNNING"
    serve.restart()
    outcomes = []
    for t in range(6, 20, 2):
        clock.now = t
        outcomes.append(a.tick().outcome)
        if outcomes[-1] == ReconcileOutcome.CLAIMED:
            model = a.store.list_models()[0]
            assert (model.state, model.error_summary) == ("DEPLOYING", "Serve has no replica of it; redeploying")
    assert outcomes[0] == ReconcileOutcome.CLAIMED and ReconcileOutcome.APPLIED in outcomes
    assert model_apps(serve) == [f"llm-{row.model_key}"]
    assert [e.event_type for e in a.store.events(model_key=row.model_key)].count("REPLICAS_LOST") == 1
    serve.settle()
    clock.now = 22
    a.tick()
    model = a.store.list_models()[0]
    assert (model.state, model.error_summary) == ("RUNNING", None)


def test_a_restarted_daemon_takes_over_at_once_and_another_still_waits(tmp_path):
    """kill -9 and restart: the new process is of the old one's instance (kept in its store), so
    the lease of that instance is its own; a daemon of any other instance waits out the lease."""
    serve, clock = FakeServe(), Clock()
    a, b = daemon(tmp_path, "alice", serve, clock), daemon(tmp_path, "bob", serve, clock)
    config = load_config(tmp_path / "alice" / "c.yaml")
    a.identity = Daemon(config, a.store, serve, watch=False).identity   # named as argusd names itself
    a_key = a.store.list_models()[0].model_key
    a.tick()
    clock.now = 2
    assert a.tick().outcome == ReconcileOutcome.APPLIED
    clock.now = 4                                      # alice is killed; a new alice starts
    name = Daemon(config, a.store, serve, watch=False).identity
    assert name != a.identity and instance_of(name) == instance_of(a.identity)   # another process, one instance
    restarted = Reconciler(a.store, serve, config, identity=name, monotonic=clock, reap=lambda: None)
    assert restarted.tick().outcome == ReconcileOutcome.CLAIMED          # at once: no lease time waited
    assert b.tick().outcome == ReconcileOutcome.STANDBY
    clock.now = 6
    restarted.tick()
    serve.settle()
    assert restarted.role == Role.ACTIVE and model_apps(serve) == [f"llm-{a_key}"]
    lease = serve.apps["argus-lease"]["deployed_app_config"]["deployments"][0]["user_config"]
    assert (lease["holder"], lease["epoch"]) == (name, 2)
    # alice (restarted) is killed for good at 6: bob waits a whole lease time after the last
    # change it saw (the claim at 4), as before.
    outcomes = {}
    for t in range(8, 40, 2):
        clock.now = t
        outcomes[t] = b.tick().outcome
    assert min(t for t, o in outcomes.items() if o == ReconcileOutcome.CLAIMED) == 4 + 30, outcomes


def test_argusd_names_itself_by_its_stores_instance(tmp_path):
    config = load_config(write_config(tmp_path / "c.yaml", root=tmp_path, db=tmp_path / "s.db", repo=tmp_path / "g",
                                      lease_seconds=30))
    other = load_config(write_config(tmp_path / "o.yaml", root=tmp_path, db=tmp_path / "o.db", repo=tmp_path / "g",
                                     lease_seconds=30))
    names = []
    for cfg in (config, config, other):
        store = Store.open(cfg.state.db)
        names.append(Daemon(cfg, store, FakeServe(), watch=False).reconciler.identity)
        store.close()
    assert instance_of(names[0]) == instance_of(names[1]) and names[0] != names[1]   # a restart: its instance
    assert instance_of(names[2]) != instance_of(names[0])                             # another store: another
    assert display_name(names[0]).startswith(f"{socket.gethostname()}:{tmp_path / 's.db'} (instance ")


def test_a_store_rebuilt_in_place_keeps_its_daemons_instance(tmp_path, monkeypatch):
    """docs/operating.md's "Rebuilding the store" (a new file at the same path), the store lost
    with its directory, and a store replaced under a running argusd: the daemon is still of the
    instance whose lease it finds (issue 22.8: it stood by behind its own dead self for a lease
    time). A store of an argus before this keeps its random instance through a replacement, and
    a store swapped in that names another instance is told the running one's."""
    config = load_config(write_config(tmp_path / "c.yaml", root=tmp_path, db=tmp_path / "state" / "s.db",
                                      repo=tmp_path / "g", lease_seconds=30))
    db = Path(config.state.db)

    def started() -> str:
        store = Store.open(str(db))
        try:
            return instance_of(Daemon(config, store, FakeServe(), watch=False).identity)
        finally:
            store.close()

    first = started()
    assert first == stable_instance(socket.gethostname(), os.path.realpath(db), str(tmp_path / "g"))
    db.rename(db.with_suffix(".broken"))                      # the rebuild's steps
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    assert started() == first
    shutil.rmtree(db.parent)                                  # the state directory lost
    assert started() == first

    # A store with an older argus's random instance, replaced under the running daemon: the new
    # store is told that instance, so the next start still has it.
    store = Store.open(str(db))
    store.conn.execute("UPDATE daemon_instance SET instance = '0123456789abcdef'")
    running = Daemon(config, store, FakeServe(), watch=False)
    assert instance_of(running.identity) == "0123456789abcdef"
    db.unlink()
    Store.open(str(db)).close()                               # another store at the path
    running._reopen_if_replaced()
    assert running.store.path == str(db)
    running.store.close()
    assert started() == "0123456789abcdef"
    # A store swapped in that names another instance for this host and path (an old backup).
    running.store = Store.open(str(db))
    db.unlink()
    backup = Store.open(str(db))
    backup.conn.execute("INSERT INTO daemon_instance (id, instance, host, state_db) VALUES (1, ?, ?, ?)",
                        ("fedcba9876543210", socket.gethostname(), os.path.realpath(db)))
    backup.close()
    running._reopen_if_replaced()
    running.store.close()
    assert started() == "0123456789abcdef"
    # A store swapped in that cannot take the instance: sync says so as for any failed write,
    # and goes on.
    running.store = Store.open(str(db))
    db.unlink()
    Store.open(str(db)).close()
    monkeypatch.setattr("daemon.argusd.remember_daemon_instance",
                        lambda *a: (_ for _ in ()).throw(sqlite3.OperationalError("disk I/O error")))
    running._reopen_if_replaced()
    assert running._errors["sync"].startswith("cannot write the state store") and "disk I/O error" in running._errors["sync"]
    running.store.close()
    monkeypatch.undo()
    # Another path, another host name or another GitOps repo: another instance.
    repo = str(tmp_path / "g")
    assert stable_instance(socket.gethostname(), "/elsewhere/s.db", repo) != first
    assert stable_instance("another-host", os.path.realpath(db), repo) != first
    other_repo = load_config(write_config(tmp_path / "o.yaml", root=tmp_path, db=tmp_path / "other" / "s.db",
                                          repo=tmp_path / "g2", lease_seconds=30))
    store = Store.open(other_repo.state.db)
    assert instance_of(Daemon(other_repo, store, FakeServe(), watch=False).identity) == stable_instance(
        socket.gethostname(), os.path.realpath(other_repo.state.db), str(tmp_path / "g2"))
    # A role a newer argus records stays text for `argusctl status`, as an event type does.
    store.set_lease_view(Role.STANDBY, "me", None, None, "t")
    store.conn.execute("UPDATE daemon_lease SET role = 'observer'")
    assert store.lease_view()["role"] == "observer"
    store.set_lease_view(Role.ACTIVE, "me", "me", 1, "t")
    assert store.lease_view()["role"] is Role.ACTIVE
    store.close()


def test_status_says_when_the_lease_it_shows_has_expired(tmp_path):
    """argusd marks each reconcile tick that reached Serve on its lock file; a lease time after the
    last mark the lease it held has expired, and status says so instead of naming it active."""
    serve, clock = FakeServe(), Clock()
    a = daemon(tmp_path, "alice", serve, clock)
    config_path = tmp_path / "alice" / "c.yaml"
    config = load_config(config_path)
    lock = WriterLock(config.state.db).acquire()
    argusd = Daemon(config, a.store, serve, watch=False, alive_file=lock.path)
    argusd.reconciler = a
    os.utime(lock.path, (0, 0))
    assert argusd.tick() and argusd.tick()                 # claims, reads it back, applies
    assert time.time() - os.stat(lock.path).st_mtime < 30  # marked
    shown = run_argusctl("--config", str(config_path), "status")
    assert "argusd: this store's daemon (alice) is the active one since " in shown.stdout, shown.stdout + shown.stderr
    lock.release()                                         # killed; a minute goes by
    os.utime(lock.path, (time.time() - 60, time.time() - 60))
    shown = run_argusctl("--config", str(config_path), "status")
    assert "argusd: this store's daemon (alice) was the active one since " in shown.stdout, shown.stdout
    assert "its lease expired at " in shown.stdout and "is the active one" not in shown.stdout
    as_json = json.loads(run_argusctl("--config", str(config_path), "status", "-o", "json").stdout)["daemon"]
    assert (as_json["role"], as_json["expired"]) == ("active", True)


def test_two_live_daemons_of_one_instance_never_both_apply(tmp_path):
    """A store copied byte for byte to a host of the same name and path: two live argusd of one
    instance (another boot id each). The copy claims at once, once; from then on exactly one of
    them applies its models and they do not take turns."""
    serve, clock = FakeServe(), Clock()
    first, copy = daemon(tmp_path, "alice", serve, clock), daemon(tmp_path, "bob", serve, clock)
    first.identity, copy.identity = "inst.boot1@h:/var/lib/argus/argus.db", "inst.boot2@h:/var/lib/argus/argus.db"
    first_key, copy_key = first.store.list_models()[0].model_key, copy.store.list_models()[0].model_key
    first.tick()
    clock.now = 2
    assert first.tick().outcome == ReconcileOutcome.APPLIED
    serve.settle()
    outcomes = []
    for t in range(4, 200, 2):
        clock.now = t
        for name, rec in (("copy", copy), ("first", first)):
            outcomes.append((t, name, rec.tick().outcome))
            serve.settle()
        assert model_apps(serve) in ([f"llm-{first_key}"], [f"llm-{copy_key}"]), (t, model_apps(serve))
        assert [first.role, copy.role].count(Role.ACTIVE) <= 1, t
    claims = [t for t, name, o in outcomes if name == "copy" and o == ReconcileOutcome.CLAIMED]
    assert claims == [4], claims                                   # at once, and only once
    late = {(name, o) for t, name, o in outcomes if t > 40}
    assert not any(o == ReconcileOutcome.CLAIMED for _, o in late)      # settled: nobody claims again
    for name in ("copy", "first"):                                       # each keeps its one role
        stood_by = {o == ReconcileOutcome.STANDBY for n, o in late if n == name}
        assert len(stood_by) == 1, (name, late)

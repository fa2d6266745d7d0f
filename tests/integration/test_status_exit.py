"""`argusctl status MODEL` exits as docs/cli.md says: 1 for a FAILED model or a rejected spec,
3 when Serve cannot confirm its state, else 0; a listing exits 0 (real git, real store)."""
from daemon.core.states import EventType, ModelState
from daemon.gitrepo import GitRepo
from daemon.store import Store, iso, utc_now
from daemon.sync.syncer import Syncer
from helpers import GitOps, run_argusctl, spec, spec_policy, write_config


def test_status_of_one_model_exits_by_what_it_shows(tmp_path):
    g = GitOps(tmp_path / "g")
    for name in ("a", "b", "c"):
        g.write(f"models.d/alice/{name}.yaml", spec(name))
    g.commit("three models")
    g.push()
    config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "s.db", repo=g.bare)
    store = Store.open(tmp_path / "s.db")
    syncer = Syncer(store, GitRepo(g.bare), "main", spec_policy(root=str(tmp_path / "private")))
    syncer.sync_once()
    env = {"ARGUS_CONFIG": str(config)}

    def exit_of(*args):
        return run_argusctl("status", *args, env=env).returncode

    assert [exit_of(m) for m in ("a", "b", "c")] == [0, 0, 0]   # QUEUED: nothing wrong yet
    keys = {m.model_id.rsplit("-", 1)[1]: m.model_key for m in store.list_models()}
    store.set_state(keys["a"], ModelState.FAILED, error_summary="out of memory", now=iso(utc_now()))
    g.write("models.d/alice/b.yaml", "model_id: b\nnum_replicas: 0\n")   # rejected; the last good spec stays
    g.commit("b broken")
    g.push()
    syncer.sync_once()
    assert exit_of("a") == 1 and exit_of("a", "-o", "json") == 1
    assert exit_of("b") == 1 and "spec rejected" in run_argusctl("status", "b", env=env).stdout
    assert exit_of("c") == 0
    assert exit_of() == 0                                     # a listing: what is wrong is in it, not the code
    assert exit_of("nope") == 4

    store.set_state(keys["c"], ModelState.RUNNING, now=iso(utc_now()))
    store.append_event(EventType.CLUSTER_UNREACHABLE, {"message": "connection refused"}, now=iso(utc_now()))
    shown = run_argusctl("status", "c", env=env)
    assert shown.returncode == 3 and "UNKNOWN" in shown.stdout, shown.stdout   # Serve cannot confirm RUNNING
    assert exit_of("a") == 1                                  # FAILED needs no Serve to be shown
    store.close()

"""One user's write never stalls another user (issue 21.2), against a real argusd (--sync-only)
serving the API, a real GitOps repo and its hook.

argusd is made slow to record in a real way: another process holds the state store's write
lock (SQLite, WAL), as a long sync or a busy disk would, so argusd's sync waits on it and an
API write, having pushed its commit, waits for argusd to record it. Meanwhile another user's
reads must answer at once and another user's write must go through; one user's own writes
still go one at a time (they share that user's clone)."""
import sqlite3
import statistics
import threading
import time

import pytest

from helpers import ApiDaemon

USERS = {"alice": "alice@argus.local", "bob": "bob@argus.local"}
SPEC = "model_id: {name}\nmodel_source: $HOME/common/hf/m\n"
MODELS = "/api/v2/serve/models"


class Call(threading.Thread):
    """One HTTP request in its own thread, so the test can act while it waits."""

    def __init__(self, api, *args, **kwargs):
        super().__init__(daemon=True)
        self.api, self.args, self.kwargs = api, args, kwargs
        self.result = None
        self.start()

    def run(self):
        self.result = self.api.http(*self.args, **self.kwargs)


def post(api, token, name):
    return Call(api, "POST", MODELS, token=token, body=SPEC.format(name=name), ctype="application/yaml")


def wait_for_commit(api, subject, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not any(line.endswith("|" + subject) for line in api.git_log()):
        assert time.monotonic() < deadline, f"no commit {subject!r}: {api.git_log()[:5]}"
        time.sleep(0.02)


@pytest.fixture
def api(tmp_path):
    daemon = ApiDaemon(tmp_path, USERS)
    daemon.alice, daemon.bob = daemon.token("alice"), daemon.token("bob")
    yield daemon
    daemon.stop()


def timed_get(api, token):
    start = time.monotonic()
    status, out, _ = api.http("GET", MODELS, token=token)
    assert status == 200, out
    return time.monotonic() - start


def test_a_slow_write_of_one_user_stalls_neither_reads_nor_writes_of_another(api):
    assert api.http("POST", MODELS, token=api.bob, body=SPEC.format(name="old"), ctype="application/yaml")[0] == 202
    idle = statistics.median(timed_get(api, api.bob) for _ in range(5))

    busy = sqlite3.connect(api.tmp / "state" / "argus.db", isolation_level=None, timeout=30)
    busy.execute("BEGIN IMMEDIATE")  # argusd cannot record anything until this ends
    try:
        slow = post(api, api.alice, "slow")
        wait_for_commit(api, "apply alice/slow: new model")  # pushed; now waiting for argusd
        time.sleep(0.3)
        assert slow.is_alive()

        # bob reads while alice's write waits: answered at once (milliseconds, as when idle; the
        # bound allows for a loaded machine), not after her write as when writes held the loop.
        during = [timed_get(api, api.bob) for _ in range(5)]
        assert slow.is_alive()
        assert statistics.median(during) < max(0.25, 3 * idle) and max(during) < 2.0, (idle, during)

        # bob writes meanwhile: his commit is pushed while alice's request still waits.
        parallel = post(api, api.bob, "parallel")
        wait_for_commit(api, "apply bob/parallel: new model")
        assert slow.is_alive() and parallel.is_alive()

        # alice's own second write waits for her first (one clone per user, one write at a time).
        second = post(api, api.alice, "second")
        time.sleep(1.0)
        assert not any(line.endswith("|apply alice/second: new model") for line in api.git_log())
        assert second.is_alive()
    finally:
        busy.rollback()
        busy.close()

    for call in (slow, parallel, second):
        call.join(timeout=30)
    for call, name in ((slow, "alice-"), (parallel, "bob-"), (second, "alice-")):
        status, out, _ = call.result
        assert status == 202 and out["state"] == "QUEUED" and out["model_id"].startswith(name), out
    print(f"GET idle median {idle * 1000:.1f} ms; during another user's slow write: "
          f"{', '.join(f'{d * 1000:.1f}' for d in during)} ms")

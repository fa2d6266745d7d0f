"""`--wait` of the writes: where each command stops (settled, a table), and the polling loop
fed a sequence of states as argusd would record them (no argusd: SUSPENDED comes from the
reconciler's own work, tested there)."""
from types import SimpleNamespace

import pytest

from argusctl.write import WaitGoal, settled, wait_until_settled
from daemon.core.states import ModelState as S

RUN, SUSPEND, GONE = WaitGoal.RUN, WaitGoal.SUSPEND, WaitGoal.GONE

# (goal, the model's state (None: no row), the row is at our commit, done?)
TABLE = [
    (SUSPEND, S.SUSPENDED, True, True),
    (SUSPEND, S.SUSPENDED, False, False),   # suspended by an older commit: ours not recorded yet
    (SUSPEND, S.RUNNING, True, False),      # recorded, the replicas not removed yet
    (SUSPEND, S.FAILED, True, False),       # a failed model being suspended: on the way
    (SUSPEND, S.QUEUED, True, False),
    (SUSPEND, None, False, False),
    (RUN, S.RUNNING, True, True),
    (RUN, S.FAILED, True, True),
    (RUN, S.SUSPENDED, True, False),        # a resume recorded, the model not started yet
    (RUN, S.DEPLOYING, True, False),
    (RUN, S.RUNNING, False, False),
    (GONE, None, False, True),
    (GONE, S.DELETED, True, True),
    (GONE, S.DELETING, True, False),
    (GONE, S.SUSPENDED, True, False),
]


@pytest.mark.parametrize("goal,state,recorded,done", TABLE)
def test_where_each_write_stops_waiting(goal, state, recorded, done):
    assert settled(goal, state, recorded) is done


def row(state, commit="c2", error=None):
    return SimpleNamespace(state=state, commit_sha=commit, error_summary=error, model_id="alice-202601010000-m")


def reader(*rows):
    """argusd's rows, one per poll, the last one repeated."""
    seen = list(rows)

    def read():
        return (seen.pop(0) if len(seen) > 1 else seen[0]), None
    return read


CHANGE = SimpleNamespace(model_id="m", path="models.d/alice/m.yaml", commit="c2")


def test_suspend_waits_through_the_old_commit_and_running_until_suspended(capsys):
    got, reason = wait_until_settled(None, "alice", CHANGE, 10, SUSPEND, quiet=False, poll_s=0,
                                     read=reader(None, row(S.RUNNING, "c1"), row(S.RUNNING), row(S.SUSPENDED)))
    assert (got.state, reason) == (S.SUSPENDED, None)
    assert capsys.readouterr().err.splitlines() == ["... waiting for argusd", "... RUNNING"]


def test_resume_waits_through_suspended_and_queued_until_running():
    got, reason = wait_until_settled(None, "alice", CHANGE, 10, RUN, quiet=True, poll_s=0,
                                     read=reader(row(S.SUSPENDED, "c1"), row(S.SUSPENDED), row(S.QUEUED),
                                                 row(S.DEPLOYING), row(S.RUNNING)))
    assert (got.state, reason) == (S.RUNNING, None)


def test_a_suspend_that_never_gets_there_times_out():
    got, reason = wait_until_settled(None, "alice", CHANGE, 0.05, SUSPEND, quiet=True, poll_s=0.01,
                                     read=reader(row(S.RUNNING)))
    assert (got.state, reason) == (S.RUNNING, "timed out")


def test_a_rejected_spec_ends_the_wait_with_its_problems():
    rejected = SimpleNamespace(commit_sha="c2", problems=["models.d/alice/m.yaml:3:12: suspended: not a bool"])
    got, reason = wait_until_settled(None, "alice", CHANGE, 10, SUSPEND, quiet=True, poll_s=0,
                                     read=lambda: (row(S.RUNNING, "c1"), rejected))
    assert reason == "spec rejected: models.d/alice/m.yaml:3:12: suspended: not a bool"

"""The lease decision as scenarios: who is active, who waits, when a standby takes over."""
from dataclasses import replace

from daemon.serving.lease import LeaseMemory, LeaseValue, Role, decide

TTL = 30.0


def run(me, reads):
    """Feed (now, observed) pairs; return each step's (role, written value)."""
    memory, out = LeaseMemory(), []
    for now, observed in reads:
        step = decide(memory, observed, me, now, TTL)
        memory = step.memory
        out.append((step.role, step.write))
    return out


def test_a_lone_daemon_claims_confirms_and_renews():
    claim = LeaseValue("a", 1, 0)
    steps = run("a", [(0, None), (2, claim), (4, claim), (12, claim)])
    assert steps[0] == (Role.CLAIMING, claim)
    assert steps[1] == (Role.ACTIVE, None) and steps[2] == (Role.ACTIVE, None)   # applies models from here
    assert steps[3] == (Role.ACTIVE, LeaseValue("a", 1, 1))                       # renewed after ttl/3


def test_a_standby_waits_while_the_holder_renews_and_takes_over_a_ttl_after_it_stops():
    reads = [(t, LeaseValue("a", 1, t // 10)) for t in range(0, 60, 2)]   # a renews every 10 s
    assert {role for role, _ in run("b", reads)} == {Role.STANDBY}
    stopped = [(t, LeaseValue("a", 1, 5)) for t in range(60, 95, 2)]         # a's last renewal was at 50
    steps = run("b", reads + stopped)
    takeover = next(i for i, (role, _) in enumerate(steps) if role == Role.CLAIMING)
    assert (reads + stopped)[takeover][0] == 50 + TTL                        # one ttl after the last change
    assert steps[takeover][1] == LeaseValue("b", 2, 0)


def test_two_daemons_claiming_at_once_settle_on_the_one_serve_kept():
    a_claim, b_claim = LeaseValue("a", 1, 0), LeaseValue("b", 1, 0)
    # Both saw no lease and claimed; Serve kept b's (the later PUT).
    a = run("a", [(0, None), (2, b_claim), (4, b_claim)])
    b = run("b", [(0, None), (2, b_claim), (4, b_claim)])
    assert [r for r, _ in a] == [Role.CLAIMING, Role.STANDBY, Role.STANDBY] and a[0][1] == a_claim
    assert [r for r, _ in b] == [Role.CLAIMING, Role.ACTIVE, Role.ACTIVE]


def test_a_holder_that_lost_the_lease_steps_down():
    mine = LeaseValue("a", 1, 0)
    steps = run("a", [(0, None), (2, mine), (40, LeaseValue("b", 2, 0))])
    assert steps[-1] == (Role.STANDBY, None)


def test_a_lease_removed_behind_the_holders_back_is_claimed_again():
    mine = LeaseValue("a", 1, 0)
    steps = run("a", [(0, None), (2, mine), (4, None)])
    assert steps[-1] == (Role.CLAIMING, LeaseValue("a", 1, 0))


def test_a_claim_not_seen_within_a_ttl_is_made_again():
    steps = run("a", [(0, None), (10, None), (31, None)])
    assert [r for r, _ in steps] == [Role.CLAIMING] * 3 and steps[1][1] is None and steps[2][1] is not None


def test_garbage_in_serve_is_no_lease():
    assert LeaseValue.from_dict({"holder": 1, "epoch": "x"}) is None and LeaseValue.from_dict(None) is None


def test_no_renewal_while_serve_builds_and_no_expiry_counted_for_it():
    """A PUT while Serve builds an app restarts the build: the holder waits, the standby waits too."""
    mine = LeaseValue("a", 1, 0)
    memory = LeaseMemory()
    for now, observed, busy in [(0, None, False), (2, mine, False)]:
        memory = decide(memory, observed, "a", now, TTL, busy).memory
    step = decide(memory, mine, "a", 20, TTL, busy=True)
    assert (step.role, step.write) == (Role.ACTIVE, None)                  # due, but Serve is building
    assert decide(step.memory, mine, "a", 22, TTL, busy=False).write == LeaseValue("a", 1, 1)
    standby = LeaseMemory()
    for now in range(0, 100, 2):                                            # builds for 100 s: no takeover
        step = decide(standby, mine, "b", now, TTL, busy=True)
        standby = step.memory
        assert step.role == Role.STANDBY
    assert decide(standby, mine, "b", 100 + TTL, TTL, busy=False).role == Role.CLAIMING


OLD = "1f2e3d4c5b6a7988.aaaa0001@h:/var/lib/argus/argus.db"    # instance 1f2e..., the process killed
NEW = "1f2e3d4c5b6a7988.bbbb0002@h:/var/lib/argus/argus.db"    # the same instance, restarted
STRANGER = "9a8b7c6d5e4f3021.cccc0003@h:/var/lib/argus/argus.db"  # another store on a host of the same name


def test_a_restarted_daemon_takes_its_own_lease_back_at_once():
    """Same instance (kept in its store), another process: the lease is its own dead self's."""
    left_behind = LeaseValue(OLD, 3, 7)                            # the holder was killed mid-lease
    steps = run(NEW, [(0, left_behind), (2, LeaseValue(NEW, 4, 0))])
    assert steps[0] == (Role.CLAIMING, LeaseValue(NEW, 4, 0))        # at once, not after a ttl
    assert steps[1] == (Role.ACTIVE, None)


def test_a_different_daemon_waits_a_lease_time_for_a_dead_holder_whatever_its_host_and_path():
    left_behind = LeaseValue(OLD, 3, 7)
    steps = run(STRANGER, [(t, left_behind) for t in range(0, 32, 2)])
    assert [r for r, _ in steps[:15]] == [Role.STANDBY] * 15                  # 0..28 s
    assert steps[15] == (Role.CLAIMING, LeaseValue(STRANGER, 4, 0))          # at 30 s


def test_two_live_daemons_of_one_instance_are_never_both_active_and_do_not_take_turns():
    """A store copied byte for byte to a host of the same name and path: two live processes of
    one instance. Each claims by instance at most once and never after it was active, so they
    settle like any two daemons; the copy's one claim never comes back."""
    ttl = TTL
    serve = LeaseValue(OLD, 3, 0)                  # OLD is active on epoch 3
    old, new = LeaseMemory(), LeaseMemory()
    old = decide(old, None, OLD, -10, ttl).memory
    old = decide(old, LeaseValue(OLD, 1, 0), OLD, -9, ttl).memory   # (its own claim, epoch 1, confirmed)
    old = decide(replace(old, mine=serve), serve, OLD, -8, ttl).memory
    roles = []
    for now in range(0, 200, 2):
        for name in ("new", "old"):
            memory, me = (new, NEW) if name == "new" else (old, OLD)
            step = decide(memory, serve, me, now, ttl)
            if step.write is not None:
                serve = step.write
            if name == "new":
                new = step.memory
            else:
                old = step.memory
            roles.append((now, name, step.role))
    for now in range(0, 200, 2):
        active = [n for t, n, r in roles if t == now and r == Role.ACTIVE]
        assert len(active) <= 1, (now, active)
    claims_by_new = [t for t, n, r in roles if n == "new" and r == Role.CLAIMING]
    assert claims_by_new and max(claims_by_new) < ttl     # one claim, settled within a lease time
    assert {r for t, n, r in roles if t > ttl} == {Role.ACTIVE, Role.STANDBY}


def test_names_say_their_instance_and_read_as_host_and_store():
    from daemon.serving.lease import daemon_name, display_name, instance_of

    name = daemon_name("1f2e3d4c5b6a7988", "aaaa0001", "h", "/var/lib/argus/argus.db")
    assert name == OLD and instance_of(OLD) == instance_of(NEW) != instance_of(STRANGER)
    assert display_name(OLD) == "h:/var/lib/argus/argus.db (instance 1f2e3d4c)"
    assert instance_of("alice") == "alice" and display_name("alice") == "alice"   # a name argus did not make


def test_the_instance_is_kept_by_its_store_and_new_for_a_copy_elsewhere(tmp_path):
    """Real SQLite: the id is made once; a restart reads it back; the same file opened under
    another host name or path (a copy, a move) is another daemon and gets the fresh id."""
    from daemon.store import Store, daemon_instance

    db = str(tmp_path / "s.db")
    store = Store.open(db)
    assert daemon_instance(store, "h", db, "first") == "first"
    store.close()
    store = Store.open(db)                                     # a restart
    assert daemon_instance(store, "h", db, "second") == "first"
    assert daemon_instance(store, "g", db, "third") == "third"           # copied to another host
    assert daemon_instance(store, "g", "/elsewhere/s.db", "fourth") == "fourth"   # or moved
    assert daemon_instance(store, "g", "/elsewhere/s.db", "fifth") == "fourth"
    store.close()


def test_status_reads_a_lease_view_against_the_last_reconcile():
    from datetime import datetime, timedelta, timezone

    from argusctl.status import daemon_line, lease_status

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    active = {"role": "active", "me": "h:/s.db", "holder": "h:/s.db", "epoch": 2, "since": "2026-01-01T11:00:00Z"}
    standby = {**active, "role": "standby", "me": "g:/t.db"}
    table = [  # (view, seconds since the last reconcile or None, expired, line contains)
        (active, 5, False, "is the active one since 2026-01-01T11:00:00Z"),
        (active, 29, False, "is the active one"),
        (active, 31, True, "its lease expired at 2026-01-01T11:59:59Z"),
        (active, None, None, "is the active one"),                   # no argusd ever marked a tick
        (standby, 5, None, "stands by; active: h:/s.db"),
        (standby, 31, None, "active then: h:/s.db (as of 2026-01-01T11:59:29Z: no reconcile since)"),
    ]
    for view, ago, expired, text in table:
        last = now - timedelta(seconds=ago) if ago is not None else None
        shown = lease_status(view, last, 30.0, now)
        assert shown["expired"] is expired and text in daemon_line(shown), (view["role"], ago, daemon_line(shown))
    assert lease_status(active, now - timedelta(hours=1), 0.0, now)["expired"] is False   # no lease configured


def test_a_restarted_daemon_waits_for_serve_to_finish_a_build_before_claiming():
    left_behind = LeaseValue(OLD, 3, 7)
    memory = LeaseMemory()
    for now in (0, 2, 4):                                       # Serve builds an app: a PUT would restart it
        step = decide(memory, left_behind, NEW, now, TTL, busy=True)
        memory = step.memory
        assert (step.role, step.write) == (Role.STANDBY, None)
    step = decide(memory, left_behind, NEW, 6, TTL, busy=False)  # built: claimed at once, no ttl waited
    assert (step.role, step.write) == (Role.CLAIMING, LeaseValue(NEW, 4, 0))

"""A model's replicas as status, the API and /metrics show them: its range, replicas now, why,
and its last wake (describe.replicas_view), as a table; and /metrics read from a real store."""
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from daemon.core.describe import describe_event, replicas_line, replicas_text, replicas_view
from daemon.core.records import Event, ModelRow
from daemon.metrics import Metrics
from daemon.store import Store

SCALE = {"min_replicas": 0, "max_replicas": 3, "target_ongoing_requests": 16, "scale_down_delay_s": 300}


def row(state="RUNNING", autoscaling=SCALE, suspended=False, adapter=False, replicas=None):
    resolved = {"num_replicas": replicas if replicas is not None else (autoscaling or {}).get("min_replicas", 2),
                "gpus_per_replica": 1, "autoscaling": autoscaling, "suspended": suspended}
    if adapter:
        resolved["base_model"] = "alice-1-b"
    return ModelRow("k", "alice", "a", "alice-1-a", "models.d/alice/a.yaml", "", resolved, state, None, 1, 1, 1,
                    "c" * 40, "Alice", "t", "t")


def event(kind, payload=None, time="2026-01-01T10:00:00Z"):
    return Event(1, "k", "alice", None, time, kind, payload or {})


IDLE, WOKE = event("IDLE"), event("WOKE", {"wake_s": 42.5, "running_replicas": 1}, "2026-01-01T11:00:00Z")

# (row, newest event, newest IDLE/WOKE, running from Serve, why, now, column)
TABLE = [
    (row(autoscaling=None), None, None, None, "fixed", 2, "2"),
    (row(autoscaling=None), None, None, 1, "fixed", 1, "1 of 2"),
    (row(), IDLE, IDLE, None, "idle", 0, "0 of 0-3"),
    (row(), WOKE, WOKE, None, "at min_replicas", None, "0-3"),            # store alone: not known how many
    (row(), WOKE, WOKE, 3, "scaled up by load", 3, "3 of 0-3"),
    (row(), IDLE, IDLE, 0, "idle", 0, "0 of 0-3"),
    (row("SUSPENDED", suspended=True), event("SUSPENDED"), None, None, "suspended", 0, "0 of 0-3"),
    (row("QUEUED"), event("QUOTA_EXCEEDED", {"message": "over"}), None, None, "over quota", None, "0-3"),
    (row("QUEUED"), event("PENDING_RESOURCES", {"message": "x"}), None, None, "waiting for GPUs", None, "0-3"),
    (row("RUNNING"), event("PENDING_RESOURCES", {"message": "cannot wake"}), IDLE, None, "waiting for GPUs", None,
     "0-3"),                                                               # a wake Serve cannot place
    (row("DEPLOYING"), event("APPLIED"), None, None, "not running", None, "0-3"),
]


@pytest.mark.parametrize("model, newest, scale, running, why, now, column", TABLE)
def test_replicas_view_table(model, newest, scale, running, why, now, column):
    view = replicas_view(model, newest, scale, WOKE if scale is WOKE else None, running)
    assert (view["why"], view["now"], replicas_text(view)) == (why, now, column)


def test_an_adapter_has_no_replicas_of_its_own_and_the_last_wake_is_shown():
    assert replicas_view(row(adapter=True), None, None, None) is None
    assert replicas_text(None) == "-"
    view = replicas_view(row(), WOKE, WOKE, WOKE, 1)
    assert view["last_wake"] == {"at": "2026-01-01T11:00:00Z", "took_s": 42.5}
    assert replicas_line(view) == "1 of 0-3 (scaled up by load); last woke 2026-01-01T11:00:00Z in 42.5 s"
    assert describe_event(WOKE) == "woke in 42.5 s, 1 replica running"
    assert describe_event(event("WOKE", {"wake_s": None})) == "woke (argusd restarted meanwhile: time unknown)"


def samples(metrics):
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_show_each_models_range_reserved_gpus_why_and_last_wake(tmp_path):
    db = str(tmp_path / "s.db")
    store = Store.open(db)
    with store.transaction():
        for key, resolved in (("k1", {"num_replicas": 1, "gpus_per_replica": 2, "autoscaling": {**SCALE,
                                                                                                "min_replicas": 1}}),
                              ("k2", {"num_replicas": 2, "gpus_per_replica": 1, "suspended": True})):
            store.insert_model(model_key=key, user_id="alice", model_id_suffix=key, model_id=f"alice-1-{key}",
                               spec_path=f"models.d/alice/{key}.yaml", spec_yaml="", resolved=resolved,
                               commit_sha="c", commit_author="A", created_at="t", now="t")
        store.set_state("k1", "RUNNING", now="t")
        store.set_state("k2", "SUSPENDED", now="t")
        store.append_event("IDLE", {}, now="2026-01-01T10:00:00Z", model_key="k1")
        store.append_event("WOKE", {"wake_s": 12.0}, now="2026-01-01T11:00:00Z", model_key="k1")
    store.close()
    metrics = Metrics(db)
    metrics.replicas_seen({"alice-1-k1": (2, 3)})
    s = samples(metrics)
    assert s[("argus_model_min_replicas", (("model_id", "alice-1-k1"),))] == 1
    assert s[("argus_model_max_replicas", (("model_id", "alice-1-k1"),))] == 3
    assert s[("argus_model_reserved_gpus", (("model_id", "alice-1-k1"),))] == 2
    assert s[("argus_model_reserved_gpus", (("model_id", "alice-1-k2"),))] == 0      # suspended
    assert s[("argus_model_replicas_why", (("model_id", "alice-1-k2"), ("why", "suspended")))] == 1
    assert s[("argus_model_last_wake_seconds", (("model_id", "alice-1-k1"),))] == 12.0
    assert s[("argus_model_replicas", (("model_id", "alice-1-k1"), ("state", "running")))] == 2
    assert s[("argus_model_replicas", (("model_id", "alice-1-k1"), ("state", "wanted")))] == 3
    metrics.replicas_seen({})
    assert not [k for k in samples(metrics) if k[0] == "argus_model_replicas"]

"""Adapters are routed to and probed on a generation of their base whose engine can load them,
read from the deployment Serve runs (llm_config.takes_adapters, its max_lora_rank), not from
the base's wanted spec: an adapter committed while a change that adds `adapters:` (or raises
max_rank) starts beside the serving generation waits, with the reason, for the switch; one
on a rolled-back base is probed and gets a verdict. Tables of the pure plan."""
from dataclasses import replace

import pytest

from daemon.core.adapters import AdapterInfo
from daemon.serving.judge import adapters_to_probe
from test_reconcile_plan import served
from test_rollout_plan import adapter, front, model, settled, states, step, with_status

POLICY = {"max_rank": 8, "max_loaded": 2, "users": ["bob"]}
ADAPTER_ID = "bob-202601010010-tutor"


def tables(config):
    """Model app name -> the adapter ids in its table."""
    return {a["name"]: sorted(a["deployments"][0]["user_config"]["adapters"] or {})
            for a in config.to_json()["applications"] if a["name"].startswith("llm-")}


def new_adapter(rank=8):
    return replace(adapter("QUEUED"), adapter=AdapterInfo(rank, None))


def rollout_started(before, after):
    """Generation 1 (adapters: `before`) serves; generation 2 (`after`) starts beside it."""
    gen1 = settled([model(adapters=before)])
    p = step([model(2, "QUEUED", seqs=8, adapters=after)], gen1)
    assert states(p) == [("a", "DEPLOYING", "ROLLOUT_STARTED")]
    return with_status(served(p.apply), "llm-a-b", "UPDATING", "DEPLOYING", running=0)


# (the serving generation's adapters, the starting one's, the new adapter's rank, the reason it waits: None, it goes in)
TABLE = [
    (None, POLICY, 8, "base model alice-202601010000-a's serving generation 1 takes no adapters; generation 2, "
                      "starting beside it, can: the adapter is loaded once it serves"),
    ({**POLICY, "max_rank": 8}, {**POLICY, "max_rank": 16}, 16,
     "base model alice-202601010000-a's serving generation 1 reserves LoRA rank 8, under the adapter's 16; "
     "generation 2, starting beside it, can: the adapter is loaded once it serves"),
    ({**POLICY, "max_rank": 8}, {**POLICY, "max_rank": 16}, 8, None),
    (POLICY, POLICY, 8, None),
]


@pytest.mark.parametrize("before, after, rank, waits", TABLE)
def test_an_adapter_committed_during_a_rollout_goes_only_on_a_generation_that_can_load_it(before, after, rank, waits):
    starting = rollout_started(before, after)
    base = model(2, "DEPLOYING", seqs=8, adapters=after)
    p = step([base, new_adapter(rank)], starting)
    if waits is not None:
        assert states(p) == [("k-ad", "QUEUED", "WAITING_FOR_BASE")]
        assert p.transitions[0].payload == {"message": waits} and p.transitions[0].error_summary == waits
        assert p.apply is None                     # in no table, routed nowhere: never sent to an engine without it
        # After the switch the serving generation can: it goes in and is routed to it.
        ready = with_status(starting, "llm-a-b", running=1)
        switched = step([base, new_adapter(rank)], ready, rollout_probes={"a": None})
        assert ("a", "RUNNING", "SWITCHED") in states(switched)
        said = replace(new_adapter(rank), last_event=("WAITING_FOR_BASE", {"message": waits}))
        q = step([model(2, applied=2, seqs=8, adapters=after), replace(said, state="QUEUED")], served(switched.apply))
        assert states(q) == [("k-ad", "DEPLOYING", "APPLIED")]
        assert front(q.apply)[ADAPTER_ID] == ("llm-a-b", False, None)
    else:
        assert states(p) == [("k-ad", "DEPLOYING", "APPLIED")]
        assert front(p.apply)[ADAPTER_ID] == ("llm-a", False, None)


def rolled_back(before):
    """Generation 1 (adapters: `before`) serves; generation 2 (adapters) failed beside it."""
    starting = rollout_started(before, POLICY)
    bad = with_status(starting, "llm-a-b", "DEPLOY_FAILED", "DEPLOY_FAILED", running=0, message="engine died")
    p = step([model(2, "DEPLOYING", seqs=8, adapters=POLICY)], bad)
    (t,) = p.transitions
    assert (t.model_key, t.event_type) == ("a", "ROLLED_BACK")
    return replace(model(2, "FAILED", seqs=8, adapters=POLICY), serving=t.serving), served(p.apply)


def test_an_adapter_added_on_a_rolled_back_base_is_probed_and_gets_a_verdict():
    base, after = rolled_back(POLICY)
    p = step([base, new_adapter()], after)
    assert states(p) == [("k-ad", "DEPLOYING", "APPLIED")]
    assert front(p.apply)[ADAPTER_ID] == ("llm-a", False, None) and tables(p.apply) == {"llm-a": [ADAPTER_ID]}
    deploying = adapter("DEPLOYING")
    applied = served(p.apply)
    assert [(a.model_key, b.model_key) for a, b in adapters_to_probe([base, deploying], applied)] == [("k-ad", "a")]
    ok = step([base, deploying], applied, probes={"k-ad": None})
    assert states(ok) == [("k-ad", "RUNNING", "RUNNING")]
    refused = step([base, deploying], applied, probes={"k-ad": "the adapter answered 400: bad"})
    assert states(refused) == [("k-ad", "FAILED", "FAILED")]


def test_an_adapter_on_a_rolled_back_base_whose_serving_generation_takes_none_waits_with_the_reason():
    base, after = rolled_back(None)
    p = step([base, new_adapter()], after)
    assert states(p) == [("k-ad", "QUEUED", "WAITING_FOR_BASE")]
    assert p.transitions[0].error_summary == ("base model alice-202601010000-a's serving generation 1 takes no "
                                              "adapters; the adapter is loaded once a generation that can serves")
    assert p.apply is None                                                 # nothing of it in Serve

"""LoRA adapters as specs: the spec rules, the rules that tie an adapter to its base
(adapter_fit, find_base, read_adapter), and the reconcile decision for adapters (plan), as
tables. The real stack is in tests/e2e/test_zero_disruption_e2e.py."""
import json

import pytest

from daemon.core.adapters import AdapterInfo, AdapterRefused, BaseRef, adapter_fit, find_base
from daemon.folders import read_adapter
from daemon.core.spec import ResolvedServingSpec, parse_spec
from daemon.errors import SpecError
from daemon.serving.desired import DesiredModel
from daemon.serving.judge import adapters_to_probe
from daemon.serving.observe import Observed
from daemon.serving.plan import plan
from daemon.serving.serve_config import parse_app
from helpers import llm_settings, serve_settings, spec_policy

CPU = llm_settings(accelerator_type="cpu")
PER_MODEL = serve_settings()
POLICY = spec_policy(root="/private")


def problems(text, user="bob"):
    try:
        parse_spec("s.yaml", text.encode(), user, POLICY)
    except SpecError as exc:
        return [(p.line, p.col, p.message) for p in exc.problems]
    return []


@pytest.mark.parametrize("text, expected", [
    ("model_id: tutor\nbase_model: smollm2\nmodel_source: $HOME/adapters/tutor\n", []),
    ("model_id: tutor\nbase_model: alice-202611251300-smollm2\nmodel_source: $HOME/a\n", []),
    ("model_id: tutor\nbase_model: smollm2\nmodel_source: $HOME/a\nnum_replicas: 2\n",
     [(4, 1, "num_replicas is not taken by an adapter spec (base_model is set): an adapter runs on its base "
             "model's replicas; remove it")]),
    ("model_id: tutor\nbase_model: smollm2\nmodel_source: /private/users/alice/a\n",
     [(3, 15, "model_source /private/users/alice/a is in user 'alice''s tree; use a path under /private/hf/ or "
              "/private/users/bob/")]),
    ("model_id: m\nmodel_source: $HOME/common/hf/m\nadapters: {max_rank: 8, max_loaded: 2, users: [alice, '*']}\n", []),
    ("model_id: m\nmodel_source: $HOME/common/hf/m\nadapters: {max_rank: 12}\n",
     [(3, 22, "adapters.max_rank must be one of 1, 8, 16, 32, 64, 128, 256, 320, 512 (vLLM's LoRA ranks), got 12")]),
    ("model_id: m\nmodel_source: $HOME/common/hf/m\nadapters: {max_rank: 8, users: [Alice]}\n",
     [(3, 33, "adapters.users[0] 'Alice' is not a user id; use user ids (the directories under models.d/) or \"*\"")]),
    ("model_id: m\nmodel_source: $HOME/common/hf/m\nengine_kwargs: {enable_lora: true}\n",
     [(3, 17, "engine_kwargs.enable_lora is not allowed: the platform sets it from the spec's `adapters:` "
              "(max_rank, max_loaded); remove it")]),
])
def test_spec_rules(text, expected):
    assert problems(text) == expected


def test_an_adapter_resolves_without_replicas_and_a_base_with_its_policy():
    parsed = parse_spec("s.yaml", b"model_id: t\nbase_model: smollm2\nmodel_source: $HOME/a\n", "bob", POLICY)
    from datetime import datetime, timezone
    from daemon.core.spec import resolve_spec
    spec = resolve_spec(parsed.spec, "bob", datetime(2026, 11, 25, tzinfo=timezone.utc), POLICY, parsed.model_source)
    assert (spec.is_adapter, spec.num_replicas, spec.gpus_per_replica, spec.model_source) == (
        True, 0, 0, "/private/users/bob/a")
    assert ResolvedServingSpec.from_dict(spec.to_dict()) == spec
    plain = parse_spec("s.yaml", b"model_id: m\nmodel_source: $HOME/common/hf/m\n", "bob", POLICY)
    as_stored = resolve_spec(plain.spec, "bob", datetime(2026, 11, 25, tzinfo=timezone.utc), POLICY).to_dict()
    assert "adapters" not in as_stored and "base_model" not in as_stored  # every other model is stored as before


ALICE_BASE = BaseRef("alice-202611251300-smollm2", "alice", "smollm2", "/private/hf/SmolLM2-135M-Instruct",
                     {"max_rank": 8, "max_loaded": 2, "users": ["bob"]})


@pytest.mark.parametrize("info, user, base, fragment", [
    (AdapterInfo(8, "HuggingFaceTB/SmolLM2-135M-Instruct"), "bob", ALICE_BASE, None),
    (AdapterInfo(8, None), "alice", ALICE_BASE, None),
    (AdapterInfo(8, None), "carol", ALICE_BASE, "belongs to alice, who has not allowed carol's adapters"),
    (AdapterInfo(16, None), "bob", ALICE_BASE, "the adapter's rank is 16 (r in adapter_config.json), over base model "
                                               "alice-202611251300-smollm2's adapters.max_rank 8"),
    (AdapterInfo(8, "/data/Qwen2-7B"), "bob", ALICE_BASE, "the adapter was trained on /data/Qwen2-7B"),
    (AdapterInfo(8, None), "alice", BaseRef("x", "alice", "x", "/p/x", None), "does not take adapters"),
    (AdapterInfo(8, None), "carol", BaseRef("x", "alice", "x", "/p/x", {"max_rank": 8, "users": ["*"]}), None),
])
def test_adapter_fit(info, user, base, fragment):
    found = adapter_fit(info, user, base)
    assert (found is None) if fragment is None else (fragment in found), found


def test_find_base_by_public_id_or_own_suffix():
    mine = BaseRef("bob-202611251300-smollm2", "bob", "smollm2", "/p", None)
    assert find_base("smollm2", "bob", [ALICE_BASE, mine]) == mine
    assert find_base("smollm2", "carol", [ALICE_BASE, mine]) is None   # a suffix names only your own
    assert find_base("alice-202611251300-smollm2", "carol", [ALICE_BASE, mine]) == ALICE_BASE


def test_read_adapter(tmp_path):
    def read_adapter_reason(path, user, root):
        found = read_adapter(path, user, root)
        return found.reason if isinstance(found, AdapterRefused) else found

    folder = tmp_path / "users" / "bob" / "a"
    folder.mkdir(parents=True)
    assert "adapter_config.json does not exist" in read_adapter_reason(str(folder), "bob", str(tmp_path))
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "PREFIX_TUNING"}))
    assert "is not a LoRA adapter" in read_adapter_reason(str(folder), "bob", str(tmp_path))
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8,
                                                            "base_model_name_or_path": "org/M"}))
    assert read_adapter(str(folder), "bob", str(tmp_path)) == AdapterInfo(8, "org/M")
    (tmp_path / "users" / "bob" / "b").symlink_to(tmp_path / "users")
    assert "symlink" in read_adapter_reason(str(tmp_path / "users" / "bob" / "b"), "bob", str(tmp_path))
    assert "does not exist" in read_adapter_reason(str(tmp_path / "users" / "bob" / "gone"), "bob", str(tmp_path))
    theirs = tmp_path / "users" / "alice" / "secret"
    theirs.mkdir(parents=True)
    (theirs / "adapter_model.safetensors").write_bytes(b"alice's weights")
    (folder / "adapter_model.safetensors").symlink_to(theirs / "adapter_model.safetensors")
    assert "outside your roots" in read_adapter_reason(str(folder), "bob", str(tmp_path))


# --- the reconcile decision ---------------------------------------------------------------

def base(state="RUNNING", adapters=True, generation=1):
    spec = ResolvedServingSpec("alice", "smollm2", "alice-202611251300", "alice-202611251300-smollm2",
                               "/private/hf/SmolLM2-135M-Instruct", 1, 1, {},
                               adapters={"max_rank": 8, "max_loaded": 2, "users": ["bob"]} if adapters else None)
    return DesiredModel("k-base", spec.model_id, state, generation, spec, was_running=state == "RUNNING")


def adapter(state="QUEUED", generation=1, ref="alice-202611251300-smollm2", info=AdapterInfo(8, None), key="k-ad",
            last_event=None):
    spec = ResolvedServingSpec("bob", "tutor", "bob-202611251310", f"bob-202611251310-{key}",
                               f"/private/users/bob/{key}", 0, 0, {}, base_model=ref)
    return DesiredModel(key, spec.model_id, state, generation, spec, adapter=info, last_event=last_event)


def adapter_table(app, model_key):
    """A model app's adapter table, read back from Serve's JSON of the app."""
    parsed = parse_app(app)
    assert parsed.model_key == model_key
    return {k: v.to_json() for k, v in (parsed.adapters or {}).items()}


def frontend_routes(app):
    """The front end's route table, read back from Serve's JSON of the app."""
    return {r.model_id: r.to_json() for r in parse_app(app).routes}


def states(p):
    return [(t.model_key, t.state, t.event_type) for t in p.transitions]


def settle(models, probes=None):
    """Serve takes every apply; returns (last plan, observed)."""
    from test_reconcile_plan import served
    observed, last = Observed(), None
    for _ in range(4):
        last = plan(models, observed, capacity=None, settings=CPU, serve=PER_MODEL, probes=probes)
        if last.apply is None:
            break
        observed = served(last.apply)
    return last, observed


def test_an_adapter_on_a_running_base_goes_into_its_table_without_touching_its_args():
    _, observed = settle([base()])
    p = plan([base(), adapter()], observed, capacity=None, settings=CPU, serve=PER_MODEL)
    assert states(p) == [("k-ad", "DEPLOYING", "APPLIED")]
    app = next(a for a in p.apply.to_json()["applications"] if a["name"] == "llm-k-base")
    assert app["args"] == observed.apps["llm-k-base"].deployed["args"]   # the base is not restarted
    assert adapter_table(app, "k-base") == {"bob-202611251310-k-ad": {"path": "/private/users/bob/k-ad",
                                                                       "generation": 1, "user_id": "bob"}}
    route = frontend_routes(next(a for a in p.apply.to_json()["applications"] if a["name"] == "argus"))["bob-202611251310-k-ad"]
    assert (route["app"], route["deployment"], route["base_model"]) == ("llm-k-base", "LLMServer:k-base",
                                                                        "alice-202611251300-smollm2")
    engine = app["args"]["llm_config"]["engine_kwargs"]
    assert (engine["enable_lora"], engine["max_lora_rank"], engine["max_loras"]) == (True, 8, 2)


def test_the_base_args_are_the_same_with_and_without_adapters():
    """Adding or removing an adapter changes only the base's user_config (applied in place)."""
    _, without = settle([base()])
    _, with_one = settle([base(), adapter(state="DEPLOYING")])
    old, new = without.apps["llm-k-base"].deployed, with_one.apps["llm-k-base"].deployed
    assert old["args"] == new["args"] and old["import_path"] == new["import_path"]
    assert old["deployments"][0]["user_config"] == {"adapters": {}}
    assert new["deployments"][0]["user_config"]["adapters"]


def test_probe_decides_running_or_failed_and_a_running_base_is_never_judged_as_drift():
    models = [base(), adapter(state="DEPLOYING")]
    _, observed = settle(models)
    assert [a.model_key for a, _ in adapters_to_probe(models, observed)] == ["k-ad"]
    assert states(plan(models, observed, capacity=None, settings=CPU, serve=PER_MODEL)) == []
    ok = plan(models, observed, capacity=None, settings=CPU, serve=PER_MODEL, probes={"k-ad": None})
    assert states(ok) == [("k-ad", "RUNNING", "RUNNING")] and ok.apply is None
    bad = plan(models, observed, capacity=None, settings=CPU, serve=PER_MODEL,
               probes={"k-ad": "vLLM could not serve the adapter (400): Failed to load lora model: bad shape"})
    assert states(bad) == [("k-ad", "FAILED", "FAILED")]
    assert "bob-202611251310-k-ad" not in frontend_routes(
        next(a for a in bad.apply.to_json()["applications"] if a["name"] == "argus"))


@pytest.mark.parametrize("models, reason", [
    ([base(state="DEPLOYING"), adapter()], "waits for base model alice-202611251300-smollm2, which is DEPLOYING"),
    ([base(adapters=False), adapter()], "does not take adapters"),
    ([base(), adapter(ref="smollm2")], "bob has no model with that model_id"),
    ([base(), adapter(info=AdapterInfo(16, None))], "over base model alice-202611251300-smollm2's adapters.max_rank 8"),
])
def test_an_adapter_that_cannot_run_waits_with_one_reason(models, reason):
    from test_reconcile_plan import served
    _, observed = settle([m for m in models if not m.spec.is_adapter])
    if models[0].state == "DEPLOYING":  # its replica is still starting
        observed = served(plan(models[:1], Observed(), capacity=None, settings=CPU, serve=PER_MODEL).apply,
                          dep_status="UPDATING", running=0)
    p = plan(models, observed, capacity=None, settings=CPU, serve=PER_MODEL)
    assert states(p) == [("k-ad", "QUEUED", "WAITING_FOR_BASE")]
    assert reason in p.transitions[0].payload["message"]
    again = adapter(info=models[1].adapter, ref=models[1].spec.base_model,
                    last_event=("WAITING_FOR_BASE", p.transitions[0].payload))
    assert states(plan([models[0], again], observed, capacity=None, settings=CPU, serve=PER_MODEL)) == []


def test_a_folder_that_is_not_an_adapter_fails_and_a_deleted_adapter_leaves_table_and_routes():
    _, observed = settle([base()])
    p = plan([base(), adapter(info=AdapterRefused("/private/users/bob/k-ad/adapter_config.json does not exist"))], observed,
             capacity=None, settings=CPU, serve=PER_MODEL)
    assert states(p) == [("k-ad", "FAILED", "FAILED")]
    _, observed = settle([base(), adapter(state="RUNNING")])
    p = plan([base(), adapter(state="DELETING")], observed, capacity=None, settings=CPU, serve=PER_MODEL)
    assert states(p) == [] and adapter_table(next(a for a in p.apply.to_json()["applications"] if a["name"] == "llm-k-base"),
                                             "k-base") == {}
    from test_reconcile_plan import served
    after = served(p.apply)
    assert states(plan([base(), adapter(state="DELETING")], after, capacity=None, settings=CPU,
                       serve=PER_MODEL)) == [("k-ad", "DELETED", "DELETED")]


def test_a_changed_adapter_goes_back_through_its_table_at_the_new_generation():
    _, observed = settle([base(), adapter(state="RUNNING")])
    p = plan([base(), adapter(state="QUEUED", generation=2)], observed, capacity=None, settings=CPU, serve=PER_MODEL)
    assert states(p) == [("k-ad", "DEPLOYING", "APPLIED")]
    table = adapter_table(next(a for a in p.apply.to_json()["applications"] if a["name"] == "llm-k-base"), "k-base")
    assert table["bob-202611251310-k-ad"]["generation"] == 2


@pytest.mark.parametrize("state", ["DEPLOYING", "RUNNING"])
def test_an_adapter_whose_folder_is_swapped_out_of_its_owners_roots_fails_and_leaves_the_table(state):
    import dataclasses
    _, observed = settle([base(), adapter(state="RUNNING")])
    reason = ("model_source /private/users/bob/k-ad leads through a symlink to /private/users/eve/a, outside "
              "/private/hf/ or /private/users/bob/; the folder changed after the spec was accepted")
    swapped = dataclasses.replace(adapter(state=state), source_problem=reason)
    p = plan([base(), swapped], observed, capacity=None, settings=CPU, serve=PER_MODEL)
    assert states(p) == [("k-ad", "FAILED", "FAILED")] and p.transitions[0].error_summary == reason
    assert adapter_table(next(a for a in p.apply.to_json()["applications"] if a["name"] == "llm-k-base"), "k-base") == {}


def test_the_probe_reason_is_vllms_final_exception():
    from daemon.serving.probe import _error_message, _reason
    body = json.dumps({"error": {"message": "Message: Internal Server Error (Request ID: 1), original exception: "
                                            "Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                                            + "    frame\n" * 400 +
                                            "ValueError: Failed to load lora model: header too large"}})
    assert _reason(_error_message(body)) == "ValueError: Failed to load lora model: header too large"
    assert _reason("plain text\nno traceback") == "plain text no traceback"


def test_a_running_adapter_leaves_its_base_when_the_owner_revokes():
    """Running adapters carry no folder facts (argusd reads the folder only before they run);
    the base's own policy is judged for them still, so a revocation takes effect at once."""
    running = adapter(state="RUNNING", info=None)
    _, observed = settle([base(), running])
    revoked = base()
    revoked = DesiredModel(revoked.model_key, revoked.model_id, revoked.state, revoked.generation,
                           ResolvedServingSpec(**{**revoked.spec.to_dict(),
                                                  "adapters": {"max_rank": 8, "max_loaded": 2, "users": []}}),
                           was_running=True)
    p = plan([revoked, running], observed, capacity=None, settings=CPU, serve=PER_MODEL)
    assert states(p) == [("k-ad", "QUEUED", "WAITING_FOR_BASE")]
    assert "who has not allowed bob's adapters" in p.transitions[0].payload["message"]
    app = next(a for a in p.apply.to_json()["applications"] if a["name"] == "llm-k-base")
    assert adapter_table(app, "k-base") == {}
    assert "bob-202611251310-k-ad" not in frontend_routes(next(a for a in p.apply.to_json()["applications"]
                                                               if a["name"] == "argus"))

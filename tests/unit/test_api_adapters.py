"""What the API says of adapters (issue 26.6), as tables over store rows: which base each
adapter resolves to (the reconciler's rule, find_base), what a base lists, and an adapter's
place in Serve, read from the config the reconciler itself builds (ModelApp), as Serve's
REST answer echoes it back in deployed_app_config."""
from daemon.api.service import Adapters, adapter_facts, adapter_serve_status, model_summary
from daemon.serving.observe import observed_from_status
from daemon.api.tokens import Identity
from daemon.core.spec import ResolvedServingSpec
from daemon.core.states import ModelState
from daemon.replicas.names import deployment_name, model_app_name
from daemon.serving.llm_config import ModelDeployment
from daemon.serving.serve_config import AdapterEntry, ModelApp, render_app
from daemon.core.records import ModelRow
from helpers import llm_settings

POLICY = {"max_rank": 8, "max_loaded": 4, "users": ["bob"]}


def row(key, user, suffix, state="RUNNING", base=None, adapters=None, error=None):
    resolved = ResolvedServingSpec(user, suffix, f"{user}-202612010000", f"{user}-202612010000-{suffix}",
                                   f"/private/users/{user}/{suffix}", 0 if base else 1, 0 if base else 1,
                                   adapters=adapters, base_model=base).to_dict()
    return ModelRow(key, user, suffix, resolved["model_id"], f"models.d/{user}/{suffix}.yaml", "", resolved,
                    ModelState(state), error, 1, 1, 1, "c" * 40, f"{user} <{user}@x>", "t", "t")


BASE = row("m-base", "alice", "chat", adapters=POLICY)
TONE = row("m-tone", "alice", "tone", base="chat")                                  # her own base, by suffix
PIRATE = row("m-pirate", "bob", "pirate", "QUEUED", base=BASE.model_id, error="/private/users/bob/p: no")
GONE = row("m-gone", "alice", "gone", "DELETED", base="chat")
LOST = row("m-lost", "bob", "lost", "QUEUED", base="chat")                          # bob has no model "chat"
EVERY = [BASE, TONE, PIRATE, GONE, LOST]
ALICE, BOB = Identity("alice", False, "alice", "alice@x"), Identity("bob", False, "bob", "bob@x")


def test_an_adapter_names_its_base_and_load_state_and_has_no_replicas():
    adapters = Adapters.of(EVERY)
    tone = model_summary(TONE, None, adapter_facts(ALICE, TONE, adapters))
    assert (tone["kind"], tone["num_replicas"], tone["gpus_per_replica"], tone["adapter_load"]) == (
        "adapter", None, None, "loaded")
    assert tone["base_model"] == {"ref": "chat", "model_id": BASE.model_id, "model_key": "m-base", "state": "RUNNING"}
    # bob's adapter on alice's base: the base's id, but no key to open a page bob may not see.
    assert adapter_facts(BOB, PIRATE, adapters)["base_model"]["model_key"] is None
    assert adapter_facts(ALICE, GONE, adapters)["base_model"]["model_id"] == BASE.model_id  # still named
    assert adapter_facts(BOB, LOST, adapters)["base_model"] == {"ref": "chat", "model_id": None, "model_key": None,
                                                               "state": None}


def test_a_base_lists_its_adapters_and_another_users_without_its_reason():
    facts = adapter_facts(ALICE, BASE, Adapters.of(EVERY))
    assert facts["takes_adapters"] == POLICY
    assert [(a["model_id"], a["adapter_load"], a["model_key"], a["reason"]) for a in facts["adapters"]] == [
        (TONE.model_id, "loaded", "m-tone", ""),
        (PIRATE.model_id, "waiting for base", None, "")]   # bob's: his paths are not alice's to read
    admin = Identity("ops", True, "ops", "ops@x")
    assert adapter_facts(admin, BASE, Adapters.of(EVERY))["adapters"][1]["reason"] == "/private/users/bob/p: no"


def serve_answer(table):
    """GET /api/serve/applications/ as Serve answers it for the base: its app, with the config the
    reconciler PUT (its ModelApp, with the adapter table) as deployed_app_config."""
    spec = ResolvedServingSpec.from_dict(BASE.resolved)
    entries = {k: AdapterEntry(v["path"], v["generation"], "alice") for k, v in table.items()}
    app = render_app(ModelApp.of(ModelDeployment.of(BASE.model_key, spec, llm_settings(accelerator_type="cpu")),
                                 model_app_name(BASE.model_key), entries))
    return {model_app_name(BASE.model_key): {"status": "RUNNING", "message": "", "deployed_app_config": app,
                                       "deployments": {deployment_name(BASE.model_key): {
                                           "status": "HEALTHY", "message": "",
                                           "replicas": [{"replica_id": "r1", "state": "RUNNING", "node_ip": "10.0.0.1",
                                                         "pid": 7}]}}}}


def test_an_adapter_in_serve_is_its_bases_replicas_and_its_place_in_the_bases_table():
    held = adapter_serve_status(observed_from_status({"applications": serve_answer({TONE.model_id: {"path": "/p", "generation": 1}})}),
                                TONE, BASE)
    assert held["deployed"] and held["in_adapter_table"] and held["table_generation"] == 1
    assert held["base_model_id"] == BASE.model_id
    assert held["replicas"] == [{"replica_id": "r1", "state": "RUNNING", "node_ip": "10.0.0.1", "pid": 7}]
    not_yet = adapter_serve_status(observed_from_status({"applications": serve_answer({})}), TONE, BASE)
    assert not_yet["deployed"] and not not_yet["in_adapter_table"] and not_yet["table_generation"] is None
    absent = adapter_serve_status(observed_from_status(None), TONE, BASE)
    assert not absent["deployed"] and absent["reason"] == f"its base model {BASE.model_id} is not deployed in Serve"

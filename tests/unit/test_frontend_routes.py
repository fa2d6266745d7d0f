"""The front end's decisions on its route table (daemon/replicas/route_table.py), as tables: what
/v1/models lists, where each `model` goes, the answers it gives itself, and the model server's
renaming of a probe id. The table is read from serve_config.Route.to_json, the JSON argusd
writes, so the two sides of the front end's user_config are checked against each other here.
What this cannot show (the answers as a client gets them through Serve's proxy, a probe
reaching its deployment): tests/integration/test_frontend_serve.py."""
import pytest

from daemon.replicas.names import probe_id
from daemon.replicas.route_table import (Answer, Entry, ErrorCode, Target, card_answer, error_type, hold_expired,
                                         listed_ids, parse_table, route, served_model, waking)
from daemon.serving.serve_config import Route, Unavailable

ROUTES = [
    Route("alice-1-m", "llm-k1", "LLMServer:k1", 2048),
    Route(probe_id("alice-1-m"), "llm-k1-g2", "LLMServer:k1-g2", 2048, probe=True),
    Route("bob-1-t", "llm-k1", "LLMServer:k1", 2048, base_model="alice-1-m"),
    Route(probe_id("bob-1-t"), "llm-k1-g2", "LLMServer:k1-g2", 2048, base_model="alice-1-m", probe=True),
    Route("carol-1-new", "", "", unavailable=Unavailable(503, "model carol-1-new is starting", 10)),
    Route("dave-1-gone", "", "", unavailable=Unavailable(503, "model dave-1-gone has no replica", None)),
]
TABLE = parse_table({"models": [r.to_json() for r in ROUTES]})
NOT_FOUND = "The model `{}` does not exist or you do not have access to it."
WAKING = ("model erin-1-z got no replica for this request within {} s (it is waking up from zero replicas, or all "
          "of its replicas are busy); retry in {} s")


def test_the_table_reads_every_field_argusd_writes():
    assert TABLE["alice-1-m"] == Entry("alice-1-m", "llm-k1", "LLMServer:k1", 2048)
    assert TABLE[probe_id("bob-1-t")] == Entry(probe_id("bob-1-t"), "llm-k1-g2", "LLMServer:k1-g2", 2048,
                                               "alice-1-m", probe=True)
    assert TABLE["carol-1-new"] == Entry("carol-1-new", "", "", unavailable=Answer(
        503, "model carol-1-new is starting", ErrorCode.MODEL_UNAVAILABLE, 10))
    assert TABLE["dave-1-gone"].unavailable.retry_after is None
    assert parse_table(None) == parse_table({}) == parse_table({"models": None}) == {}


def test_only_models_that_can_answer_are_listed():
    assert listed_ids(TABLE) == ["alice-1-m", "bob-1-t"]


@pytest.mark.parametrize("model_id, target", [
    ("alice-1-m", Target("llm-k1", "LLMServer:k1", None)),
    (probe_id("alice-1-m"), Target("llm-k1-g2", "LLMServer:k1-g2", None)),
    ("bob-1-t", Target("llm-k1", "LLMServer:k1", "bob-1-t")),
    # an adapter's probe: the new generation, asked for the ADAPTER (its server loads it by that id)
    (probe_id("bob-1-t"), Target("llm-k1-g2", "LLMServer:k1-g2", "bob-1-t")),
    ("carol-1-new", None),
])
def test_each_entry_goes_to_its_deployment_or_nowhere(model_id, target):
    assert TABLE[model_id].target == target


@pytest.mark.parametrize("model, routed", [
    ("alice-1-m", "alice-1-m"),
    ("bob-1-t", "bob-1-t"),
    (probe_id("alice-1-m"), probe_id("alice-1-m")),
    (probe_id("bob-1-t"), probe_id("bob-1-t")),
    ("carol-1-new", Answer(503, "model carol-1-new is starting", ErrorCode.MODEL_UNAVAILABLE, 10)),
    ("nobody-1-x", Answer(404, NOT_FOUND.format("nobody-1-x"), ErrorCode.MODEL_NOT_FOUND)),
    (probe_id("carol-1-new"), Answer(404, NOT_FOUND.format(probe_id("carol-1-new")), ErrorCode.MODEL_NOT_FOUND)),
    ("alice-1-m:lora", Answer(404, NOT_FOUND.format("alice-1-m:lora"), ErrorCode.MODEL_NOT_FOUND)),
    (None, Answer(400, "You must provide a model parameter: this endpoint serves alice-1-m, bob-1-t.",
                  ErrorCode.MODEL_REQUIRED)),
])
def test_where_a_requests_model_goes(model, routed):
    assert route(TABLE, model, 0.0) == routed


def test_without_a_model_the_only_listed_model_answers():
    one = parse_table({"models": [ROUTES[0].to_json(), ROUTES[1].to_json(), ROUTES[4].to_json()]})
    assert route(one, None, 0.0) == "alice-1-m"
    assert route({}, None, 0.0) == Answer(400, "You must provide a model parameter: this endpoint serves no model yet.",
                                     ErrorCode.MODEL_REQUIRED)


@pytest.mark.parametrize("model, found", [
    ("alice-1-m", "alice-1-m"),
    ("bob-1-t", "bob-1-t"),
    (probe_id("alice-1-m"), Answer(404, NOT_FOUND.format(probe_id("alice-1-m")), ErrorCode.MODEL_NOT_FOUND)),
    ("carol-1-new", Answer(503, "model carol-1-new is starting", ErrorCode.MODEL_UNAVAILABLE, 10)),
    ("nobody", Answer(404, NOT_FOUND.format("nobody"), ErrorCode.MODEL_NOT_FOUND)),
])
def test_a_models_card_or_why_there_is_none(model, found):
    assert card_answer(TABLE, model) == found


def test_answers_are_in_openais_error_shape_with_retry_after_when_set():
    starting = route(TABLE, "carol-1-new", 0.0)
    assert starting.body() == {"error": {"message": "model carol-1-new is starting", "type": "server_error",
                                         "param": None, "code": "model_unavailable"}}
    assert starting.headers() == {"Retry-After": "10"}
    assert route(TABLE, "dave-1-gone", 0.0).headers() == {}
    assert route(TABLE, "x", 0.0).body() == {"error": {"message": NOT_FOUND.format("x"), "type": "invalid_request_error",
                                                  "param": None, "code": "model_not_found"}}


@pytest.mark.parametrize("status, kind", [(400, "invalid_request_error"), (401, "authentication_error"),
                                          (403, "permission_error"), (404, "invalid_request_error"),
                                          (429, "rate_limit_error"), (500, "server_error"), (503, "server_error")])
def test_error_types_follow_openais(status, kind):
    assert error_type(status) == kind


@pytest.mark.parametrize("route_, held_for", [
    (Route("erin-1-z", "llm-k2", "LLMServer:k2", 2048, hold_s=300.0), 300.0),   # may be at zero
    (Route("erin-1-z", "llm-k2", "LLMServer:k2", 2048), None),                  # fixed replicas: never held
    (Route("frank-1-a", "llm-k2", "LLMServer:k2", 2048, base_model="erin-1-z", hold_s=2.5), 2.5),   # its base's
    (Route("erin-1-z", "", "", unavailable=Unavailable(503, "starting", 5), hold_s=300.0), None),  # answered here
])
def test_only_a_model_that_may_be_at_zero_is_held_and_for_its_hold_s(route_, held_for):
    entry = parse_table({"models": [route_.to_json()]})[route_.model_id]
    assert entry.hold_s == route_.hold_s and entry.held_for == held_for


@pytest.mark.parametrize("hold_s, assigned, answer", [
    # a replica took it: the bound never cuts a generation in progress
    (300.0, True, None),
    (0.5, True, None),
    # none did: 503 with Retry-After = the hold (at least 1 s, at most 30 s)
    (300.0, False, Answer(503, WAKING.format(300, 30), ErrorCode.MODEL_WAKING, 30)),
    (12.5, False, Answer(503, WAKING.format(12.5, 13), ErrorCode.MODEL_WAKING, 13)),
    (0.25, False, Answer(503, WAKING.format(0.25, 1), ErrorCode.MODEL_WAKING, 1)),
])
def test_a_held_request_whose_hold_runs_out(hold_s, assigned, answer):
    assert hold_expired("erin-1-z", hold_s, assigned) == answer


def test_a_waking_model_is_answered_in_openais_error_shape_with_retry_after():
    answer = waking("erin-1-z", 60)
    assert answer.body() == {"error": {"message": WAKING.format(60, 30), "type": "server_error",
                                       "param": None, "code": "model_waking"}}
    assert (answer.status, answer.headers()) == (503, {"Retry-After": "30"})


@pytest.mark.parametrize("model, served", [
    (probe_id("alice-1-m"), "alice-1-m"),            # its own probe: asked (and answered) as itself
    ("alice-1-m", "alice-1-m"),
    (probe_id("bob-1-m"), probe_id("bob-1-m")),      # another model's probe: left for vLLM to refuse
    ("bob-1-m", "bob-1-m"),
    (probe_id(""), probe_id("")),
    (None, None),
])
def test_the_model_server_asks_vllm_for_its_own_id_on_its_own_probe(model, served):
    assert served_model(model, "alice-1-m") == served


# A model whose new generation takes 10 % of its requests (and its adapter's: adapters follow the split).
from daemon.replicas.names import canary_key  # noqa: E402
from daemon.replicas.route_table import HandleSpec, handle_targets  # noqa: E402
from daemon.serving.serve_config import Canary  # noqa: E402

CANARY_ROUTES = [
    Route("alice-1-m", "llm-k1", "LLMServer:k1", 2048, canary=Canary("llm-k1-b", "LLMServer:k1", 10)),
    Route("bob-1-t", "llm-k1", "LLMServer:k1", 2048, base_model="alice-1-m",
          canary=Canary("llm-k1-b", "LLMServer:k1", 10)),
    Route("erin-1-z", "llm-k2", "LLMServer:k2", hold_s=5.0, canary=Canary("llm-k2-b", "LLMServer:k2", 50)),
]
CANARY_TABLE = parse_table({"models": [r.to_json() for r in CANARY_ROUTES]})


def test_a_canary_split_survives_argusds_render_and_the_front_ends_parse():
    assert [Route.from_json(r.to_json()) for r in CANARY_ROUTES] == CANARY_ROUTES
    assert CANARY_TABLE["alice-1-m"].canary == Target("llm-k1-b", "LLMServer:k1", None)
    assert CANARY_TABLE["bob-1-t"].canary == Target("llm-k1-b", "LLMServer:k1", "bob-1-t")
    assert TABLE["alice-1-m"].canary is None


@pytest.mark.parametrize("model, roll, routed", [
    ("alice-1-m", 0.0, canary_key("alice-1-m")),
    ("alice-1-m", 0.0999, canary_key("alice-1-m")),
    ("alice-1-m", 0.1, "alice-1-m"),          # 10 %: rolls in [0, 0.1) take the canary
    ("alice-1-m", 0.99, "alice-1-m"),
    ("bob-1-t", 0.05, canary_key("bob-1-t")),
    ("erin-1-z", 0.49, canary_key("erin-1-z")),
    ("erin-1-z", 0.5, "erin-1-z"),
    (None, 0.0, Answer(400, "You must provide a model parameter: this endpoint serves alice-1-m, bob-1-t, "
                            "erin-1-z.", ErrorCode.MODEL_REQUIRED)),
])
def test_a_canary_takes_its_share_of_the_rolls(model, roll, routed):
    assert route(CANARY_TABLE, model, roll) == routed


def test_a_canary_takes_about_its_percent_of_seeded_draws():
    import random
    draws = random.Random(7)
    picked = [route(CANARY_TABLE, "alice-1-m", draws.random()) for _ in range(10_000)]
    assert 900 <= picked.count(canary_key("alice-1-m")) <= 1100


def test_the_front_end_keeps_a_handle_for_each_canary_held_like_its_model_and_counts_both_generations():
    targets = handle_targets(CANARY_TABLE)
    assert targets["alice-1-m"] == HandleSpec(Target("llm-k1", "LLMServer:k1", None), None, counted=True)
    assert targets[canary_key("alice-1-m")] == HandleSpec(Target("llm-k1-b", "LLMServer:k1", None), None, True)
    assert targets[canary_key("bob-1-t")] == HandleSpec(Target("llm-k1-b", "LLMServer:k1", "bob-1-t"), None, True)
    assert targets[canary_key("erin-1-z")] == HandleSpec(Target("llm-k2-b", "LLMServer:k2", None), 5.0, True)
    plain = handle_targets(TABLE)   # no canary: nothing counted (nothing added per request)
    assert set(plain) == {"alice-1-m", probe_id("alice-1-m"), "bob-1-t", probe_id("bob-1-t")}
    assert not any(spec.counted for spec in plain.values())


def test_a_canary_key_is_never_listed_or_carded():
    assert listed_ids(CANARY_TABLE) == ["alice-1-m", "bob-1-t", "erin-1-z"]
    assert card_answer(CANARY_TABLE, canary_key("alice-1-m")) == Answer(
        404, NOT_FOUND.format(canary_key("alice-1-m")), ErrorCode.MODEL_NOT_FOUND)

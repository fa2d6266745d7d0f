"""Which changes Serve makes in place and which need new replicas, as argus decides it
(rollout.same_engine) for the plan: a count or a range is in place; a switch between a fixed
count and autoscaling is a new generation beside the serving one, because Serve rebuilds the
app for it (Ray's own code version: tests/integration/test_ray_contract.py)."""
from dataclasses import replace

import pytest

from daemon.core.spec import ResolvedServingSpec
from daemon.serving.llm_config import ModelDeployment
from daemon.serving.rollout import same_engine
from helpers import llm_settings
from test_rollout_plan import ID, apps, model, settled, states, step

CPU = llm_settings(accelerator_type="cpu")
FIXED = ResolvedServingSpec("alice", "a", "alice-1", "alice-1-a", "/private/hf/m", 1, 1, {})


def auto(low: int, high: int, target: int = 16) -> ResolvedServingSpec:
    return replace(FIXED, num_replicas=low, autoscaling={"min_replicas": low, "max_replicas": high,
                                                        "target_ongoing_requests": target,
                                                        "scale_down_delay_s": 300})


@pytest.mark.parametrize("a, b, same", [
    (FIXED, replace(FIXED, num_replicas=2), True),
    (auto(0, 1), auto(1, 2), True),
    (auto(0, 1), auto(0, 1, target=4), True),
    (FIXED, auto(1, 1), False),
    (auto(0, 2), replace(FIXED, num_replicas=2), False),
    (FIXED, replace(FIXED, engine_kwargs={"max_num_seqs": 8}), False),
], ids=["count", "range", "target", "fixed->auto", "auto->fixed", "engine"])
def test_a_count_or_a_range_is_in_place_and_a_switch_to_or_from_autoscaling_is_not(a, b, same):
    assert same_engine(ModelDeployment.of("k", a, CPU), ModelDeployment.of("k", b, CPU)) is same


def test_a_running_model_switched_to_autoscaling_starts_it_beside_the_serving_generation():
    observed = settled([model()])
    switched = model(2, "QUEUED")
    switched = replace(switched, spec=replace(switched.spec, num_replicas=0,
                                              autoscaling={"min_replicas": 0, "max_replicas": 2,
                                                           "target_ongoing_requests": 16, "scale_down_delay_s": 300}))
    p = step([switched], observed)
    assert states(p) == [("a", "DEPLOYING", "ROLLOUT_STARTED")]
    assert set(apps(p.apply)) == {"llm-a", "llm-a-b"}   # the serving app stays while the new one starts
    assert switched.model_id == ID

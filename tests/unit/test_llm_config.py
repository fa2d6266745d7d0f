"""spec -> LLMConfig for 1/2/4 GPUs, accelerator, runtime_env."""
import pytest

from daemon.serving.llm_config import build_llm_config
from helpers import llm_settings
from daemon.core.spec import ResolvedServingSpec


def spec(gpus=1, replicas=1, engine_kwargs=None):
    return ResolvedServingSpec(user_id="alice", model_id_suffix="q", model_id_prefix="alice-202601010000",
                               model_id="alice-202601010000-q", model_source="/private/hf/Q",
                               num_replicas=replicas, gpus_per_replica=gpus, engine_kwargs=engine_kwargs or {})


@pytest.mark.parametrize("gpus", [1, 2, 4])
def test_gpu_counts(gpus):
    config = build_llm_config(spec(gpus), "m-1", llm_settings(accelerator_type="H20"))
    assert config["engine_kwargs"]["tensor_parallel_size"] == gpus
    bundles = config["placement_group_config"]["bundles"]
    assert len(bundles) == gpus
    assert all(b == {"GPU": 1, "accelerator_type:H20": 0.001} for b in bundles)  # no CPU: see placement_bundles
    assert config["placement_group_config"]["strategy"] == "STRICT_PACK"
    assert config["accelerator_type"] == "H20" and "accelerator_config" not in config


def test_model_loading_and_names():
    config = build_llm_config(spec(), "m-1", llm_settings())
    assert config["model_loading_config"] == {"model_id": "alice-202601010000-q", "model_source": "/private/hf/Q"}
    assert config["deployment_config"] == {"name": "m-1", "num_replicas": 1}


def test_runtime_env_is_offline_with_caches():
    env = build_llm_config(spec(), "m-1", llm_settings(cache_dir="/c", env_vars={"X": "1"}))["runtime_env"]["env_vars"]
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["HF_HOME"] == "/c/hf" and env["VLLM_CACHE_ROOT"] == "/c/vllm" and env["X"] == "1"


def test_every_engine_carries_the_reapers_mark_which_no_setting_replaces():
    from daemon.core.replica_contract import ENGINE_MARK
    env = build_llm_config(spec(), "m-1", llm_settings(env_vars={ENGINE_MARK: "spoofed"}))["runtime_env"]["env_vars"]
    assert env[ENGINE_MARK] == "m-1" and list(env) == sorted(env)


def test_cpu_profile_uses_a_cpu_accelerator_config():
    config = build_llm_config(spec(), "m-1", llm_settings(accelerator_type="cpu",
                                                         engine_defaults={"enforce_eager": True, "max_model_len": 9}))
    assert config["accelerator_config"] == {"kind": "cpu"} and "accelerator_type" not in config
    assert config["placement_group_config"]["bundles"] == [{"CPU": 1}]
    assert config["engine_kwargs"] == {"enforce_eager": True, "max_model_len": 9, "tensor_parallel_size": 1}


def test_spec_engine_kwargs_win_over_defaults_but_not_over_tp():
    config = build_llm_config(spec(2, engine_kwargs={"max_model_len": 100}), "m-1",
                              llm_settings(engine_defaults={"max_model_len": 9, "enforce_eager": True}))
    assert config["engine_kwargs"] == {"enforce_eager": True, "max_model_len": 100, "tensor_parallel_size": 2}

import pytest

from daemon.core.engine_policy import ALLOWED, OWNED, UNSAFE, check_engine_kwargs


@pytest.mark.parametrize("key", sorted(OWNED))
def test_platform_owned_keys_are_refused_with_why(key):
    ((k, at_key, message),) = check_engine_kwargs({key: 1})
    assert (k, at_key) == (key, True)
    assert "is not allowed" in message and OWNED[key] in message


@pytest.mark.parametrize("key", sorted(UNSAFE))
def test_unsafe_keys_are_refused_with_why(key):
    ((_, _, message),) = check_engine_kwargs({key: True})
    assert UNSAFE[key] in message


def test_trust_remote_code_only_when_the_config_allows_it():
    assert check_engine_kwargs({"trust_remote_code": True}, allow_trust_remote_code=True) == []
    assert "true or false" in check_engine_kwargs({"trust_remote_code": "yes"}, allow_trust_remote_code=True)[0][2]


@pytest.mark.parametrize("kwargs", [
    {"max_model_len": 8192}, {"enforce_eager": True}, {"gpu_memory_utilization": 0.9},
    {"dtype": "bfloat16"}, {"gpu_memory_utilization": 1}, {"hf_overrides": {"rope_scaling": {"type": "yarn"}}},
    {"tokenizer_mode": "hf"},
])
def test_allowed_values(kwargs):
    assert check_engine_kwargs(kwargs) == []


@pytest.mark.parametrize("kwargs, fragment", [
    ({"max_model_len": 0}, "whole number > 0"),
    ({"max_model_len": "8k"}, "whole number > 0"),
    ({"max_model_len": True}, "whole number > 0"),
    ({"enforce_eager": "yes"}, "true or false"),
    ({"gpu_memory_utilization": 1.5}, "(0, 1]"),
    ({"dtype": "fp4"}, "one of"),
    ({"max_model_length": 1}, "did you mean 'max_model_len'"),
    ({"frobnicate": 1}, "engine_kwargs.extra_allowed"),
])
def test_bad_values_and_unknown_keys(kwargs, fragment):
    ((_, _, message),) = check_engine_kwargs(kwargs)
    assert fragment in message


def test_extra_allowed_from_config():
    assert check_engine_kwargs({"frobnicate": 1}, extra_allowed=("frobnicate",)) == []


def test_lists_do_not_overlap():
    assert not (set(OWNED) & set(UNSAFE)) and not (set(ALLOWED) & (set(OWNED) | set(UNSAFE)))


@pytest.mark.parametrize("value, fragment", [
    ({"backend": "os.system"}, "compilation_config.backend is not allowed: vLLM imports the callable it names"),
    ({"inductor_passes": {"x": "evil.module.run"}}, "compilation_config.inductor_passes is not allowed: vLLM imports"),
    ({"debug_dump_path": "/etc"}, "compilation_config.debug_dump_path is not allowed: it writes files"),
    ({"cache_dir": "/private/users/bob"}, "compilation_config.cache_dir is not allowed"),
    ({"inductor_compile_config": {}}, "compilation_config.inductor_compile_config is not allowed"),
    ({"levle": 3}, "compilation_config.levle is not allowed; a spec may set only mode, cudagraph_mode"),
    ({"cudagraph_mode": "ALL"}, "compilation_config.cudagraph_mode must be one of NONE, PIECEWISE"),
    ({"cudagraph_capture_sizes": [1, -2]}, "cudagraph_capture_sizes must be a list of positive integers"),
    ("O3", "engine_kwargs.compilation_config must be a mapping"),
])
def test_compilation_config_keys_that_run_code_or_touch_paths_are_refused(value, fragment):
    messages = [m for _, _, m in check_engine_kwargs({"compilation_config": value})]
    assert any(fragment in m for m in messages), messages


def test_compilation_config_tuning_is_fine():
    assert check_engine_kwargs({"compilation_config": {"mode": 3, "cudagraph_mode": "FULL_AND_PIECEWISE",
                                                       "cudagraph_capture_sizes": [1, 2, 4],
                                                       "max_cudagraph_capture_size": 64}}) == []


@pytest.mark.parametrize("kwargs, fragment", [
    # Keys vLLM 0.32 does not have: building the app raised "Unknown engine argument".
    ({"max_seq_len_to_capture": 8192}, "is not a known engine option"),
    ({"swap_space": 4}, "is not a known engine option"),
    ({"rope_theta": 1e6}, "is not a known engine option"),
    ({"disable_log_stats": True}, "Ray Serve LLM manages engine stats"),
    ({"tokenizer_mode": "custom"}, "must be one of auto, hf, mistral"),
    ({"max_lora_rank": 16}, "the platform sets it from adapters.max_rank"),
    ({"enable_lora": True}, "the platform sets it from the spec's `adapters:`"),
])
def test_keys_and_values_the_engine_refuses_are_refused_at_lint(kwargs, fragment):
    messages = [m for _, _, m in check_engine_kwargs(kwargs)]
    assert any(fragment in m for m in messages), messages

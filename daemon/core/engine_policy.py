"""Which vLLM engine arguments a user may set in `engine_kwargs`, and why not the others.

An allow-list, not a deny-list: a key we do not know is refused with a did-you-mean, so a
typo fails at lint time instead of deep inside a vLLM replica minutes later.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable

# Set by the platform from the spec or the cluster; a user value would be overwritten or
# would break the mapping between a spec and what runs.
OWNED: dict[str, str] = {
    "model": "the platform sets it from model_source",
    "tokenizer": "the tokenizer is loaded from model_source",
    "served_model_name": "the platform sets the public model id",
    "tensor_parallel_size": "the platform sets it from gpus_per_replica",
    "pipeline_parallel_size": "the platform places each replica on gpus_per_replica GPUs",
    "data_parallel_size": "scale with num_replicas instead",
    "distributed_executor_backend": "the platform runs replicas on Ray",
    "device": "the platform picks the device from the cluster config",
    "placement_group_config": "the platform builds placement from gpus_per_replica",
    "disable_log_stats": "Ray Serve LLM manages engine stats (log_engine_metrics) and refuses it",
    "enable_lora": "the platform sets it from the spec's `adapters:` (max_rank, max_loaded)",
    "max_lora_rank": "the platform sets it from adapters.max_rank",
    "max_loras": "the platform sets it from adapters.max_loaded",
}
# The engine keys the platform sets for a model that takes adapters (spec `adapters:`).
LORA_ENGINE_KEYS = ("enable_lora", "max_lora_rank", "max_loras")

# Load code or reach outside the allowed roots / the offline cluster.
UNSAFE: dict[str, str] = {
    "trust_remote_code": "it runs Python code shipped with the model",
    "download_dir": "it writes outside the storage roots",
    "worker_cls": "it imports arbitrary code into the engine",
    "worker_extension_cls": "it imports arbitrary code into the engine",
    "logits_processors": "it imports arbitrary code into the engine",
    "tool_parser_plugin": "it executes a Python file",
    "load_format": "custom loaders can fetch or execute code",
    "model_loader_extra_config": "it configures custom loaders",
    "allowed_local_media_path": "it lets requests read files on the server",
    "speculative_config": "it loads a second model from an unchecked path",
    "chat_template": "it reads a file from an unchecked path",
    "revision": "models load from local paths only (HF_HUB_OFFLINE=1)",
    "code_revision": "models load from local paths only (HF_HUB_OFFLINE=1)",
    "tokenizer_revision": "models load from local paths only (HF_HUB_OFFLINE=1)",
    "otlp_traces_endpoint": "it sends data to a network endpoint",
}


def _positive_int(v: Any) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) and v > 0 else "must be a whole number > 0"


def _non_negative_number(v: Any) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
    return None if ok else "must be a number >= 0"


def _fraction(v: Any) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1
    return None if ok else "must be a number in (0, 1]"


def _boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}"
    return check


def _mapping(v: Any) -> str | None:
    return None if isinstance(v, dict) else "must be a mapping"


def _anything(v: Any) -> str | None:
    return None


# The tokenizer modes a spec may choose (vLLM has more; "custom" loads code, "slow" is refused by Ray).
TOKENIZER_MODES = ("auto", "hf", "mistral")
# The ranks vLLM's LoRA kernels take (vllm.config.LoRAConfig.max_lora_rank).
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

# Known-safe tuning knobs, with a light value check where a wrong value is a common mistake.
# Every key is a field of the engine that runs it (tests/integration/test_vllm_contract.py
# checks them against the vLLM in the serving venv).
ALLOWED: dict[str, Callable[[Any], str | None]] = {
    "max_model_len": _positive_int,
    "max_num_seqs": _positive_int,
    "max_num_batched_tokens": _positive_int,
    "max_logprobs": _positive_int,
    "block_size": _positive_int,
    "seed": _anything,
    "gpu_memory_utilization": _fraction,
    "cpu_offload_gb": _non_negative_number,
    "enforce_eager": _boolean,
    "enable_prefix_caching": _boolean,
    "enable_chunked_prefill": _boolean,
    "disable_sliding_window": _boolean,
    "disable_cascade_attn": _boolean,
    "enable_auto_tool_choice": _boolean,
    "async_scheduling": _boolean,
    "dtype": _one_of("auto", "half", "float16", "bfloat16", "float", "float32"),
    "kv_cache_dtype": _one_of("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16"),
    "quantization": _anything,
    "tokenizer_mode": _one_of(*TOKENIZER_MODES),
    "scheduling_policy": _one_of("fcfs", "priority"),
    "tool_call_parser": _anything,
    "reasoning_parser": _anything,
    "limit_mm_per_prompt": _mapping,
    "mm_processor_kwargs": _mapping,
    "override_generation_config": _mapping,
    "hf_overrides": _mapping,
}

# compilation_config: vLLM's CompilationConfig imports `backend` and every entry of
# `inductor_passes` by name and calls them, and reads or writes `debug_dump_path`,
# `cache_dir` and `local_cache_dir`: as a whole it lets a spec run code or touch paths of its
# author's choosing on the cluster. Only the tuning keys below may be set.
_CUDAGRAPH_MODES = ("NONE", "PIECEWISE", "FULL", "FULL_DECODE_ONLY", "FULL_AND_PIECEWISE")


def _sizes(v: Any) -> str | None:
    ok = isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)
    return None if ok else "must be a list of positive integers"


COMPILATION_ALLOWED: dict[str, Callable[[Any], str | None]] = {
    "mode": lambda v: None if (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 3) or v in (
        "NONE", "STOCK_TORCH_COMPILE", "DYNAMO_TRACE_ONCE", "VLLM_COMPILE") else
    "must be 0-3 or NONE, STOCK_TORCH_COMPILE, DYNAMO_TRACE_ONCE, VLLM_COMPILE",
    "cudagraph_mode": _one_of(*_CUDAGRAPH_MODES),
    "cudagraph_capture_sizes": _sizes,
    "max_cudagraph_capture_size": _positive_int,
    "cudagraph_num_of_warmups": lambda v: None if isinstance(v, int) and not isinstance(v, bool) and v >= 0
    else "must be a whole number >= 0",
    "compile_sizes": _sizes,
    "use_inductor_graph_partition": _boolean,
}
COMPILATION_UNSAFE: dict[str, str] = {
    "backend": "vLLM imports the callable it names",
    "inductor_passes": "vLLM imports and runs each pass it names",
    "inductor_compile_config": "it passes arbitrary options (paths, code hooks) to torch inductor",
    "pass_config": "it configures compiler passes beyond tuning",
    "custom_ops": "it switches the engine's kernels; operators tune that, not specs",
    "splitting_ops": "it names arbitrary torch operators",
    "debug_dump_path": "it writes files to a path of the spec's choosing",
    "cache_dir": "it reads and writes compiled code at a path of the spec's choosing",
    "local_cache_dir": "it reads and writes compiled code at a path of the spec's choosing",
    "traced_files": "it names files on the server",
}


def check_compilation_config(value: Any) -> list[str]:
    """Problems of engine_kwargs.compilation_config, each naming the key and why."""
    if not isinstance(value, dict):
        return ["engine_kwargs.compilation_config must be a mapping"]
    problems = []
    for key in sorted(value):
        name = f"engine_kwargs.compilation_config.{key}"
        if key in COMPILATION_UNSAFE:
            problems.append(f"{name} is not allowed: {COMPILATION_UNSAFE[key]}; remove it")
        elif key in COMPILATION_ALLOWED:
            error = COMPILATION_ALLOWED[key](value[key])
            if error:
                problems.append(f"{name} {error}, got {value[key]!r}")
        else:
            problems.append(f"{name} is not allowed; a spec may set only {', '.join(COMPILATION_ALLOWED)}")
    return problems


def check_engine_kwargs(kwargs: dict[str, Any], *, allow_trust_remote_code: bool = False,
                        extra_allowed: tuple[str, ...] = ()) -> list[tuple[str, bool, str]]:
    """Problems as (key, at_key, message); at_key says whether the key (not the value) is wrong."""
    problems: list[tuple[str, bool, str]] = []
    for key in sorted(kwargs):
        value = kwargs[key]
        name = f"engine_kwargs.{key}"
        if key in OWNED:
            problems.append((key, True, f"{name} is not allowed: {OWNED[key]}; remove it"))
        elif key == "trust_remote_code" and allow_trust_remote_code:
            if not isinstance(value, bool):
                problems.append((key, False, f"{name} must be true or false"))
        elif key in UNSAFE:
            problems.append((key, True, f"{name} is not allowed: {UNSAFE[key]}; remove it"))
        elif key == "compilation_config":
            problems += [(key, False, message) for message in check_compilation_config(value)]
        elif key in ALLOWED:
            error = ALLOWED[key](value)
            if error:
                problems.append((key, False, f"{name} {error}, got {value!r}"))
        elif key not in extra_allowed:
            known = list(ALLOWED) + list(extra_allowed)
            hint = difflib.get_close_matches(key, known, n=1)
            fix = f"did you mean {hint[0]!r}?" if hint else "ask an operator to allow it (engine_kwargs.extra_allowed)"
            problems.append((key, True, f"{name} is not a known engine option; {fix}"))
    return problems

"""A model or adapter folder as argus judges it: the facts a shell read of it (daemon/folders.py)
and the rules that decide from them whether it may be served. Pure: the core never touches the
file system; the shell resolves symlinks, lists and reads, and passes the result in.

Why facts and not paths: a spec must never make argusd, the hook or a replica read a path of
the user's choosing. The shell reads a folder's files only after the real path (every symlink
resolved) is inside the owner's roots; the rules here check the same real path again, so a
folder swapped for a symlink into another user's tree is refused whoever asks.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any, Mapping

from daemon.core.replica_contract import Roots, outside_roots
from daemon.core.validation import is_int

CONFIG_JSON = "config.json"
ADAPTER_CONFIG = "adapter_config.json"
JSON_BYTES = 1 << 20   # the most of config.json / adapter_config.json a shell reads


@dataclass(frozen=True)
class FolderFacts:
    """What a shell read of one folder named by a spec (`path`, as the spec resolved it)."""

    path: str
    real: str                          # `path` with every symlink resolved
    roots: Roots                       # the owner's roots, each with its symlinks resolved
    is_dir: bool = False               # a directory is there (through the symlinks)
    config_json: bytes | None = None   # config.json (None: absent, or not read: the folder is outside the roots)
    adapter_config_json: bytes | None = None
    links: tuple[tuple[str, str], ...] = ()   # (entry, where it leads) for each symlink in the folder
    read_error: str | None = None      # why the folder or one of its files could not be read


def escape_problem(facts: FolderFacts, user_id: str, allowed: str) -> str | None:
    """A folder whose real path leads out of its owner's roots (a symlink on the way)."""
    if facts.real != facts.path and outside_roots(facts.real, user_id, facts.roots) is not None:
        return f"model_source {facts.path} leads through a symlink to {facts.real}, outside {allowed}"
    return None


def json_object(data: bytes | None) -> dict[str, Any] | None:
    """A JSON file's top-level object, or None when there is none (absent, not JSON, nested too deep
    to parse, a list): the rules then judge without it, as for a folder with no config.json."""
    if data is None:
        return None
    import json  # here: a spec whose folder is not on this machine (lint on a laptop) parses no JSON

    try:
        value = json.loads(data[:JSON_BYTES])
    except (ValueError, RecursionError):   # RecursionError: nesting deeper than the parser goes ("[" * 100000)
        return None
    return value if isinstance(value, dict) else None


def text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The language model's part of a config.json (a multimodal model nests it)."""
    inner = config.get("text_config")
    return inner if isinstance(inner, dict) else config


# -- tensor parallelism --------------------------------------------------------------------------


# vLLM reads the key/value heads from the first of these keys of the text config, else it takes
# the attention heads (model_arch_config_convertor.py, get_total_num_kv_heads, 0.29 and 0.32).
KV_HEAD_KEYS = ("n_head_kv", "num_kv_heads", "num_key_value_heads", "multi_query_group_num",
                "num_attention_groups")


@dataclass(frozen=True)
class AttentionHeads:
    query: int   # num_attention_heads
    kv: int      # key/value heads (grouped-query attention has fewer)


def attention_heads(config: Mapping[str, Any] | None) -> AttentionHeads | None:
    """The attention heads of a model's config.json (None when it cannot say)."""
    text = text_config(config) if config else {}
    heads = text.get("num_attention_heads")
    if not is_int(heads) or heads <= 0:
        return None
    kv = next((text[k] for k in KV_HEAD_KEYS if text.get(k) is not None), heads)
    return AttentionHeads(heads, kv if is_int(kv) and kv > 0 else heads)


def splits(heads: AttentionHeads, tp: int) -> bool:
    """vLLM's QKVParallelLinear (model_executor/layers/linear.py, 0.29 and 0.32): each GPU takes
    num_heads / tp query heads (`divide`), and the key/value heads are split the same way, or,
    with at least as many GPUs as key/value heads, replicated tp / kv times (`divide` again)."""
    kv_fits = tp % heads.kv == 0 if tp >= heads.kv else heads.kv % tp == 0
    return heads.query % tp == 0 and kv_fits


def tensor_parallel_problem(heads: AttentionHeads | None, gpus_per_replica: int) -> str | None:
    """vLLM splits attention heads evenly across the tensor-parallel GPUs."""
    if heads is None or gpus_per_replica <= 1 or splits(heads, gpus_per_replica):
        return None
    fits = ", ".join(str(n) for n in range(1, min(heads.query, 64) + 1) if splits(heads, n))
    if heads.query % gpus_per_replica != 0:
        return (f"gpus_per_replica {gpus_per_replica} does not divide the model's {heads.query} attention heads "
                f"(its config.json), so vLLM cannot split it; use one of {fits}")
    return (f"gpus_per_replica {gpus_per_replica} cannot split the model's {heads.kv} key/value heads (its "
            f"config.json): vLLM needs one of the two to divide the other; use one of {fits}")


# -- the model's own context length --------------------------------------------------------------

# vLLM 0.29-0.32 (transformers_utils/model_arch_config_convertor.py, derive_max_model_len_and_key):
# the smallest of these keys of the text config, but model_max_length wins when set.
MAX_LEN_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
                "max_target_positions", "max_sequence_length", "max_seq_length", "seq_len")


@dataclass(frozen=True)
class RopeRule:
    """How one vLLM version scales the text config's length by its RoPE parameters
    (config/model.py, _get_and_verify_max_len, which both versions call with hf_text_config)."""

    vllm: str
    unscaled: frozenset[str]       # RoPE types whose `factor` is not applied
    yarn_from_original: bool       # yarn: the length is original_max_position_embeddings (x factor)


# argus runs both: the CPU venv pins vLLM 0.32, the `gpu` extra 0.29. A max_model_len either
# starts with is taken; only one above both limits is refused.
ROPE_RULES = (
    # vLLM 0.29.0 vllm/config/model.py 2452-2458, 2469: skips only su/longrope/llama3; for yarn
    # `derived_max_model_len = rp["original_max_position_embeddings"]`, then `*= scaling_factor`.
    RopeRule("0.29", frozenset({"su", "longrope", "llama3"}), yarn_from_original=True),
    # vLLM 0.32 vllm/config/model.py 2595-2605, 2616: the YaRN variants leave
    # max_position_embeddings already scaled, so their factor is not applied.
    RopeRule("0.32", frozenset({"su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling"}),
             yarn_from_original=False),
)
# engine_kwargs.hf_overrides keys that change the limit. vLLM applies the overrides to the config
# before deriving it (flat keys set, dict values replace or merge into sub-configs), and then
# transformers standardises the RoPE parameters, differently in the versions behind 0.29 and
# 0.32; rather than guess that, argus leaves such a spec to vLLM (never refusing what it takes).
LENGTH_OVERRIDES = frozenset(MAX_LEN_KEYS) | {"rope_scaling", "rope_parameters", "text_config", "model_type",
                                               "original_max_position_embeddings"}


@dataclass(frozen=True)
class ModelLimit:
    tokens: int
    key: str   # where config.json says it, as a person reads it


def _rope_parameters(text: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = text.get("rope_parameters", text.get("rope_scaling"))
    if not isinstance(found, dict) or not found:
        return []
    if all(isinstance(v, dict) for v in found.values()):   # one per layer type
        return [v for v in found.values() if v]
    return [found]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _limit_under(rule: RopeRule, tokens: int, key: str, params: list[Mapping[str, Any]]) -> ModelLimit:
    factor: Any = 1.0
    for p in params:
        kind = p.get("rope_type", p.get("type"))
        if kind in rule.unscaled:
            continue
        factor = p.get("factor", factor)
        original = p.get("original_max_position_embeddings")
        if rule.yarn_from_original and kind == "yarn" and is_int(original) and original > 0:
            tokens, key = original, "rope original_max_position_embeddings"
    if _number(factor) and factor != 1:
        return ModelLimit(int(tokens * factor), f"{key} {tokens} x rope factor {factor}")
    return ModelLimit(int(tokens), f"{key} {tokens}")


def model_limit(config: Mapping[str, Any] | None) -> ModelLimit | None:
    """The longest max_model_len vLLM (0.29 or 0.32, the larger) starts this model with, from its
    config.json, or None when config.json does not say (vLLM then takes whatever is asked).
    vLLM's own derivation, short of the tokenizer's model_max_length (which only lowers it:
    leaving it out refuses less, never more than vLLM does)."""
    if not config:
        return None
    text = text_config(config)
    found = [(text[k], k) for k in MAX_LEN_KEYS if is_int(text.get(k)) and text[k] > 0]
    if not found:
        return None
    tokens, key = min(found)
    if is_int(text.get("model_max_length")) and text["model_max_length"] > 0:
        tokens, key = text["model_max_length"], "model_max_length"
    params = _rope_parameters(text)
    model_type = str(text.get("model_type") or config.get("model_type") or "")
    if not params or "gemma3" in model_type:   # Gemma3's length is already scaled (both versions)
        return ModelLimit(int(tokens), f"{key} {tokens}")
    return max((_limit_under(rule, tokens, key, params) for rule in ROPE_RULES), key=lambda limit: limit.tokens)


def context_problem(engine_kwargs: Mapping[str, Any], config: Mapping[str, Any] | None) -> str | None:
    """engine_kwargs.max_model_len above what the model can take: vLLM refuses to start with it
    (unless the model's own model_max_length allows it), after minutes of loading on GPUs."""
    asked = engine_kwargs.get("max_model_len")
    overrides = engine_kwargs.get("hf_overrides")
    if isinstance(overrides, dict) and LENGTH_OVERRIDES & set(overrides):
        return None
    limit = model_limit(config)
    if not is_int(asked) or asked <= 0 or limit is None or asked <= limit.tokens:
        return None
    top = text_config(config).get("model_max_length") if config else None
    if is_int(top) and asked <= top:
        return None
    return (f"max_model_len {asked} is above the model's own limit of {limit.tokens} tokens ({limit.key} in its "
            f"{CONFIG_JSON}); vLLM refuses to start with it: use at most {limit.tokens}, or remove max_model_len")


# -- the folder as a whole -----------------------------------------------------------------------


def model_folder_problem(facts: FolderFacts, gpus_per_replica: int) -> str | None:
    """Why a model folder whose path passed the rules cannot be deployed now, or None."""
    if not facts.is_dir:
        return f"model_source {facts.path} does not exist; put the model there (or fix model_source in the spec)"
    return tensor_parallel_problem(attention_heads(json_object(facts.config_json)), gpus_per_replica)


@dataclass(frozen=True)
class AdapterInfo:
    """What adapter_config.json says about an adapter folder."""

    rank: int
    base_name: str | None      # base_model_name_or_path, as the trainer wrote it


@dataclass(frozen=True)
class AdapterRefused:
    """Why an adapter folder cannot be served (one sentence with the fix)."""

    reason: str


AdapterReading = AdapterInfo | AdapterRefused


def adapter_reading(facts: FolderFacts, user_id: str) -> AdapterReading:
    """The adapter folder's facts, or why it cannot be served (its path passed the rules)."""
    if not facts.is_dir:
        return AdapterRefused(f"model_source {facts.path} does not exist; put the adapter there "
                              "(or fix model_source in the spec)")
    if facts.read_error is not None:
        return AdapterRefused(f"cannot read the adapter folder {facts.path}: {facts.read_error}")
    # A file in the folder that is a symlink must not lead out of the same roots (into another
    # user's adapter, say): vLLM reads every file it finds there.
    for entry, target in facts.links:
        if outside_roots(target, user_id, facts.roots) is not None:
            return AdapterRefused(f"{entry} is a symlink to {target}, outside your roots; copy the file instead")
    config_path = posixpath.join(facts.path, ADAPTER_CONFIG)
    if facts.adapter_config_json is None:
        return AdapterRefused(f"{config_path} does not exist; model_source must be a LoRA adapter folder as PEFT "
                              "saves it (adapter_config.json and adapter_model.safetensors)")
    data = json_object(facts.adapter_config_json)
    if data is None:
        return AdapterRefused(f"cannot read {config_path}: it is not a JSON object")
    if str(data.get("peft_type", "")).upper() != "LORA":
        return AdapterRefused(f"{config_path} is not a LoRA adapter (peft_type is {data.get('peft_type')!r})")
    rank = data.get("r")
    if not is_int(rank) or rank < 1:
        return AdapterRefused(f"{config_path} has no valid rank (r is {rank!r})")
    base = data.get("base_model_name_or_path")
    return AdapterInfo(rank, base if isinstance(base, str) and base.strip() else None)

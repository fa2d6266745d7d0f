"""The engine_kwargs allow-list against the vLLM in the serving venv (vLLM 0.32 for CPU): every
key a spec may set is a field Ray Serve LLM passes on (vLLM's AsyncEngineArgs or its frontend
args; Ray raises "Unknown engine argument" for anything else), and the enum-like value checks
match vLLM's own. What this does not prove: the GPU extra's vLLM 0.29, which is not installed
on these machines."""
import json
import subprocess
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVING_PYTHON = REPO / ".venv-serve" / "bin" / "python"
pytestmark = pytest.mark.skipif(not SERVING_PYTHON.exists(),
                                reason="needs .venv-serve (scripts/setup_serving.sh; CI has it)")


def test_every_allowed_engine_key_exists_in_the_installed_vllm():
    code = textwrap.dedent("""
        import dataclasses, json, typing
        import vllm
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.entrypoints.launchers.cli_args import FrontendArgs
        from daemon.core.engine_policy import ALLOWED, LORA_ENGINE_KEYS, LORA_RANKS, OWNED, UNSAFE
        fields = {f.name: f for f in dataclasses.fields(AsyncEngineArgs)}
        fields.update({f.name: f for f in dataclasses.fields(FrontendArgs)})
        def literal(name):
            args = typing.get_args(fields[name].type)
            found = [a for a in args if typing.get_origin(a) is typing.Literal] or [fields[name].type]
            return sorted(map(str, typing.get_args(found[0])))
        print(json.dumps({"vllm": vllm.__version__, "missing": sorted(k for k in [*ALLOWED, *LORA_ENGINE_KEYS] if k not in fields),
                          "tokenizer_modes": literal("tokenizer_mode"),
                          "lora_ranks": sorted(map(str, typing.get_args(fields["max_lora_rank"].type))),
                          "ours": sorted(map(str, LORA_RANKS))}))
    """)
    result = subprocess.run([str(SERVING_PYTHON), "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["vllm"] == "0.32.0"
    assert out["missing"] == [], f"allowed engine_kwargs that vLLM {out['vllm']} does not have: {out['missing']}"
    assert {"auto", "hf", "mistral"} <= set(out["tokenizer_modes"])
    assert out["lora_ranks"] == out["ours"]

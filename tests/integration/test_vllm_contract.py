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


# --- a changed adapter never reuses prefix-cache blocks of its old weights -------------------
FIXTURE_029 = REPO / "tests" / "fixtures" / "vllm-0.29.0-lora.json"


def _wheel_029() -> Path | None:
    """vLLM 0.29.0's wheel when at hand (ARGUS_VLLM_029_WHEEL, or where docs/operating.md
    downloads it), else None: the stored excerpts stand in for it."""
    import glob
    import os
    named = os.environ.get("ARGUS_VLLM_029_WHEEL")
    found = [named] if named else sorted(glob.glob("/tmp/vllm-wheel*/vllm-0.29.0-*.whl"))
    return Path(found[0]) if found else None


def test_vllm_029_keys_prefix_blocks_and_adapter_lookups_by_the_names_argus_gives_each_weights():
    """vLLM 0.29 (the GPU extra's) keys a LoRA request's prefix-cache blocks by the LoRA name
    alone, so an adapter reloaded under the same name with new weights would reuse blocks
    computed with the old ones. argus's replica names each adapter's weights by their digest
    (daemon.replicas.llm_server.vllm_lora_name) and asks vLLM by that name (vLLM looks the adapter up by
    request.model, and names the response's model by the LoRA name, which argus renames back).
    Run on 0.29's own hashing function: the wheel's when at hand (it must then hold the
    stored excerpts verbatim), else the stored excerpt. What only a GPU run adds: the 0.29
    engine itself; the CPU e2e proves the whole path on 0.32."""
    import types
    import zipfile
    fixture = json.loads(FIXTURE_029.read_text())
    wheel = _wheel_029()
    sources = {}
    if wheel is not None:
        with zipfile.ZipFile(wheel) as archive:
            sources = {path: archive.read(path).decode() for path in fixture["excerpts"]}
        for path, excerpts in fixture["excerpts"].items():
            for excerpt in excerpts:
                assert excerpt in sources[path], f"{wheel.name}: {path} changed: {excerpt[:80]}"
    hash_fn = fixture["excerpts"]["vllm/v1/core/kv_cache_utils.py"][0]
    namespace = {"Request": object}
    exec(compile(hash_fn, "vllm-0.29.0/kv_cache_utils.py", "exec"), namespace)  # noqa: S102 (vLLM's own code)
    lora_keys = namespace["_gen_lora_extra_hash_keys"]

    def request(lora_name: str, lora_path: str):
        return types.SimpleNamespace(lora_request=types.SimpleNamespace(lora_name=lora_name, lora_path=lora_path,
                                                                         lora_int_id=1))
    # The defect: the same name in two generations gives the same keys, whatever the weights.
    assert lora_keys(request("alice-1-tutor", "/a")) == lora_keys(request("alice-1-tutor", "/b"))
    # argus's names: the same weights give the same keys (their blocks are reused), new weights new keys.
    names = run_serving_python("""
        import json
        from daemon.replicas.llm_server import vllm_lora_name
        print(json.dumps([vllm_lora_name("alice-1-tutor", d) for d in ("0" * 64, "0" * 64, "f" * 64)]))
    """)
    assert names[0] == names[1] != names[2]
    assert lora_keys(request(names[0], "/copy/0")) != lora_keys(request(names[2], "/copy/f"))


def run_serving_python(code: str):
    result = subprocess.run([str(SERVING_PYTHON), "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                            text=True, timeout=420, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_installed_vllm_keys_new_adapter_weights_apart_and_renames_back_to_the_adapter_id():
    """vLLM 0.32 (this venv's) keys blocks by LoRA name and path, so new weights written into
    the same folder under the same name would reuse old blocks there too. With argus's names
    (a copy per weights, named by digest) both differ; vLLM finds the adapter by request.model;
    and a streamed or whole answer names the adapter's public id again."""
    out = run_serving_python("""
        import json, types
        from vllm.lora.request import LoRARequest
        from vllm.v1.core.kv_cache_utils import generate_block_hash_extra_keys
        from vllm.entrypoints.serve.engine.serving import BaseServing
        import inspect
        from daemon.replicas.llm_server import renamed, vllm_lora_name

        def keys(name, path):
            request = types.SimpleNamespace(lora_request=LoRARequest(name, 1, path), mm_features=[], cache_salt=None,
                                            prompt_embeds=None)
            return repr(generate_block_hash_extra_keys(request, 0, 16, 0)[0])
        old, new = vllm_lora_name("a-1-t", "0" * 64), vllm_lora_name("a-1-t", "f" * 64)
        chunk = 'data: {"id":"c","object":"text_completion","model":"%s","choices":[]}' % new
        whole = types.SimpleNamespace(model=new, choices=[])
        error = types.SimpleNamespace(error=types.SimpleNamespace(message="The model `%s` does not exist." % new))
        print(json.dumps({
            "same_folder_same_name": keys("a-1-t", "/f") == keys("a-1-t", "/f"),
            "argus": keys(old, "/copies/0") != keys(new, "/copies/f"),
            "lookup": "if request.model in self.models.lora_requests" in inspect.getsource(BaseServing._maybe_get_adapters),
            "stream": renamed([chunk], new, "a-1-t"),
            "whole": renamed(whole, new, "a-1-t").model,
            "error": renamed(error, new, "a-1-t").error.message}))
    """)
    assert out["same_folder_same_name"] and out["argus"] and out["lookup"], out
    assert out["stream"] == ['data: {"id":"c","object":"text_completion","model":"a-1-t","choices":[]}'], out
    assert out["whole"] == "a-1-t" and out["error"] == "The model `a-1-t` does not exist.", out

"""scripts/check_vllm_wheel.py reads a wheel's source: a wheel whose EngineArgs lacks an
allowed key, or whose LoRA ranks differ, fails (the real run against vLLM 0.29.0 is in
docs/operating.md)."""
import importlib.util
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("check_vllm_wheel", REPO / "scripts" / "check_vllm_wheel.py")
checker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(checker)


def _wheel(tmp_path: Path, engine_keys: list[str], ranks: str) -> Path:
    from daemon.core.engine_policy import COMPILATION_ALLOWED, COMPILATION_UNSAFE
    fields = lambda keys: "".join(f"    {k}: int = 0\n" for k in keys)  # noqa: E731
    files = {
        "vllm/engine/arg_utils.py": f"class EngineArgs:\n{fields(engine_keys)}\nclass AsyncEngineArgs(EngineArgs):\n    x: int = 0\n",
        "vllm/entrypoints/launchers/cli_args.py": "class BaseFrontendArgs:\n    y: int = 0\nclass FrontendArgs(BaseFrontendArgs):\n    z: int = 0\n",
        "vllm/config/compilation.py": f"class CompilationConfig:\n{fields([*COMPILATION_ALLOWED, *COMPILATION_UNSAFE])}",
        "vllm/config/lora.py": f"MaxLoRARanks = Literal[{ranks}]\n",
        "vllm/config/model.py": "TokenizerMode = Literal['auto', 'hf', 'mistral', 'slow']\n",
        "vllm-9.9.9.dist-info/METADATA": "",
    }
    path = tmp_path / "vllm-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def test_a_wheel_with_every_key_passes(tmp_path):
    from daemon.core.engine_policy import ALLOWED, LORA_ENGINE_KEYS, LORA_RANKS
    result = checker.check(_wheel(tmp_path, [*ALLOWED, *LORA_ENGINE_KEYS], ", ".join(map(str, LORA_RANKS))))
    assert result == {"vllm": "9.9.9", "engine_keys_missing": [], "compilation_keys_missing": [],
                      "lora_ranks_differ": False, "tokenizer_modes_missing": []}


def test_a_missing_engine_key_and_other_ranks_fail(tmp_path):
    from daemon.core.engine_policy import ALLOWED, LORA_ENGINE_KEYS
    wheel = _wheel(tmp_path, [*ALLOWED, *(k for k in LORA_ENGINE_KEYS if k != "max_loras")], "1, 8, 16")
    result = checker.check(wheel)
    assert result["engine_keys_missing"] == ["max_loras"] and result["lora_ranks_differ"] is True
    assert checker.main([str(wheel)]) == 1

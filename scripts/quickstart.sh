#!/usr/bin/env bash
# From a fresh machine to a served model: .venv, Ray Serve + vLLM (CPU), the small model,
# a local Ray head with Serve on :8000, a GitOps repo from `argusctl init` with its
# pre-receive hook, argusd, and the example spec applied. Prints how to ask it something.
# Idempotent: run it again and it reuses what is there. Everything lives under
# $ARGUS_HOME (default ~/.argus).
set -euo pipefail
cd "$(dirname "$0")/.."
export ARGUS_CONFIG=${ARGUS_CONFIG:-$(pwd)/configs/local.yaml}
QS_USER=${QS_USER:-demo}
scripts/venv.sh
scripts/setup_serving.sh
.venv-serve/bin/python scripts/prepare_model.py
scripts/ray_up.sh
.venv/bin/argusctl init --user "$QS_USER" --name "$QS_USER" --email "$QS_USER@argus.local"
.venv/bin/argusctl hook install
scripts/argusd_up.sh
.venv/bin/argusctl apply -f models.d/bob/smollm2.yaml --wait
MODEL=$(.venv/bin/argusctl status -o json --user "$QS_USER" | .venv/bin/python -c "
import json, sys
print(next(m['model_id'] for m in json.load(sys.stdin)['models'] if m['model_id_suffix'] == 'smollm2-135m'))")
cat <<MSG

Serving $MODEL on http://127.0.0.1:8000/v1 (no authentication on this port).

  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model": "$MODEL", "messages": [{"role": "user", "content": "What is the capital of France?"}]}'

  .venv-serve/bin/python -c "from openai import OpenAI; c = OpenAI(base_url='http://127.0.0.1:8000/v1', api_key='-'); print(c.chat.completions.create(model='$MODEL', messages=[{'role': 'user', 'content': 'Hi'}]).choices[0].message.content)"

Your GitOps clone: $(.venv/bin/python -c 'from daemon.config import load_config; import os; print(os.path.expanduser(load_config().gitops.workdir))')
  argusctl status | logs $MODEL --follow | scale smollm2-135m --replicas 2 --wait | delete smollm2-135m --wait
Stop: scripts/argusd_up.sh stop; scripts/ray_up.sh stop
MSG

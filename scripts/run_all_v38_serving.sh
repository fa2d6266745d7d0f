#!/usr/bin/env bash
# The end-to-end check, idempotent: start or reuse Ray, start argusd on the GitOps repo,
# push a spec, wait for RUNNING, check /v1/models, get a real chat answer with the openai
# client, delete the spec, wait until the model is gone. Twice in a row needs no cleanup.
#
# CPU machine (default, local profile):   scripts/run_all_v38_serving.sh
# GPU cluster (Ray already up, dev profile), from any machine that reaches it:
#     ARGUS_CONFIG=configs/dev.yaml E2E_MODEL_SOURCE='$HOME/common/hf/Qwen2-7B-Instruct' \
#     E2E_GPUS=2 scripts/run_all_v38_serving.sh
# E2E_GPUS sets gpus_per_replica (tensor parallelism); E2E_ENDPOINT overrides the OpenAI base
# URL (default: the config's http_host:http_port, or the dashboard's host when Serve binds
# 0.0.0.0). With Ray token auth, $RAY_AUTH_TOKEN or ~/.ray/auth_token is sent.
set -euo pipefail
# A relative ARGUS_CONFIG means the caller's directory: resolve it before any cd.
if [ -n "${ARGUS_CONFIG:-}" ]; then
  [ -f "$ARGUS_CONFIG" ] || { echo "run_all: no config file $ARGUS_CONFIG" >&2; exit 2; }
  ARGUS_CONFIG="$(cd "$(dirname "$ARGUS_CONFIG")" && pwd)/$(basename "$ARGUS_CONFIG")"
fi
cd "$(dirname "$0")/.."
REPO=$(pwd)
export ARGUS_CONFIG=${ARGUS_CONFIG:-$REPO/configs/local.yaml}
ARGUSCTL="$REPO/.venv/bin/argusctl"
PY="$REPO/.venv/bin/python"
E2E_USER=${E2E_USER:-e2e}
E2E_MODEL=${E2E_MODEL:-smollm2-e2e}
E2E_MODEL_SOURCE=${E2E_MODEL_SOURCE:-'$HOME/common/hf/SmolLM2-135M-Instruct'}
E2E_GPUS=${E2E_GPUS:-1}
TIMEOUT=${E2E_TIMEOUT:-900}
say() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { say "FAILED: $*"; exit 1; }

scripts/venv.sh
cfg() { "$PY" -c "from daemon.config import load_config; c = load_config(); print($1)"; }
GITOPS=$(cfg c.gitops.repo); BRANCH=$(cfg c.gitops.branch)
ON_CPU=$(cfg c.serving.llm.on_cpu)
DASHBOARD=$(cfg c.serving.serve.dashboard_url)
BASE=${E2E_ENDPOINT:-$("$PY" - <<'PY'
from urllib.parse import urlsplit
from daemon.config import load_config
serve = load_config().serving.serve
host = serve.http_host if serve.http_host not in ("0.0.0.0", "::", "") else urlsplit(serve.dashboard_url).hostname
print(f"http://{host}:{serve.http_port}/v1")
PY
)}

# 1. Ray. A CPU machine gets the serving venv, the small model and a local head; a GPU
# cluster must already be up (docs/operating.md, "GPU cluster"): only reachability is checked.
if [ "$ON_CPU" = "True" ]; then
  scripts/setup_serving.sh
  .venv-serve/bin/python scripts/prepare_model.py
  ARGUS_DASHBOARD="$DASHBOARD" scripts/ray_up.sh
else
  ARGUS_DASHBOARD="$DASHBOARD" scripts/ray_up.sh check || die "no Ray cluster answers at $DASHBOARD"
fi

# 2. The GitOps repo and the daemon (reused when already running).
[ -d "$GITOPS" ] || { git init -q --bare -b "$BRANCH" "$GITOPS"; say "created $GITOPS"; }
scripts/argusd_up.sh

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
git clone -q "$GITOPS" "$WORK/repo" 2>/dev/null
cd "$WORK/repo"
git config user.name "argus e2e"; git config user.email "e2e@argus.local"
git checkout -q -B "$BRANCH" "origin/$BRANCH" 2>/dev/null || git checkout -q -B "$BRANCH"
SPEC="models.d/$E2E_USER/$E2E_MODEL.yaml"

model_state() {  # the model's state, or "absent" when it is not live
  "$ARGUSCTL" status -o json --user "$E2E_USER" | "$REPO/.venv/bin/python" -c "
import json, sys
models = [m for m in json.load(sys.stdin)['models'] if m['model_id_suffix'] == '$E2E_MODEL']
print(models[0]['state'] + ' ' + models[0]['model_id'] if models else 'absent -')"
}
wait_state() {  # wait_state WANTED...: until the state is one of WANTED
  local deadline=$((SECONDS + TIMEOUT)) state
  while :; do
    state=$(model_state); state=${state%% *}
    for wanted in "$@"; do [ "$state" = "$wanted" ] && return 0; done
    [ "$state" = "FAILED" ] && { "$ARGUSCTL" status "$E2E_MODEL" --user "$E2E_USER" || true; die "model FAILED"; }
    [ $SECONDS -lt $deadline ] || die "timed out waiting for $* (state: $state)"
    sleep 3
  done
}
push() { git add -A; git commit -q -m "$1"; git push -q origin "HEAD:$BRANCH"; say "pushed: $1"; }

# A run that died half-way may have left the spec: remove it first (idempotence).
if [ -f "$SPEC" ]; then
  git rm -q "$SPEC"; push "e2e: clean up a previous run"; wait_state absent DELETED
fi

# 3. Push a spec and wait for it to serve.
mkdir -p "models.d/$E2E_USER"
printf 'model_id: %s\nmodel_source: %s\nnum_replicas: 1\ngpus_per_replica: %s\n' "$E2E_MODEL" "$E2E_MODEL_SOURCE" \
  "$E2E_GPUS" > "$SPEC"
"$ARGUSCTL" lint "$SPEC" >/dev/null || die "the e2e spec does not lint"
push "e2e: serve $E2E_MODEL"
started=$SECONDS
wait_state RUNNING
MODEL_ID=$(model_state); MODEL_ID=${MODEL_ID#* }
say "RUNNING as $MODEL_ID after $((SECONDS - started)) s"

# 4. /v1/models lists it; a real chat answer over the OpenAI HTTP API (argus's own venv:
# nothing here needs Ray or vLLM on this machine).
curl -sf "$BASE/models" | grep -q "\"$MODEL_ID\"" || die "$MODEL_ID is not in $BASE/models"
say "/v1/models lists $MODEL_ID"
"$PY" - "$BASE" "$MODEL_ID" <<'PY' || die "no chat answer"
import json, sys, time, urllib.request
base, model = sys.argv[1], sys.argv[2]
body = json.dumps({"model": model, "max_tokens": 32,
                   "messages": [{"role": "user", "content": "What is the capital of France?"}]}).encode()
request = urllib.request.Request(f"{base}/chat/completions", data=body, headers={"Content-Type": "application/json"})
started = time.monotonic()
with urllib.request.urlopen(request, timeout=300) as response:
    text = json.loads(response.read())["choices"][0]["message"]["content"] or ""
assert text.strip(), "empty answer"
print(f"[e2e] chat answer in {time.monotonic() - started:.1f} s: {text.strip()[:120]!r}")
PY

# 5. Delete the spec and wait until the model is gone.
git rm -q "$SPEC"
push "e2e: delete $E2E_MODEL"
wait_state absent DELETED
deadline=$((SECONDS + 120))
while curl -sf "$BASE/models" 2>/dev/null | grep -q "\"$MODEL_ID\""; do
  [ $SECONDS -lt $deadline ] || die "$MODEL_ID is still listed in $BASE/models"
  sleep 2
done
say "$MODEL_ID is gone from /v1/models"
say "PASSED"

#!/usr/bin/env bash
# From a fresh machine to a served model: .venv, Ray Serve + vLLM (CPU), the small model,
# a local Ray head with Serve on :8000, a GitOps repo from `argusctl init` with its
# pre-receive hook, argusd, the example spec applied, and one question asked of it.
# Run it again and it reuses what is there, leaves your demo model as you left it, and waits
# until that model answers (after `down`, argusd puts it back in 2-8 min). Everything lives under
# $ARGUS_HOME (default ~/.argus); one line per step here, every tool's output in
# $ARGUS_HOME/logs/quickstart.log.
#
#   scripts/quickstart.sh               set up and serve (the first time 10-20 min on 2 cores)
#   scripts/quickstart.sh down          stop argusd and the Ray head it started
#   scripts/quickstart.sh down --purge  ... and delete $ARGUS_HOME, .venv and .venv-serve
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/steps.sh
export ARGUS_CONFIG=${ARGUS_CONFIG:-$(pwd)/configs/local.yaml}
ARGUS_HOME_DIR=${ARGUS_HOME:-$HOME/.argus}
QS_USER=${QS_USER:-demo}
ENDPOINT=http://127.0.0.1:8000/v1
QUESTION="What is the capital of France?"
DEMO=smollm2-135m   # the example spec's model_id

if [ "${1:-}" = "down" ]; then
  [ -x .venv/bin/python ] && scripts/argusd_up.sh stop
  scripts/ray_up.sh stop
  if [ "${2:-}" = "--purge" ]; then
    rm -rf "$ARGUS_HOME_DIR" .venv .venv-serve
    echo "quickstart: removed $ARGUS_HOME_DIR, .venv and .venv-serve"
  fi
  exit 0
fi

ask() {
  local model=$1 body
  body=$(.venv/bin/python -c 'import json, sys; print(json.dumps({"model": sys.argv[1], "max_tokens": 32,
    "temperature": 0, "messages": [{"role": "user", "content": sys.argv[2]}]}))' "$model" "$QUESTION")
  curl -sS --fail-with-body --max-time 180 "$ENDPOINT/chat/completions" \
    -H 'Content-Type: application/json' -d "$body" \
    | .venv/bin/python -c 'import json, sys; print(" ".join(json.load(sys.stdin)["choices"][0]["message"]["content"].split()))'
}

# The demo model's row in argusd's store as JSON ("" when the user has none): its state and
# public id. Only live models (a deleted demo model is created again).
demo_row() {
  .venv/bin/argusctl status -o json --user "$QS_USER" | .venv/bin/python -c '
import json, sys
rows = [m for m in json.load(sys.stdin)["models"] if m["model_id_suffix"] == sys.argv[1]]
print(json.dumps(rows[0]) if rows else "")' "$DEMO"
}
field() { .venv/bin/python -c 'import json, sys; print(json.loads(sys.argv[1]).get(sys.argv[2]) or "")' "$1" "$2"; }

# RUNNING means the endpoint answers for the model and argusd's store says so too. Either alone
# is not enough: after `quickstart.sh down` the store still says RUNNING while the new, empty Ray
# serves nothing until argusd has put the model back; and once it has, the endpoint answers a
# tick before argusd records RUNNING (a user's `argusctl status` right after would say
# DEPLOYING). A FAILED model stops the wait with argusd's reason; one that answers while FAILED
# (the user's last change was rolled back and the generation before it serves) is reported as
# such ($ANSWERED says which).
ANSWERED=RUNNING
wait_until_answering() {
  local model=$1 deadline=$((SECONDS + ${QS_WAIT_SECONDS:-1200})) row body
  body=$(.venv/bin/python -c 'import json, sys; print(json.dumps({"model": sys.argv[1], "max_tokens": 1,
    "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}))' "$model")
  while [ "$SECONDS" -lt "$deadline" ]; do
    if curl -sf -o /dev/null --max-time 60 "$ENDPOINT/chat/completions" -H 'Content-Type: application/json' \
        -d "$body"; then
      row=$(demo_row)
      case "$(field "$row" state)" in
        RUNNING) return 0 ;;
        FAILED) ANSWERED="answering, but FAILED in argusd's store: $(field "$row" reason)"; return 0 ;;
      esac
      sleep 1
      continue
    fi
    row=$(demo_row)
    if [ "$(field "$row" state)" = FAILED ]; then
      echo "$QS_USER/$DEMO: FAILED: $(field "$row" reason) (argusctl status $DEMO; argusctl logs $model)"
      return 1
    fi
    sleep 3
  done
  echo "$QS_USER/$DEMO: $model is not answering on $ENDPOINT and RUNNING in argusd's store after" \
       "${QS_WAIT_SECONDS:-1200} s (argusd says $(field "$(demo_row)" state)); see argusctl status $DEMO and argusctl logs $model"
  return 1
}

# A first run applies the example spec; a later run finds the user's demo model and leaves
# it as they left it (their adapters, replicas, engine settings: no commit, no restart).
# The last line says which, and RUNNING once the model answers.
serve_demo() {
  local row out found
  row=$(demo_row)
  if [ -n "$row" ]; then
    found="already in your repo ($(field "$row" state) in argusd's store), left as it is"
  else
    out=$(.venv/bin/argusctl apply -f models.d/bob/smollm2.yaml --wait) || { echo "$out"; return 1; }
    echo "$out"
    found=$(printf '%s\n' "$out" | grep -m1 "^$QS_USER/$DEMO: " | sed -E 's/^[^:]*: //; s/ \([0-9a-f]+\)$//')
    row=$(demo_row)
  fi
  echo "waiting until $ENDPOINT answers for $(field "$row" model_id)"
  wait_until_answering "$(field "$row" model_id)" || return 1
  echo "$QS_USER/$DEMO: $found, $ANSWERED"
}

steps_begin 9 "$ARGUS_HOME_DIR/logs/quickstart.log"
step "argusctl and argusd in .venv" scripts/venv.sh
step "Ray Serve 2.60 + vLLM (CPU) in .venv-serve (the first time 4-8 min, ~4 GB)" scripts/setup_serving.sh
step "Small model SmolLM2-135M-Instruct under $ARGUS_HOME_DIR/private/hf" \
  .venv-serve/bin/python scripts/prepare_model.py
step "Ray head up (dashboard http://127.0.0.1:8265)" scripts/ray_up.sh
step "GitOps repo $ARGUS_HOME_DIR/gitops.git and your clone" \
  .venv/bin/argusctl init --user "$QS_USER" --name "$QS_USER" --email "$QS_USER@argus.local"
step "Pre-receive hook installed" .venv/bin/argusctl hook install
step "argusd running" scripts/argusd_up.sh
step --result "Example model $DEMO answering (starting takes 2-8 min on 2 cores)" serve_demo
DEMO_ROW=$(demo_row)
MODEL=$(field "$DEMO_ROW" model_id)
MODEL_KEY=$(field "$DEMO_ROW" model_key)
step --result "Asked \"$QUESTION\"" ask "$MODEL"
WORKDIR=$(.venv/bin/python -c 'from daemon.config import load_config; import os; print(os.path.expanduser(load_config().gitops.workdir))')

cat <<MSG

Serving $MODEL on $ENDPOINT (no authentication on this port).

  curl $ENDPOINT/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model": "$MODEL", "temperature": 0, "messages": [{"role": "user", "content": "$QUESTION"}]}'

  .venv-serve/bin/python -c "from openai import OpenAI; c = OpenAI(base_url='$ENDPOINT', api_key='-'); print(c.chat.completions.create(model='$MODEL', temperature=0, messages=[{'role': 'user', 'content': 'Hi'}]).choices[0].message.content)"

Web UI and API: http://127.0.0.1:8090/ui  (sign in with a token: .venv/bin/argusctl token create --user $QS_USER)
  $MODEL's page, with its requests, failures and latency over the last 30 minutes:
  http://127.0.0.1:8090/ui/serving/$MODEL_KEY

Your GitOps clone: $WORKDIR
  .venv/bin/argusctl status | logs $MODEL --follow | scale smollm2-135m --replicas 2 --wait | delete smollm2-135m --wait
Stop everything: scripts/quickstart.sh down   (add --purge to also delete $ARGUS_HOME_DIR, .venv, .venv-serve)
MSG

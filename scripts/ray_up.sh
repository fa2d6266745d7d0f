#!/usr/bin/env bash
# Start a local Ray head (dashboard on 127.0.0.1:8265) from .venv-serve, or reuse the one
# that is up. Serve itself starts with argusd's first declarative apply (HTTP on the
# config's port, 8000). `scripts/ray_up.sh stop` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ARGUS_SERVE_VENV:-.venv-serve}
DASHBOARD=${ARGUS_DASHBOARD:-http://127.0.0.1:8265}
export RAY_USAGE_STATS_ENABLED=0
# vLLM's engine processes outlive a replica that was killed rather than stopped (ray stop
# --force, an OOM kill of the Serve controller) and keep ~2.7 GB each: reap those orphans.
reap_orphans() {
  local pid
  for pid in $(ps -eo pid=,ppid=,args= | awk '$2 == 1 && $3 ~ /^VLLM::/ {print $1}'); do
    pkill -9 -P "$pid" 2>/dev/null || true
    kill -9 "$pid" 2>/dev/null || true
  done
}
# With Ray token auth on, the dashboard answers only with the token (as argusd sends it).
up() {
  local token=${RAY_AUTH_TOKEN:-}
  [ -n "$token" ] || token=$(cat "${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}" 2>/dev/null || true)
  if [ -n "$token" ]; then
    curl -sf -H "Authorization: Bearer $token" "$DASHBOARD/api/ray/version" >/dev/null 2>&1
  else
    curl -sf "$DASHBOARD/api/ray/version" >/dev/null 2>&1
  fi
}
if [ "${1:-}" = "check" ]; then  # is a cluster up at $ARGUS_DASHBOARD? (exit 0 / 3)
  up && { echo "ray_up: Ray answers at $DASHBOARD"; exit 0; }
  echo "ray_up: no Ray dashboard answers at $DASHBOARD (with a token if one is set)" >&2
  exit 3
fi
if [ "${1:-}" = "stop" ]; then
  "$VENV/bin/ray" stop --force >/dev/null 2>&1 || true
  reap_orphans
  echo "ray_up: stopped"
  exit 0
fi
if up; then
  echo "ray_up: reusing the Ray cluster at $DASHBOARD"
  exit 0
fi
[ -x "$VENV/bin/ray" ] || { echo "ray_up: $VENV has no Ray; run scripts/setup_serving.sh first" >&2; exit 3; }
reap_orphans
# Ray jobs (argusctl doctor's node probe) run `python` from the head's PATH: make it this venv's.
export PATH="$(cd "$(dirname "$VENV/bin/ray")" && pwd):$PATH"
# Ray's CPUs are scheduling slots, not cores, and 12 is deliberately more than a laptop has
# (2 on CI): the two front-end replicas, each LLMServer replica and its engine worker all need
# a slot, and a model being updated briefly holds two sets; with only as many slots as cores,
# a second model or an update would stay pending, while the processes themselves
# mostly wait on each other. ARGUS_RAY_CPUS=N sets another count.
CPUS=${ARGUS_RAY_CPUS:-12}
"$VENV/bin/ray" start --head --num-cpus "$CPUS" --dashboard-host 127.0.0.1 \
  --dashboard-port "${DASHBOARD##*:}" --disable-usage-stats >/dev/null
for _ in $(seq 1 60); do
  up && { echo "ray_up: Ray is up at $DASHBOARD with $CPUS logical CPUs for $(nproc) cores (slots, not cores; ARGUS_RAY_CPUS)"; exit 0; }
  sleep 1
done
echo "ray_up: the Ray dashboard did not come up at $DASHBOARD; see ${RAY_TMPDIR:-${TMPDIR:-/tmp}}/ray/session_latest/logs" >&2
exit 3

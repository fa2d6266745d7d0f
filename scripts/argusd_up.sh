#!/usr/bin/env bash
# Start argusd in the background for the config in $ARGUS_CONFIG (pid and log next to the
# store), or reuse the one that runs. `scripts/argusd_up.sh stop` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE_DIR=$(dirname "$(.venv/bin/python -c 'from daemon.config import load_config; print(load_config().state.db)')")
PIDFILE="$STATE_DIR/argusd.pid"
mkdir -p "$STATE_DIR"
# The recorded argusd runs: its pid runs .venv/bin/argusd (pids are reused, and a killed argusd that
# nobody reaped stays a zombie, which `kill -0` still finds: a container's init may never reap it).
running() {
  [ -f "$PIDFILE" ] || return 1
  tr '\0' ' ' 2>/dev/null < "/proc/$(cat "$PIDFILE")/cmdline" | grep -q 'bin/argusd '
}
if [ "${1:-}" = "stop" ]; then
  running && kill "$(cat "$PIDFILE")" && echo "argusd_up: stopped"
  rm -f "$PIDFILE"
  exit 0
fi
if running; then
  echo "argusd_up: reusing argusd (pid $(cat "$PIDFILE"))"
else
  nohup .venv/bin/argusd >> "$STATE_DIR/argusd.log" 2>&1 &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 100); do [ -f "$STATE_DIR/argus.db" ] && break; sleep 0.1; done
  echo "argusd_up: started argusd (pid $!, log $STATE_DIR/argusd.log)"
fi

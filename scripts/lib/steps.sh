# Steps with one line of output each, for the set-up scripts (sourced, not run).
#
#   steps_begin TOTAL LOGFILE      # announce the log, reset the counter
#   step "Ray head up" cmd args... # [3/8] Ray head up (4 s); the command's output -> LOGFILE
#   step --result "Example" cmd    # [8/9] Example -> <the last line cmd printed> (1m 32s)
#
# On a terminal a running step shows its elapsed seconds on the same line; elsewhere (CI,
# a pipe) only the finished line is printed. A failing step prints which step failed, the
# last lines of the log and the log's path, then exits with the command's status.

STEP_INDEX=0
STEP_TOTAL=0
STEP_LOG=/dev/null

steps_begin() {
  STEP_TOTAL=$1
  STEP_LOG=$2
  STEP_INDEX=0
  mkdir -p "$(dirname "$STEP_LOG")"
  : >"$STEP_LOG"
  echo "Log of every step (library output included): $STEP_LOG"
}

_step_elapsed() {
  local seconds=$1
  if [ "$seconds" -ge 60 ]; then
    printf '%dm %02ds' $((seconds / 60)) $((seconds % 60))
  else
    printf '%d s' "$seconds"
  fi
}

step() {
  local show_result=0
  if [ "$1" = "--result" ]; then show_result=1; shift; fi
  local label=$1
  shift
  STEP_INDEX=$((STEP_INDEX + 1))
  local prefix="[$STEP_INDEX/$STEP_TOTAL]"
  local started=$SECONDS status=0 mark
  mark=$(wc -l <"$STEP_LOG")
  printf '\n==== %s %s: %s\n' "$prefix" "$label" "$*" >>"$STEP_LOG"
  if [ -t 1 ]; then
    "$@" >>"$STEP_LOG" 2>&1 &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
      printf '\r%s %s ... %s ' "$prefix" "$label" "$(_step_elapsed $((SECONDS - started)))"
      sleep 0.5
    done
    wait "$pid" || status=$?
    printf '\r\033[K'
  else
    "$@" >>"$STEP_LOG" 2>&1 || status=$?
  fi
  local took
  took=$(_step_elapsed $((SECONDS - started)))
  if [ "$status" -ne 0 ]; then
    printf '%s %s FAILED after %s (exit %d). Last lines of its log:\n' "$prefix" "$label" "$took" "$status" >&2
    tail -n +"$((mark + 3))" "$STEP_LOG" | tail -n 25 | sed 's/^/  | /' >&2
    printf 'Full log: %s\n' "$STEP_LOG" >&2
    exit "$status"
  fi
  if [ "$show_result" = 1 ]; then
    label="$label -> $(tail -n +"$((mark + 3))" "$STEP_LOG" | grep -v '^[[:space:]]*$' | tail -n 1)"
  fi
  printf '%s %s (%s)\n' "$prefix" "$label" "$took"
}

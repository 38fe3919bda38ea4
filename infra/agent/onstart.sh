#!/usr/bin/env bash
# gpuq box start-up. Idempotent: Vast.ai runs its on-start command again on every container start, and a
# second run while the first is still going must change nothing. It
#   1. starts Ollama (`ollama serve`, models kept loaded: OLLAMA_KEEP_ALIVE=-1) unless it already runs;
#   2. waits (bounded) until Ollama answers;
#   3. starts the agent (`python -m agent`) unless it already runs;
#   4. pulls and loads every model of OLLAMA_PRELOAD_MODELS (comma-separated) with keep_alive=-1.
# With GPUQ_AGENT_SERVER_COMMAND set, steps 1, 2 and 4 are the agent's: it starts and supervises the model
# server itself and loads its models (docs/model-server.md); this script only starts the agent.
#
# Usage: onstart.sh               set up, then return (Vast on-start; the processes keep running)
#        onstart.sh --foreground  set up, then become the agent (container entrypoint: OVH AI Deploy, Docker)
#
# Logs, one file each under GPUQ_LOG_DIR: onstart.log, ollama.log, agent.log. onstart.log carries the
# readiness lines a watcher can match (as Vast's PyWorker matches its model server's log):
#   on-load:  "gpuq-onstart: model loaded: <name>" per model, then "gpuq-onstart: ready"
#   on-error: "gpuq-onstart: error: <what>"
set -euo pipefail

GPUQ_HOME="${GPUQ_HOME:-/opt/gpuq}"
LOG_DIR="${GPUQ_LOG_DIR:-/var/log/gpuq}"
STATE_DIR="${GPUQ_STATE_DIR:-/var/lib/gpuq}"
PYTHON="${GPUQ_PYTHON:-python}"
OLLAMA_BIN="${OLLAMA_BIN:-ollama}"
OLLAMA_WAIT_S="${GPUQ_OLLAMA_WAIT_S:-120}"
PULL_TIMEOUT_S="${GPUQ_PULL_TIMEOUT_S:-3600}"
PRELOAD="${OLLAMA_PRELOAD_MODELS:-${GPUQ_AGENT_PRELOAD_MODELS:-}}"
export OLLAMA_HOST="${OLLAMA_HOST:-127.0.0.1:11434}"
export OLLAMA_KEEP_ALIVE="${OLLAMA_KEEP_ALIVE:--1}"
OLLAMA_URL="http://${OLLAMA_HOST#http://}"
export GPUQ_AGENT_OLLAMA_URL="${GPUQ_AGENT_OLLAMA_URL:-$OLLAMA_URL}"

FOREGROUND=0
case "${1:-}" in
  --foreground) FOREGROUND=1 ;;
  "") ;;
  *) echo "usage: $0 [--foreground]" >&2; exit 2 ;;
esac

mkdir -p "$LOG_DIR" "$STATE_DIR"

log() {
  printf '%s gpuq-onstart: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$LOG_DIR/onstart.log"
  printf 'gpuq-onstart: %s\n' "$*" >&2
}

fail() {
  log "error: $*"
  exit 1
}

# One run at a time: a rerun that finds another one in progress leaves it to finish. The processes started
# below get the lock's descriptor closed (9>&-), or they would hold the lock for as long as they live.
exec 9>"$STATE_DIR/onstart.lock"
if ! flock -n 9; then
  log "another onstart run is in progress; leaving it to finish"
  exit 0
fi

# True when the pid file names a live process whose command line contains $2. The check on the command
# line matters: after a container restart the file survives, and its pid may now belong to anything.
alive() {
  local pidfile="$1" pattern="$2" pid state
  [[ -s "$pidfile" ]] || return 1
  pid="$(<"$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/stat" ]] || return 1
  state="$(sed -E 's/^.*\) ([A-Z]).*$/\1/' "/proc/$pid/stat")"
  [[ "$state" != "Z" && "$state" != "X" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$pattern"
}

ollama_answers() {
  curl -fsS --max-time 2 "$OLLAMA_URL/api/version" >/dev/null 2>&1
}

start_ollama() {
  if alive "$STATE_DIR/ollama.pid" ollama; then
    log "ollama already running (pid $(<"$STATE_DIR/ollama.pid"))"
  elif ollama_answers; then
    log "a model server already answers on $OLLAMA_URL; not starting another"
  else
    nohup "$OLLAMA_BIN" serve >>"$LOG_DIR/ollama.log" 2>&1 </dev/null 9>&- &
    echo "$!" >"$STATE_DIR/ollama.pid"
    log "ollama started (pid $!, $OLLAMA_URL, keep_alive $OLLAMA_KEEP_ALIVE)"
  fi
  local deadline=$((SECONDS + OLLAMA_WAIT_S))
  until ollama_answers; do
    if ((SECONDS >= deadline)); then
      fail "ollama did not answer on $OLLAMA_URL within ${OLLAMA_WAIT_S}s (see $LOG_DIR/ollama.log)"
    fi
    if [[ -s "$STATE_DIR/ollama.pid" ]] && ! alive "$STATE_DIR/ollama.pid" ollama && ! ollama_answers; then
      fail "ollama exited during start-up (see $LOG_DIR/ollama.log)"
    fi
    sleep 0.2
  done
}

start_agent_background() {
  if alive "$STATE_DIR/agent.pid" "-m agent"; then
    log "agent already running (pid $(<"$STATE_DIR/agent.pid"))"
    return
  fi
  (cd "$GPUQ_HOME" 2>/dev/null || true; exec nohup "$PYTHON" -m agent >>"$LOG_DIR/agent.log" 2>&1 </dev/null 9>&-) &
  echo "$!" >"$STATE_DIR/agent.pid"
  log "agent started (pid $!)"
}

preload_models() {
  local model models=()
  IFS=',' read -r -a models <<<"$PRELOAD"
  for model in "${models[@]}"; do
    model="${model//[[:space:]]/}"
    [[ -n "$model" ]] || continue
    if [[ ! "$model" =~ ^[A-Za-z0-9._:/-]+$ ]]; then
      log "error: not a model name: '$model'"
      continue
    fi
    if ! curl -fsS --max-time "$PULL_TIMEOUT_S" -X POST "$OLLAMA_URL/api/pull" \
        -H 'Content-Type: application/json' -d "{\"model\":\"$model\",\"stream\":false}" >/dev/null 2>>"$LOG_DIR/onstart.log"; then
      log "error: pull of $model failed"
      continue
    fi
    # An empty prompt loads the model; keep_alive -1 keeps it loaded while the box is up.
    if curl -fsS --max-time 600 -X POST "$OLLAMA_URL/api/generate" \
        -H 'Content-Type: application/json' -d "{\"model\":\"$model\",\"keep_alive\":-1}" >/dev/null 2>>"$LOG_DIR/onstart.log"; then
      log "model loaded: $model"
    else
      log "error: load of $model failed"
    fi
  done
  log "ready"
}

log "start (foreground=$FOREGROUND, models: ${PRELOAD:-none})"
SUPERVISED=0
if [[ -n "${GPUQ_AGENT_SERVER_COMMAND:-}" ]]; then
  SUPERVISED=1
  log "the agent starts and supervises the model server: $GPUQ_AGENT_SERVER_COMMAND"
else
  start_ollama
fi
if ((FOREGROUND)); then
  # The container's main process becomes the agent; the models load beside it.
  if ((!SUPERVISED)); then
    preload_models 9>&- &
  fi
  echo "$$" >"$STATE_DIR/agent.pid"
  cd "$GPUQ_HOME" 2>/dev/null || true
  exec "$PYTHON" -m agent 9>&-
fi
start_agent_background
if ((!SUPERVISED)); then
  preload_models
fi

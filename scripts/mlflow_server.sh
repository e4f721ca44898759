#!/usr/bin/env bash
# The MLflow tracking server as teams run it: metadata in PostgreSQL (the project's cluster,
# scripts/postgres.sh, database `mlflow`), artifacts served by the server itself from a local
# directory (clients upload and download over HTTP: `mlflow-artifacts:/`), bound to 127.0.0.1.
# `make airflow-ui` starts it; the DAGs, the prediction service and the tests talk to it over HTTP
# (MLFLOW_TRACKING_URI=http://127.0.0.1:5000). `make run` keeps the embedded SQLite store.
#
# Usage: scripts/mlflow_server.sh start|stop|status|uri
#   MLFLOW_PORT                  port on 127.0.0.1 (default 5000)
#   TAXI_POSTGRES_PORT           the PostgreSQL cluster's port (default 5433; started when not answering)
#   TAXI_MLFLOW_SERVER_DIR       pid file and log (default var/mlflow-server/<port>)
#   TAXI_MLFLOW_SERVER_ARTIFACTS artifact store (default var/mlflow-server/artifacts)
#   MLFLOW_SERVER_WORKERS        server worker processes (default 1; each imports all of MLflow, ~250 MB)
#   MLFLOW_BACKEND_STORE_URI     metadata store (default the `mlflow` database of that cluster)
# docker-compose.yaml and the Helm chart run the same `mlflow server` flags (tests/unit/deploy checks).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
port="${MLFLOW_PORT:-5000}"
pg_port="${TAXI_POSTGRES_PORT:-5433}"
dir="${TAXI_MLFLOW_SERVER_DIR:-$ROOT/var/mlflow-server/$port}"
artifacts="${TAXI_MLFLOW_SERVER_ARTIFACTS:-$ROOT/var/mlflow-server/artifacts}"
backend="${MLFLOW_BACKEND_STORE_URI:-postgresql+psycopg2://postgres@127.0.0.1:$pg_port/mlflow}"
workers="${MLFLOW_SERVER_WORKERS:-1}"
# MLflow 3 starts a job runner (GenAI scorers, huey consumers, ~300 MB) unless told not to: no job uses it here.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
timeout="${MLFLOW_SERVER_TIMEOUT:-120}"
url="http://127.0.0.1:$port"
pidfile="$dir/server.pid"
log="$dir/server.log"

# The command; the compose file and the Helm chart run the same flags with their own host and paths.
server_command() {
  echo mlflow server \
    --backend-store-uri "$backend" \
    --serve-artifacts --artifacts-destination "$artifacts" --default-artifact-root mlflow-artifacts:/ \
    --host 127.0.0.1 --port "$port" --workers "$workers" \
    --allowed-hosts "127.0.0.1:$port,localhost:$port"
}

answers() { curl -sf --max-time 3 "$url/health" >/dev/null 2>&1; }
running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

start() {
  if running && answers; then echo "MLflow server already running: $url"; return 0; fi
  if answers; then echo "port $port answers /health but is not this checkout's MLflow server (pid file $pidfile): stop it or set MLFLOW_PORT" >&2; exit 1; fi
  case "$backend" in
    postgresql*@127.0.0.1:"$pg_port"/*) TAXI_POSTGRES_PORT="$pg_port" "$ROOT/scripts/postgres.sh" start >/dev/null ;;
  esac
  mkdir -p "$dir" "$artifacts"
  local started; started=$(date +%s)
  # setsid: the server and its workers in a process group of their own, stopped together.
  # shellcheck disable=SC2046
  setsid $(server_command) < /dev/null > "$log" 2>&1 &
  echo $! > "$pidfile"
  echo -n "starting the MLflow server on $url (log $log) "
  local waited=0
  until answers; do
    if ! running; then echo; echo "the MLflow server exited; last lines of $log:" >&2; tail -20 "$log" >&2; exit 1; fi
    if [ "$waited" -ge "$timeout" ]; then echo; echo "the MLflow server did not answer $url/health within ${timeout}s:" >&2; tail -20 "$log" >&2; stop >/dev/null; exit 1; fi
    sleep 1; waited=$((waited + 1)); [ $((waited % 5)) -ne 0 ] || echo -n "."
  done
  echo
  echo "MLflow server on $url after $(( $(date +%s) - started ))s (metadata ${backend%%@*}@..., artifacts $artifacts)"
}

stop() {
  if [ -f "$pidfile" ]; then
    local pid; pid=$(cat "$pidfile")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$pidfile"
  fi
  echo "MLflow server on $url stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running && answers; then echo "MLflow server answering on $url"; else echo "MLflow server on $url is not running"; exit 3; fi ;;
  uri) echo "$url" ;;
  command) server_command ;;
  *) echo "usage: $0 start|stop|status|uri|command" >&2; exit 2 ;;
esac

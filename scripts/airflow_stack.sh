#!/usr/bin/env bash
# Start/stop Airflow's components on 127.0.0.1 with parallelism 4: what `airflow standalone`
# runs, but with the scheduler's and triggerer's log servers off (standalone binds them on all
# interfaces, ports 8793/8794) and one process group, so `stop` leaves no orphan behind.
#
# Usage: scripts/airflow_stack.sh start|stop|status
# Everything comes from the environment (scripts/env.sh, or the test fixture tests/fixtures/airflow.py):
#   AIRFLOW_HOME            metadata DB, process-group file (stack.pgid) and component logs (logs/stack/)
#   AIRFLOW__API__PORT      API server / UI port on 127.0.0.1 (default 8080); the execution API URL must match
#   AIRFLOW_STACK_TIMEOUT   seconds to wait for every component to report healthy (default 180)
#   AIRFLOW_STACK_LOGDIR    where the component logs go (default $AIRFLOW_HOME/logs/stack)
#   TAXI_EXECUTOR           local (default) or celery: then also TAXI_CELERY_WORKERS Celery workers
#                           (default 2, named worker-1..N) on the Redis broker (scripts/executor_env.sh)
# `start` returns once /api/v2/monitor/health reports the scheduler, DAG processor and triggerer
# healthy with a heartbeat from this start (and every Celery worker has logged "ready"); on failure it prints each component's log tail,
# stops the group and exits 1. `status` prints the health and exits 0 only when all are healthy.
set -euo pipefail
source "$(dirname "$0")/executor_env.sh"
pidfile="$AIRFLOW_HOME/stack.pgid"
logdir="${AIRFLOW_STACK_LOGDIR:-$AIRFLOW_HOME/logs/stack}"
port="${AIRFLOW__API__PORT:-8080}"
timeout="${AIRFLOW_STACK_TIMEOUT:-180}"
health_url="http://127.0.0.1:$port/api/v2/monitor/health"
components="api-server scheduler dag-processor triggerer"
workers=""
if [ "$AIRFLOW__CORE__EXECUTOR" = CeleryExecutor ]; then
  for k in $(seq 1 "${TAXI_CELERY_WORKERS:-2}"); do workers="$workers worker-$k"; done
  workers="${workers# }"
  components="$components $workers"
fi

# Every process of the stack's session: the process group, plus task runners, which Airflow's
# supervisor moves into process groups of their own (still inside the session setsid created).
session_pids() { ps -eo pid=,sid= | awk -v s="$1" '$2 == s { print $1 }'; }

running() { [ -f "$pidfile" ] && [ -n "$(session_pids "$(cat "$pidfile")")" ]; }

# Exit 0 when every component reports healthy with a heartbeat at or after epoch $1 (default 0).
healthy() {
  local body; body=$(curl -sf --max-time 5 "$health_url" 2>/dev/null) || return 1
  python -c '
import json, sys
from datetime import datetime
since, h = float(sys.argv[1]), json.load(sys.stdin)
def ok(name, beat):
    part = h.get(name) or {}
    return part.get("status") == "healthy" and (beat is None or (part.get(beat) and datetime.fromisoformat(part[beat]).timestamp() >= since))
sys.exit(0 if ok("metadatabase", None) and all(ok(c, f"latest_{c}_heartbeat") for c in ("scheduler", "dag_processor", "triggerer")) else 1)
' "${1:-0}" <<< "$body" 2>/dev/null
}

# Exit 0 when every Celery worker has logged that it is ready (connected to the broker, consuming).
workers_ready() {
  local w
  for w in $workers; do grep -q "ready\." "$logdir/$w.log" 2>/dev/null || return 1; done
}

# Components whose process has exited (each one's pid is in $logdir/<component>.pid).
dead_components() {
  local c pid dead=""
  for c in $components; do
    pid=$(cat "$logdir/$c.pid" 2>/dev/null || true)
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then dead="$dead $c"; fi
  done
  echo "${dead# }"
}

log_tails() {
  local c
  for c in $components; do echo "----- $logdir/$c.log (last ${1:-25} lines)"; tail -n "${1:-25}" "$logdir/$c.log" 2>/dev/null || true; done
}

# The simple auth manager's passwords (no default password anywhere): made before the api-server
# starts (chicago_taxi.orchestration.passwords), into a file readable by its owner only; left to the
# api-server, a missing password would be generated and printed into its log.
passwords="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
ensure_passwords() { python -m chicago_taxi.orchestration.passwords "$passwords" >/dev/null; }

login() {
  chmod 600 "$passwords" 2>/dev/null || true
  echo "Airflow UI: http://127.0.0.1:$port"
  echo "Login: user 'admin'; the generated password is in $passwords (mode 600; read it with: cat $passwords)"
}

start() {
  if running; then
    echo "Airflow is already running (process group $(cat "$pidfile")): http://127.0.0.1:$port"; return 0
  fi
  mkdir -p "$logdir"
  rm -f "$logdir"/*.pid
  ensure_passwords
  if [ -n "$workers" ]; then
    [ -n "${AIRFLOW__CELERY__RESULT_BACKEND:-}" ] || {
      echo "TAXI_EXECUTOR=celery needs the PostgreSQL metadata DB (TAXI_AIRFLOW_DB=postgres, as make airflow-ui sets); the DB is ${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-unset}" >&2; exit 1; }
    redis-cli -u "$AIRFLOW__CELERY__BROKER_URL" ping >/dev/null 2>&1 || {
      echo "the Celery broker $AIRFLOW__CELERY__BROKER_URL does not answer: start Redis first (scripts/redis.sh start ${REDIS_PORT:-6379})" >&2; exit 1; }
  fi
  local worker_cmds="" w
  # Every worker also consumes taxi_tfx's queue (TAXI_TFX_QUEUE): here the bubblewrap runtime serves it.
  for w in $workers; do
    worker_cmds="$worker_cmds
    TAXI_WORKER_NAME=$w airflow celery worker --celery-hostname '$w@%h' --queues ${AIRFLOW__OPERATORS__DEFAULT_QUEUE:-default},${TAXI_TFX_QUEUE:-tfx} --concurrency ${AIRFLOW__CELERY__WORKER_CONCURRENCY:-2} --skip-serve-logs > '$logdir/$w.log' 2>&1 & echo \$! > '$logdir/$w.pid'"
  done
  local started; started=$(date +%s)
  # umask 077: what the components write (the generated password file, logs) is the owner's only.
  umask 077
  # setsid: one new process group (and session) for all four components and their children.
  setsid bash -c "
    airflow api-server --host 127.0.0.1 --port $port > '$logdir/api-server.log' 2>&1 & echo \$! > '$logdir/api-server.pid'
    airflow scheduler --skip-serve-logs > '$logdir/scheduler.log' 2>&1 & echo \$! > '$logdir/scheduler.pid'
    airflow dag-processor > '$logdir/dag-processor.log' 2>&1 & echo \$! > '$logdir/dag-processor.pid'
    airflow triggerer --skip-serve-logs > '$logdir/triggerer.log' 2>&1 & echo \$! > '$logdir/triggerer.pid'$worker_cmds
    wait" < /dev/null > /dev/null 2>&1 &
  echo $! > "$pidfile"
  echo -n "starting Airflow on 127.0.0.1:$port (logs in $logdir) "
  # The Execution API (through which every task starts and reports) builds its versioned routes on
  # its first request: ~8.5 s on 2 cores, during which the single-worker api-server answers nothing
  # else. One request, sent as soon as the api-server listens, pays it before the first task (the
  # first trips of a Kafka-woken taxi_stream run included) and before the health checks below.
  local warm="$logdir/execution-api-warm-up" warm_pid="" api_up=""
  rm -f "$warm"
  local deadline=$((started + timeout)) waited=0 dead="" healthy_now=""
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if [ -z "$api_up" ] && curl -s -o /dev/null --max-time 2 "$health_url"; then
      api_up=$(date +%s)
      (t0=$(date +%s); curl -sf --max-time 120 -o /dev/null "http://127.0.0.1:$port/execution/health" \
        && echo "$(( $(date +%s) - t0 ))" > "$warm") &
      warm_pid=$!
    fi
    if healthy "$started" && workers_ready; then healthy_now=1; break; fi
    sleep 1; waited=$((waited + 1))
    # a component that exits (port taken, bad config) will not come back: stop waiting
    if [ "$waited" -ge 3 ]; then dead=$(dead_components); [ -z "$dead" ] || break; fi
    [ $((waited % 5)) -ne 0 ] || echo -n "."
  done
  echo
  if [ -n "$warm_pid" ]; then wait "$warm_pid" 2>/dev/null || true; fi
  # Checked once more after the warm-up: a health request can time out behind the route building.
  if [ -z "$dead" ] && [ -z "$healthy_now" ] && healthy "$started" && workers_ready; then healthy_now=1; fi
  if [ -z "$healthy_now" ]; then
    {
      local listening="never" when
      [ -z "$api_up" ] || listening="at $(date -u -d "@$api_up" +%T)"
      when="start at $(date -u -d "@$started" +%T) UTC, api-server listening $listening, gave up at $(date -u +%T)"
      if [ -n "$dead" ]; then echo "Airflow did not start: exited: $dead ($when)"
      elif ! workers_ready; then echo "Celery workers ($workers) not ready within ${timeout}s (broker $AIRFLOW__CELERY__BROKER_URL; $when)"
      else echo "Airflow did not report scheduler, dag_processor and triggerer healthy within ${timeout}s ($when)"; fi
      echo "last health: $(curl -s --max-time 15 "$health_url" 2>/dev/null || echo 'no answer')"
      log_tails 25
    } >&2
    stop >/dev/null
    exit 1
  fi
  echo "Airflow healthy after $(( $(date +%s) - started ))s (process group $(cat "$pidfile"))"
  if [ -s "$warm" ]; then
    echo "Execution API warmed in $(cat "$warm")s"
  else
    echo "warning: the Execution API did not answer its warm-up request (http://127.0.0.1:$port/execution/health)" >&2
  fi
  [ -z "$workers" ] || echo "Executor: CeleryExecutor, workers: $workers (concurrency ${AIRFLOW__CELERY__WORKER_CONCURRENCY:-2} each), broker $AIRFLOW__CELERY__BROKER_URL"
  login
  echo "Stop with: make airflow-stop"
}

stop() {
  [ -f "$pidfile" ] || { echo "Airflow is not running"; return 0; }
  local pgid pids; pgid=$(cat "$pidfile")
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for _ in $(seq 1 30); do
    pids=$(session_pids "$pgid"); [ -n "$pids" ] || break; sleep 1
  done
  pids=$(session_pids "$pgid")
  kill -KILL -- "-$pgid" $pids 2>/dev/null || true
  rm -f "$pidfile"
  echo "Airflow stopped"
}

status() {
  if ! running; then echo "Airflow is not running"; return 1; fi
  echo "Airflow process group $(cat "$pidfile") on 127.0.0.1:$port (logs in $logdir)"
  local dead; dead=$(dead_components)
  [ -z "$dead" ] || echo "exited: $dead"
  curl -s --max-time 5 "$health_url" 2>/dev/null || echo -n "health: no answer from $health_url"; echo
  [ -z "$dead" ] && healthy
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

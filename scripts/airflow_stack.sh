#!/usr/bin/env bash
# Start/stop Airflow's components on 127.0.0.1 with parallelism 4: what `airflow standalone`
# runs, but with the scheduler's and triggerer's log servers off (standalone binds them on all
# interfaces, ports 8793/8794) and one process group, so `stop` leaves no orphan behind.
set -euo pipefail
pidfile="$AIRFLOW_HOME/stack.pgid"
logdir="$TAXI_REPO_ROOT/logs/airflow-stack"
port="${AIRFLOW__API__PORT:-8080}"

start() {
  if [ -f "$pidfile" ] && kill -0 -- "-$(cat "$pidfile")" 2>/dev/null; then
    echo "Airflow is already running (process group $(cat "$pidfile")): http://127.0.0.1:$port"; return 0
  fi
  mkdir -p "$logdir"
  setsid bash -c "
    airflow api-server --host 127.0.0.1 --port $port > '$logdir/api-server.log' 2>&1 &
    airflow scheduler --skip-serve-logs > '$logdir/scheduler.log' 2>&1 &
    airflow dag-processor > '$logdir/dag-processor.log' 2>&1 &
    airflow triggerer --skip-serve-logs > '$logdir/triggerer.log' 2>&1 &
    wait" < /dev/null > /dev/null 2>&1 &
  echo $! > "$pidfile"
  echo -n "starting Airflow (logs in $logdir) "
  for _ in $(seq 1 120); do
    if curl -sf "http://127.0.0.1:$port/api/v2/monitor/health" >/dev/null 2>&1; then break; fi
    echo -n "."; sleep 1
  done
  echo
  curl -sf "http://127.0.0.1:$port/api/v2/monitor/health" >/dev/null || { echo "Airflow API did not come up; see $logdir/api-server.log" >&2; exit 1; }
  echo "Airflow UI: http://127.0.0.1:$port"
  echo "Login: user 'admin', password in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated:"
  cat "$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated" 2>/dev/null; echo
  echo "Stop with: make airflow-stop"
}

stop() {
  [ -f "$pidfile" ] || { echo "Airflow is not running"; return 0; }
  pgid=$(cat "$pidfile")
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 1; done
  kill -KILL -- "-$pgid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "Airflow stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

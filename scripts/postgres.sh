#!/usr/bin/env bash
# PostgreSQL for Airflow's metadata DB when the whole stack runs (scheduler, DAG processor,
# triggerer, API server and task runners writing at once: SQLite's single writer made
# `airflow backfill create` fail with "database is locked"). Debian's postgresql package,
# installed when missing; a cluster of the project's own under var/postgres/<port> (or
# $TAXI_POSTGRES_DIR/<port>), listening on 127.0.0.1 only (no Unix socket outside its dir),
# trust authentication on loopback (a development cluster reachable from this machine only;
# docker-compose.yaml and the Helm chart use password auth), databases `airflow` (Airflow's
# metadata) and `mlflow` (the MLflow tracking server's, scripts/mlflow_server.sh).
# Usage: scripts/postgres.sh start|stop|status|url [PORT]   (default port: $TAXI_POSTGRES_PORT or 5433)
#   TAXI_POSTGRES_DATABASES   databases created at start (default "airflow mlflow")
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
port="${2:-${TAXI_POSTGRES_PORT:-5433}}"
dir="${TAXI_POSTGRES_DIR:-$ROOT/var/postgres}/$port"
data="$dir/data"
log="$dir/postgres.log"
url="postgresql+psycopg2://postgres@127.0.0.1:$port/airflow"

bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

ensure_installed() {
  [ -n "$(bin_dir)" ] && [ -x "$(bin_dir)/initdb" ] && return 0
  echo "PostgreSQL not found: installing Debian's postgresql package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq postgresql >/dev/null
  # Debian's package starts a system-wide cluster on 5432; ours is started by this script.
  (service postgresql stop || systemctl stop postgresql) >/dev/null 2>&1 || true
}

# PostgreSQL refuses to run as root: as root, run its programs as the `postgres` user.
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

answers() { as_owner "$(bin_dir)/pg_isready" -q -h 127.0.0.1 -p "$port" >/dev/null 2>&1; }

start() {
  ensure_installed
  if answers; then echo "postgres already answering on 127.0.0.1:$port"; return 0; fi
  local bin; bin=$(bin_dir)
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  if [ ! -f "$data/PG_VERSION" ]; then
    as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { echo "initdb failed; see $dir/initdb.log" >&2; tail -5 "$dir/initdb.log" >&2; exit 1; }
  fi
  # fsync off: a throwaway development and test DB, rebuilt by `airflow db migrate`.
  as_owner "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start >/dev/null \
    || { echo "postgres did not start on 127.0.0.1:$port; see $log" >&2; tail -5 "$log" >&2; exit 1; }
  local db
  for db in ${TAXI_POSTGRES_DATABASES:-airflow mlflow}; do
    if ! as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc "select 1 from pg_database where datname = '$db'" | grep -q 1; then
      as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db"
    fi
  done
  echo "postgres on 127.0.0.1:$port, databases ${TAXI_POSTGRES_DATABASES:-airflow mlflow} ($url)"
}

stop() {
  if [ -f "$data/postmaster.pid" ]; then
    as_owner "$(bin_dir)/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  echo "postgres on 127.0.0.1:$port stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers && echo "postgres answering on 127.0.0.1:$port" || { echo "postgres on 127.0.0.1:$port is not running"; exit 3; } ;;
  url) echo "$url" ;;
  *) echo "usage: $0 start|stop|status|url [PORT]" >&2; exit 2 ;;
esac

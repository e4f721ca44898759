#!/usr/bin/env bash
# One-time preparation of Airflow's metadata DB (SQLite by default, PostgreSQL with
# TAXI_AIRFLOW_DB=postgres: one stamp per DB) and MLflow's dir.
set -euo pipefail
mkdir -p "$AIRFLOW_HOME" "$TAXI_REPO_ROOT/mlflow" "$TAXI_REPO_ROOT/logs"
stamp="$AIRFLOW_HOME/.migrated-$(airflow version 2>/dev/null)-${TAXI_AIRFLOW_DB:-sqlite}${TAXI_POSTGRES_PORT:+-$TAXI_POSTGRES_PORT}"
if [ ! -f "$stamp" ]; then
  echo "preparing Airflow metadata DB (${TAXI_AIRFLOW_DB:-sqlite}) for $AIRFLOW_HOME (one time)"
  airflow db migrate > "$TAXI_REPO_ROOT/logs/airflow-db-migrate.log" 2>&1 || { tail -20 "$TAXI_REPO_ROOT/logs/airflow-db-migrate.log"; exit 1; }
  touch "$stamp"
fi

#!/usr/bin/env bash
# One-time preparation of the embedded defaults: Airflow's SQLite metadata DB, MLflow's dir.
set -euo pipefail
mkdir -p "$AIRFLOW_HOME" "$TAXI_REPO_ROOT/mlflow" "$TAXI_REPO_ROOT/logs"
stamp="$AIRFLOW_HOME/.migrated-$(airflow version 2>/dev/null)"
if [ ! -f "$stamp" ]; then
  echo "preparing Airflow metadata DB in $AIRFLOW_HOME (one time)"
  airflow db migrate > "$TAXI_REPO_ROOT/logs/airflow-db-migrate.log" 2>&1 || { tail -20 "$TAXI_REPO_ROOT/logs/airflow-db-migrate.log"; exit 1; }
  touch "$stamp"
fi

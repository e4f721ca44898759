# Environment for every project command (sourced by the Makefile and the test fixtures).
# Everything lives inside the checkout and listens on 127.0.0.1 only.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TAXI_REPO_ROOT="$ROOT"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/var/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
# 2 cores: the default 32 parallel workers take 1.4 GB for nothing.
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=4
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="${AIRFLOW_PORT:-8080}"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:${AIRFLOW_PORT:-8080}/execution/"
export AIRFLOW__LOGGING__BASE_LOG_FOLDER="$ROOT/logs/airflow"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
export AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR=False
# Airflow's metadata DB: SQLite in AIRFLOW_HOME (embedded default: `make run`, `airflow dags test`),
# or PostgreSQL (scripts/postgres.sh) with TAXI_AIRFLOW_DB=postgres, which `make airflow-ui` uses:
# with the whole stack writing at once SQLite's single writer fails backfills ("database is locked").
export TAXI_AIRFLOW_DB="${TAXI_AIRFLOW_DB:-sqlite}"
if [ "$TAXI_AIRFLOW_DB" = postgres ] && [ -z "${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-}" ]; then
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://postgres@127.0.0.1:${TAXI_POSTGRES_PORT:-5433}/airflow"
fi
# Embedded SQLite metadata DB: BEGIN IMMEDIATE and wait up to 60 s for the write lock (chicago_taxi/airflow_db.py).
case "${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite}" in
  sqlite*) export AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS=chicago_taxi.orchestration.db.SQLITE_CONNECT_ARGS
           export AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC=chicago_taxi.orchestration.db.SQLITE_CONNECT_ARGS_ASYNC ;;
esac
# The executor (TAXI_EXECUTOR=local|celery; `make airflow-ui EXECUTOR=celery WORKERS=2`): see executor_env.sh.
source "$ROOT/scripts/executor_env.sh"
# MLflow: the embedded SQLite store (`make run`, the default), or the tracking server the live stack
# runs (scripts/mlflow_server.sh: PostgreSQL, artifacts over HTTP). TAXI_MLFLOW=server|sqlite picks;
# unset, the server is used while this checkout's server runs (started by `make airflow-ui`).
if [ -z "${MLFLOW_TRACKING_URI:-}" ]; then
  _mlflow_pid="${TAXI_MLFLOW_SERVER_DIR:-$ROOT/var/mlflow-server/${MLFLOW_PORT:-5000}}/server.pid"
  if [ "${TAXI_MLFLOW:-}" = server ] || { [ "${TAXI_MLFLOW:-}" != sqlite ] && [ -f "$_mlflow_pid" ] && kill -0 "$(cat "$_mlflow_pid")" 2>/dev/null; }; then
    export MLFLOW_TRACKING_URI="http://127.0.0.1:${MLFLOW_PORT:-5000}"
  else
    export MLFLOW_TRACKING_URI="sqlite:///$ROOT/mlflow/mlflow.db"
  fi
fi
export BENTOML_HOME="${BENTOML_HOME:-$ROOT/var/bentoml}"
export BENTOML_DO_NOT_TRACK=True
export MLFLOW_ENABLE_TELEMETRY=false
export DO_NOT_TRACK=1
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export PYTHONPATH="$ROOT/plugins${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$ROOT/.venv/bin:$PATH"
# Kafka: the broker (scripts/kafka.sh) and the connection of the taxi_stream DAG's wake-up trigger.
# The trigger's consumer group is its own (the scoring runs use TAXI_STREAM_GROUP); the
# shared-stream trigger refuses to start unless auto-commit is off (it commits after Airflow
# stored the event); "earliest" so that the first start also wakes up for what is already there;
# reconnect backoff from 1 s: with the broker down, librdkafka's 100 ms default logs ~20 errors/s.
export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
export AIRFLOW_CONN_TAXI_KAFKA_TRIGGER="{\"conn_type\": \"kafka\", \"extra\": {\"bootstrap.servers\": \"$KAFKA_BOOTSTRAP_SERVERS\", \"group.id\": \"${TAXI_TRIGGER_GROUP:-taxi-stream-trigger}\", \"enable.auto.commit\": \"false\", \"auto.offset.reset\": \"earliest\", \"reconnect.backoff.ms\": \"1000\", \"reconnect.backoff.max.ms\": \"5000\"}}"
# Feast: feature_store.yaml reads these (chicago_taxi.features.store sets them the same way in code).
export TAXI_FEATURES_DIR="${TAXI_FEATURES_DIR:-$ROOT/var/features}"
export FEAST_REGISTRY_PATH="${FEAST_REGISTRY_PATH:-${TAXI_FEAST_DIR:-$ROOT/var/feast}/registry.db}"
if [ "${TAXI_ONLINE_STORE:-sqlite}" = redis ]; then
  _t="${TAXI_REDIS_TIMEOUT_SECONDS:-2.0}"
  export FEAST_ONLINE_STORE="{type: redis, connection_string: \"${REDIS_HOST:-127.0.0.1}:${REDIS_PORT:-6379},socket_connect_timeout=$_t,socket_timeout=$_t\"}"
else
  export FEAST_ONLINE_STORE="{type: sqlite, path: \"${TAXI_FEAST_DIR:-$ROOT/var/feast}/online.db\"}"
fi

# Airflow's executor from TAXI_EXECUTOR (sourced by scripts/env.sh and scripts/airflow_stack.sh):
#   unset   AIRFLOW__CORE__EXECUTOR as given, else LocalExecutor
#   local   LocalExecutor: tasks run as children of the scheduler, at most AIRFLOW__CORE__PARALLELISM at once
#   celery  CeleryExecutor: scripts/airflow_stack.sh starts TAXI_CELERY_WORKERS workers (default 2), each
#           running TAXI_CELERY_CONCURRENCY tasks at once (default 2; 2 x 2 = the parallelism of 4 on 2
#           cores). Broker: Redis at REDIS_HOST:REDIS_PORT, database TAXI_CELERY_REDIS_DB (default 1; the
#           feature store uses database 0). Results: the Airflow metadata DB, which must be PostgreSQL
#           (TAXI_AIRFLOW_DB=postgres, as `make airflow-ui` sets). Each worker's tasks report the host
#           as worker-K@<host> (chicago_taxi.orchestration.hostname), so the UI shows which worker ran what.
case "${TAXI_EXECUTOR:-}" in
  "") export AIRFLOW__CORE__EXECUTOR="${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}" ;;
  local) export AIRFLOW__CORE__EXECUTOR=LocalExecutor ;;
  celery)
    export AIRFLOW__CORE__EXECUTOR=CeleryExecutor
    export AIRFLOW__CELERY__BROKER_URL="redis://${REDIS_HOST:-127.0.0.1}:${REDIS_PORT:-6379}/${TAXI_CELERY_REDIS_DB:-1}"
    export AIRFLOW__CELERY__WORKER_CONCURRENCY="${TAXI_CELERY_CONCURRENCY:-2}"
    export AIRFLOW__CORE__HOSTNAME_CALLABLE=chicago_taxi.orchestration.hostname.worker_hostname
    case "${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-}" in
      postgresql*) export AIRFLOW__CELERY__RESULT_BACKEND="db+$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" ;;  # the same driver (psycopg2)
      *) unset AIRFLOW__CELERY__RESULT_BACKEND ;;  # scripts/airflow_stack.sh refuses to start Celery without PostgreSQL
    esac ;;
  *) echo "TAXI_EXECUTOR=$TAXI_EXECUTOR: expected local or celery" >&2 ;;
esac

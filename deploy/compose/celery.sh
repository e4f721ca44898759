#!/usr/bin/env bash
# The `celery` profile's services of docker-compose.yaml: `celery.sh worker` (airflow-worker),
# `celery.sh worker tfx` (airflow-worker-tfx) and `celery.sh flower` (flower). All need the
# CeleryExecutor (AIRFLOW_EXECUTOR=CeleryExecutor in .env): Airflow offers its `celery` commands
# only then, and with another executor the scheduler would never hand a task to a worker. Said
# plainly here rather than as "invalid choice: 'celery'".
set -euo pipefail
if [ "${AIRFLOW__CORE__EXECUTOR:-}" != CeleryExecutor ]; then
  echo "the celery profile needs the CeleryExecutor: set AIRFLOW_EXECUTOR=CeleryExecutor in .env" \
    "(AIRFLOW__CORE__EXECUTOR is '${AIRFLOW__CORE__EXECUTOR:-}')" >&2
  exit 1
fi
case "${1:-}" in
  # `worker [QUEUES]`: the queues it consumes, Airflow's default one unless named (airflow-worker-tfx:
  # tfx). Task logs land on the shared logs volume, where the API server reads them: no log server.
  worker) exec airflow celery worker --queues "${2:-default}" --concurrency "${AIRFLOW__CELERY__WORKER_CONCURRENCY:-2}" --skip-serve-logs ;;
  flower) exec airflow celery flower --hostname 0.0.0.0 --port 5555 ;;
  *) echo "usage: $0 worker [QUEUES]|flower" >&2; exit 2 ;;
esac

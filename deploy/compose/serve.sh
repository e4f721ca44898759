#!/usr/bin/env bash
# The compose stack's prediction service: wait until the MLflow registry holds a champion (the
# taxi_training DAG registers one), then run what `make serve` runs (scripts/serve.sh: the online
# store warmed from the Feast registry, then BentoML on $TAXI_SERVE_HOST:$TAXI_SERVE_PORT).
# Until then the container runs and reports unhealthy (its health check asks BentoML's /readyz).
set -euo pipefail
poll="${TAXI_CHAMPION_POLL_SECONDS:-30}"
has_champion() {
  python - <<'PY'
import sys

import mlflow

from chicago_taxi.core.config import load_settings
from chicago_taxi.training.registry import champion_version

settings = load_settings()
mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
mlflow.set_registry_uri(settings.mlflow_tracking_uri)
sys.exit(0 if champion_version(settings.model_name) else 1)
PY
}
until has_champion; do
  echo "no champion of ${TAXI_MODEL_NAME:-chicago_taxi_fare} in $MLFLOW_TRACKING_URI yet: trigger the taxi_features then taxi_training DAGs in the Airflow UI (next check in ${poll}s)"
  sleep "$poll"
done
exec "$TAXI_REPO_ROOT/scripts/serve.sh"

"""The Airflow assets the DAGs exchange, declared once.

`taxi_offline_store`: the Feast offline store (the Parquet aggregates plus the applied registry).
taxi_features emits an event when `feast_apply` has finished; taxi_training is scheduled on that
event as well as on its daily cron, so a training run never starts on a store that is not there.

`taxi_model_degraded`: taxi_monitoring's `request_retraining` task emits it when a window
breached a threshold of config/monitoring.yaml (and skips, so no event, when every figure is in
bounds or the retraining cooldown runs); taxi_training is scheduled on it too.
"""

from __future__ import annotations

from airflow.sdk import Asset

OFFLINE_STORE = Asset(name="taxi_offline_store")
MODEL_DEGRADED = Asset(name="taxi_model_degraded")

"""taxi_features: the feature integration pipeline, decoupled from training.

Validated trips (the same GX gate as training) -> point-in-time aggregates per pickup area,
company and city into the Feast offline store (Parquet) -> `feast apply` of feature_repo/,
which emits the `taxi_offline_store` asset that schedules taxi_training.
Schedule: daily. The feast_materialize_* DAGs then load the online store from it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import chain, dag

from chicago_taxi.features.steps import build_offline_store, feast_apply
from chicago_taxi.ingest.extract import extract
from chicago_taxi.orchestration.assets import OFFLINE_STORE
from chicago_taxi.orchestration.tasks import extract_task, step_task
from chicago_taxi.quality.steps import validate_raw

DEFAULT_ARGS = {"owner": "mlops", "retries": 1, "retry_delay": timedelta(seconds=30)}


@dag(
    dag_id="taxi_features",
    schedule="@daily",
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["chicago-taxi", "features", "feast"],
    doc_md=__doc__,
)
def taxi_features():
    chain(
        extract_task(extract)(),
        step_task(validate_raw)(),
        step_task(build_offline_store)(),
        step_task(feast_apply, outlets=[OFFLINE_STORE])(),
    )


taxi_features()

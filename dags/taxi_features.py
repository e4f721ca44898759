"""taxi_features: the feature integration pipeline, decoupled from training.

Validated trips (the same GX gate as training) -> point-in-time aggregates per pickup area and
per company into the Feast offline store (Parquet) -> `feast apply` of feature_repo/.
Schedule: daily. The feast_materialize_* DAGs then load the online store from it.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task

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
    from airflow.sdk import chain

    from chicago_taxi.airflow_tasks import run_step, step_task, window_end

    @task
    def extract(run_id=None, data_interval_end=None, logical_date=None):
        return run_step("extract", run_id, window_end(data_interval_end, logical_date))

    # The rest, in order: each task is one pipeline step of the same name.
    steps = [
        "validate_raw",
        "build_offline_store",
        "feast_apply",
    ]
    chain(extract(), *(step_task(step)() for step in steps))


taxi_features()

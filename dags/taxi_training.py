"""taxi_training: raw Chicago trips -> GX gate -> Feast point-in-time features -> tf.Transform -> GX gate
-> Keras -> evaluate -> MLflow -> Bento.

Needs the feature store built by the `taxi_features` DAG (`make run` runs it first).
Schedule: daily (catchup off); each run trains on the trips up to its data interval's end
(`TAXI_LOOKBACK_DAYS` limits how far back, default all). Backfill a range with
`airflow backfill create --dag-id taxi_training --from-date ... --to-date ...`.
Every task is one call into `plugins/chicago_taxi/pipeline.py`; heavy imports happen inside tasks.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task

DEFAULT_ARGS = {"owner": "mlops", "retries": 1, "retry_delay": timedelta(seconds=30)}


@dag(
    dag_id="taxi_training",
    schedule="@daily",
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["chicago-taxi", "training"],
    doc_md=__doc__,
)
def taxi_training():
    from airflow.sdk import chain

    from chicago_taxi.airflow_tasks import run_step, step_task, window_end

    @task
    def extract(run_id=None, data_interval_end=None, logical_date=None):
        return run_step("extract", run_id, window_end(data_interval_end, logical_date))

    # The rest, in order: each task is one pipeline step of the same name.
    steps = [
        "validate_raw",
        "join_store_features",
        "transform",
        "validate_transformed",
        "train",
        "evaluate",
        "register",
        "build_bento",
    ]
    chain(extract(), *(step_task(step)() for step in steps))


taxi_training()

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
    @task
    def extract(run_id=None, data_interval_end=None, logical_date=None):
        from datetime import timezone

        from chicago_taxi import pipeline

        return pipeline.extract(run_id, data_interval_end or logical_date or datetime.now(timezone.utc))

    @task
    def validate_raw(run_id=None):
        from airflow.sdk.exceptions import AirflowFailException

        from chicago_taxi import pipeline
        from chicago_taxi.validation import QualityGateError

        try:
            return pipeline.validate_raw(run_id)
        except QualityGateError as exc:
            raise AirflowFailException(str(exc)) from exc

    @task
    def build_offline_store(run_id=None):
        from chicago_taxi import pipeline

        return pipeline.build_offline_store(run_id)

    @task
    def feast_apply(run_id=None):
        from chicago_taxi import pipeline

        return pipeline.feast_apply(run_id)

    extract() >> validate_raw() >> build_offline_store() >> feast_apply()


taxi_features()

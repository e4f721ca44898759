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

DEFAULT_ARGS = {
    "owner": "mlops",
    "retries": 1,
    "retry_delay": timedelta(seconds=30),
}


def _gate(step: str, run_id: str):
    """Run a gated step; a failed quality gate is final, so the task fails without retrying."""
    from airflow.sdk.exceptions import AirflowFailException

    from chicago_taxi import pipeline
    from chicago_taxi.validation import QualityGateError

    try:
        return getattr(pipeline, step)(run_id)
    except QualityGateError as exc:
        raise AirflowFailException(str(exc)) from exc


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
    @task
    def extract(run_id=None, data_interval_end=None, logical_date=None):
        from datetime import timezone

        from chicago_taxi import pipeline

        # A manual run without a logical date has no data interval: train on everything to now.
        end = data_interval_end or logical_date or datetime.now(timezone.utc)
        return pipeline.extract(run_id, end)

    @task
    def validate_raw(run_id=None):
        return _gate("validate_raw", run_id)

    @task
    def join_store_features(run_id=None):
        from chicago_taxi import pipeline

        return pipeline.join_store_features(run_id)

    @task
    def transform(run_id=None):
        from chicago_taxi import pipeline

        return pipeline.transform(run_id)

    @task
    def validate_transformed(run_id=None):
        return _gate("validate_transformed", run_id)

    @task
    def train(run_id=None):
        from chicago_taxi import pipeline

        return pipeline.train(run_id)

    @task
    def evaluate(run_id=None):
        from chicago_taxi import pipeline

        return pipeline.evaluate(run_id)

    @task
    def register(run_id=None):
        from chicago_taxi import pipeline

        return pipeline.register(run_id)

    @task
    def build_bento(run_id=None):
        from chicago_taxi import pipeline

        return pipeline.build_bento(run_id)

    extract() >> validate_raw() >> join_store_features() >> transform() >> validate_transformed() >> train() >> evaluate() >> register() >> build_bento()


taxi_training()

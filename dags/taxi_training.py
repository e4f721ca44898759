"""taxi_training: raw Chicago trips -> GX gate -> Feast point-in-time features -> tf.Transform -> GX gate
-> Keras -> evaluate -> MLflow -> Bento.

Schedule: daily at midnight UTC, *or* when taxi_features updated the offline store (the
`taxi_offline_store` asset), *or* when taxi_monitoring found the model degraded (the
`taxi_model_degraded` asset: a threshold breach, at most once per retraining cooldown);
catchup off. A retrain passes every gate like any other run. TAXI_TRAINING_CRON changes the cron
("none": the assets only). Each run trains on the trips up
to its data interval's end (`TAXI_LOOKBACK_DAYS` limits how far back, default all). Backfill a
range with `airflow backfill create --dag-id taxi_training --from-date ... --to-date ...`
(dates that already ran are skipped unless `--reprocess-behavior completed`).
Every task is one step function of the library; heavy imports happen inside the steps.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, chain, dag

from chicago_taxi.core.config import training_cron
from chicago_taxi.ingest.extract import extract
from chicago_taxi.orchestration.assets import MODEL_DEGRADED, OFFLINE_STORE
from chicago_taxi.orchestration.tasks import extract_task, step_task
from chicago_taxi.quality.steps import validate_raw, validate_transformed
from chicago_taxi.serving.bento import build_bento
from chicago_taxi.training.steps import evaluate, join_store_features, register, train, transform

ASSETS = OFFLINE_STORE | MODEL_DEGRADED
CRON = training_cron()  # TAXI_TRAINING_CRON, default "@daily"; "none": on the assets only
DEFAULT_ARGS = {"owner": "mlops", "retries": 1, "retry_delay": timedelta(seconds=30)}


@dag(
    dag_id="taxi_training",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable(CRON, timezone="UTC"), assets=ASSETS) if CRON else ASSETS,
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["chicago-taxi", "training"],
    doc_md=__doc__,
)
def taxi_training():
    chain(
        extract_task(extract)(),
        *(step_task(step)() for step in (validate_raw, join_store_features, transform, validate_transformed, train, evaluate, register, build_bento)),
    )


taxi_training()

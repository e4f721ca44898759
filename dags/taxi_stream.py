"""taxi_stream: Kafka-triggered scoring of the trips arriving on `taxi-raw-data`.

Event-driven scheduling (Airflow 3): the `taxi_raw_data` asset has an AssetWatcher whose trigger
(`chicago_taxi.orchestration.trigger.RawTripsWakeUpTrigger`, the Kafka provider's shared-stream trigger)
turns each message into an asset event, and this DAG is scheduled on the asset. The trigger is
only a wake-up: Airflow may fold many events into one run, or strand the tail of a burst until
the next message (apache/airflow#56050). So every run drains *everything* pending on the topic
for the scoring consumer group (TAXI_STREAM_GROUP, default taxi-scoring; the trigger has a
group of its own, in the `taxi_kafka_trigger` connection) in bounded micro-batches:
parse and validate every message (schema module + the GX raw suite's row expectations), dead-
letter the bad ones with the reason and their partition/offset, push features through the Feast
push source, score with the MLflow champion, publish to taxi-predictions / taxi-features, and
only then commit (`chicago_taxi.streaming.batch`). At least once, idempotent by trip_id.
With TAXI_STREAM_SCORERS=N the drain is one mapped task per scorer, each on its own partitions
of the raw topic (partition p to scorer p mod N), side by side.

A run that fails before its commit leaves the offsets where they were: the retry, or the next
run, processes the same messages again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, AssetWatcher, dag, task

from chicago_taxi.core.config import StreamConfig
from chicago_taxi.ingest.topics import RAW_TRIPS, bootstrap_servers
from chicago_taxi.orchestration.tasks import stream_drain
from chicago_taxi.orchestration.trigger import RawTripsWakeUpTrigger

SCORERS = StreamConfig.from_env().scorers  # TAXI_STREAM_SCORERS (default 1)
KAFKA_CONN_ID = "taxi_kafka_trigger"  # scripts/env.sh defines it as AIRFLOW_CONN_TAXI_KAFKA_TRIGGER

raw_trips = Asset(
    name="taxi_raw_data",
    uri=f"kafka://{bootstrap_servers()}/{RAW_TRIPS}",
    watchers=[AssetWatcher(name="taxi_raw_data_watcher", trigger=RawTripsWakeUpTrigger(topics=[RAW_TRIPS], kafka_config_id=KAFKA_CONN_ID))],
)


@dag(
    dag_id="taxi_stream",
    schedule=[raw_trips],
    start_date=datetime(2024, 1, 1),
    catchup=False,
    # One drain at a time: runs queued behind it find little or nothing and end in seconds.
    max_active_runs=1,
    # The watcher registers only when an unpaused DAG is parsed.
    is_paused_upon_creation=False,
    default_args={"owner": "mlops", "retries": 3, "retry_delay": timedelta(seconds=10)},
    tags=["chicago-taxi", "kafka", "streaming", "serving"],
    doc_md=__doc__,
)
def taxi_stream():
    @task
    def drain_and_score(scorer: int = 0, **context):
        return stream_drain(context, scorer, SCORERS)

    if SCORERS == 1:
        drain_and_score()
    else:  # one mapped task per scorer, each on its own partitions; they run side by side
        drain_and_score.expand(scorer=list(range(SCORERS)))


taxi_stream()

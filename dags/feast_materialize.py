"""feast_materialize_hourly / feast_materialize_half_hourly: load the Feast online store (Redis).

One factory, keyed by the views' `cadence` tag. Each run materializes only its cadence's views
over [data_interval_start - overlap, data_interval_end] in data time (wall clock minus the
replay offset, TAXI_REPLAY_OFFSET_DAYS), so reruns and backfills write the same values.
Schedules: hourly at minute 0, and every 30 minutes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, dag, task

DEFAULT_ARGS = {"owner": "mlops", "retries": 2, "retry_delay": timedelta(seconds=30)}
CADENCES = {"hourly": "0 * * * *", "half_hourly": "*/30 * * * *"}


def materialization_dag(cadence: str, cron: str):
    @dag(
        dag_id=f"feast_materialize_{cadence}",
        # Cron *data intervals* (not Airflow 3's default trigger timetable): the window is the interval.
        schedule=CronDataIntervalTimetable(cron, timezone="UTC"),
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["chicago-taxi", "feast", "materialization", cadence],
        doc_md=__doc__,
    )
    def materialize():
        @task
        def materialize_window(data_interval_start=None, data_interval_end=None):
            from chicago_taxi.features.store import materialize_window

            return materialize_window(cadence, data_interval_start, data_interval_end)

        materialize_window()

    return materialize()


for _cadence, _cron in CADENCES.items():
    globals()[f"feast_materialize_{_cadence}"] = materialization_dag(_cadence, _cron)

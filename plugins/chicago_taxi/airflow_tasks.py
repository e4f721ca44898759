"""The glue between Airflow tasks and the pipeline steps, shared by the DAG files.

A failed quality gate is final (the data will not change on retry), so it fails the task
without retries; any other error is retried as the DAG's default_args say.
"""
from __future__ import annotations

from datetime import datetime, timezone


def run_step(step: str, run_id: str, *args):
    from airflow.sdk.exceptions import AirflowFailException

    from chicago_taxi import pipeline
    from chicago_taxi.validation import QualityGateError

    try:
        return getattr(pipeline, step)(run_id, *args)
    except QualityGateError as exc:
        raise AirflowFailException(str(exc)) from exc


def window_end(data_interval_end: datetime | None, logical_date: datetime | None) -> datetime:
    """The end of the data a run reads; a manual run without a logical date reads up to now."""
    return data_interval_end or logical_date or datetime.now(timezone.utc)


def step_task(step: str):
    """An Airflow task (task id = step name) whose body is `pipeline.<step>(run_id)`."""
    from airflow.sdk import task

    def body(run_id=None):
        return run_step(step, run_id)

    body.__name__ = step
    return task(task_id=step)(body)


def stream_drain(context: dict) -> dict:
    """The taxi_stream task: log what woke the run, then drain Kafka (chicago_taxi.streaming.drain).
    A broker, Redis or publish failure raises, nothing is committed, and Airflow retries."""
    import logging

    from chicago_taxi.streaming import drain

    log = logging.getLogger(__name__)
    events = [event for per_asset in (context.get("triggering_asset_events") or {}).values() for event in per_asset]
    log.info("woken by %d asset event(s)%s", len(events),
             f"; first {events[0].extra.get('payload')}" if events and getattr(events[0], "extra", None) else "")
    result = drain()
    result["wake_up_events"] = len(events)
    log.info("consumed %(consumed)d, valid %(valid)d, dead-lettered %(dead_lettered)d, predictions %(predictions_published)d, alerts %(alerts)d", result)
    return result

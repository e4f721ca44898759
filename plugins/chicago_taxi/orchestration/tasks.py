"""The glue between Airflow tasks and the library's step functions, shared by the DAG files.

A DAG names its steps as functions (`step_task(validate_raw)`), so a misspelt step fails at
import, when the DAG is parsed, not when the task runs. A failed quality gate is final (the data
will not change on retry), so it fails the task without retries; any other error is retried as
the DAG's default_args say.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

log = logging.getLogger(__name__)
Step = Callable[..., dict]


def run_step(step: Step, run_id: str, *args):
    """Call one step; a failed quality gate becomes AirflowFailException (no retry)."""
    from airflow.sdk.exceptions import AirflowFailException

    from chicago_taxi.quality.gates import QualityGateError

    try:
        return step(run_id, *args)
    except QualityGateError as exc:
        raise AirflowFailException(str(exc)) from exc


def window_end(data_interval_end: datetime | None, logical_date: datetime | None) -> datetime:
    """The end of the data a run reads; a manual run without a logical date reads up to now."""
    return data_interval_end or logical_date or datetime.now(UTC)


def run_key(run_id: str, namespace: str | None) -> str:
    """The id a step files its run under: the Airflow run id, prefixed by `namespace` when two
    DAGs share steps (taxi_tfx reuses taxi_training's first steps: the same logical date must not
    share one working directory and report)."""
    return f"{namespace}__{run_id}" if namespace else run_id


def extract_task(step: Step, namespace: str | None = None, **task_kwargs):
    """The first task of a pipeline DAG: `step(run_id, window end)` (task id = the step's name)."""
    from airflow.sdk import task

    def body(run_id=None, data_interval_end=None, logical_date=None):
        return run_step(step, run_key(run_id, namespace), window_end(data_interval_end, logical_date))

    body.__name__ = step.__name__
    return task(task_id=step.__name__, **task_kwargs)(body)


def step_task(step: Step, namespace: str | None = None, **task_kwargs):
    """An Airflow task whose body is `step(run_id)` (task id = the step's name; `namespace`: see
    `run_key`); `task_kwargs` go to `@task` (e.g. `outlets`)."""
    from airflow.sdk import task

    def body(run_id=None):
        return run_step(step, run_key(run_id, namespace))

    body.__name__ = step.__name__
    return task(task_id=step.__name__, **task_kwargs)(body)


def stream_drain(context: dict, scorer: int = 0, scorers: int = 1) -> dict:
    """The taxi_stream task: log what woke the run, then drain Kafka (chicago_taxi.streaming.batch.drain),
    as scorer `scorer` of `scorers` (its partition set; all partitions for one scorer).
    A broker, Redis or publish failure raises, nothing is committed, and Airflow retries."""
    from chicago_taxi.streaming.batch import drain, scorer_partitions

    events = [event for per_asset in (context.get("triggering_asset_events") or {}).values() for event in per_asset]
    log.info(
        "woken by %d asset event(s)%s",
        len(events),
        f"; first {events[0].extra.get('payload')}" if events and getattr(events[0], "extra", None) else "",
    )
    partitions = scorer_partitions(scorer, scorers) if scorers > 1 else None
    if partitions is not None:
        log.info("scorer %d of %d: partitions %s of the raw topic", scorer, scorers, partitions)
    result = drain(partitions=partitions)
    result["wake_up_events"] = len(events)
    log.info(
        "consumed %(consumed)d, valid %(valid)d, dead-lettered %(dead_lettered)d, predictions %(predictions_published)d, alerts %(alerts)d, "
        "expired before read %(expired_messages)d",
        result,
    )
    return result

"""The taxi_stream DAG through a live Airflow (api-server, scheduler, DAG processor, triggerer;
LocalExecutor) with the session's Kafka broker, a Redis of this module's own and the champion
trained in this session. Trips are produced onto taxi-raw-data; the shared-stream trigger wakes
the DAG, whose runs drain, validate, score and publish, then commit.

Every test uses trip ids with a prefix of its own and reads the output topics from where they
ended when the test started. The scoring group (TAXI_STREAM_GROUP) and the trigger's group are
this module's own, positioned at the raw topic's end, so messages of other tests are not ours
to wait for. Timings (stack start, produce -> every prediction published) print with `-s`.
"""

from __future__ import annotations

import time
import uuid

import pytest

from chicago_taxi.ingest import topics
from fixtures.airflow import AirflowStack
from fixtures.kafka import restart_broker
from fixtures.streams import Outputs, messages_for, new_group, produce, trigger_connection, warmed_redis

DAG_ID = "taxi_stream"
TIMEOUT = 420  # a run starts a task process that imports TF, Feast and GX and loads the model


@pytest.fixture(scope="module")
def stream_stack(stack, first_run, kafka_broker, tmp_path_factory, airflow_stack_factory):
    """An Airflow stack of its own (its own AIRFLOW_HOME and DB) over the training stack's MLflow
    store and feature store, with a warmed Redis and the session broker."""
    tmp, train_env = stack
    home = tmp_path_factory.mktemp("stream-airflow")
    env = {
        **train_env,
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
        "TAXI_STREAM_GROUP": new_group(kafka_broker, "stream-dag"),
        "TAXI_STREAM_KAFKA_TIMEOUT": "10",
        "TAXI_ONLINE_STORE_RETRY_SECONDS": "1",
    }
    trigger_group = new_group(kafka_broker, "stream-dag-trigger")
    env["AIRFLOW_CONN_TAXI_KAFKA_TRIGGER"] = trigger_connection(env, kafka_broker, trigger_group)
    with warmed_redis(env) as (env, _port):
        started = time.monotonic()
        live = airflow_stack_factory(env)
        live.wait_for_dag(DAG_ID)
        print(f"\n[timing] stream stack start {live.start_seconds} s, taxi_stream registered after {time.monotonic() - started:.1f} s", flush=True)
        yield live


def wait_for_outputs(live: AirflowStack, outputs: Outputs, prefix: str, good: set[str], bad: set[str], timeout: float = TIMEOUT) -> tuple[list, list]:
    """Poll the output topics until every good id has a prediction and every bad one a dead
    letter; fail with the DAG's run states, the failed task's log and the scheduler's tail."""
    deadline = time.monotonic() + timeout
    predictions, dead = [], []
    while time.monotonic() < deadline:
        predictions = outputs.read(topics.PREDICTIONS, prefix)
        dead = outputs.read(topics.RAW_TRIPS_DLQ, prefix)
        if {p["trip_id"] for p in predictions} >= good and {d["_key"] for d in dead} >= bad:
            return predictions, dead
        time.sleep(3)
    runs = live.dag_runs(DAG_ID)
    failed = next((r for r in runs if r["state"] == "failed"), None)
    missing = sorted(good - {p["trip_id"] for p in predictions})[:10]
    pytest.fail(
        f"after {timeout}s: {len(good - {p['trip_id'] for p in predictions})} of {len(good)} predictions and "
        f"{len(bad - {d['_key'] for d in dead})} of {len(bad)} dead letters missing (e.g. {missing})\n"
        f"{live._explain(DAG_ID, runs, failed)}\n{live.log_tails(40, ['triggerer'])}",
        pytrace=False,
    )


def check_exactly_once(predictions: list[dict], dead: list[dict], good: set[str], bad: set[str]) -> None:
    """After de-duplication by trip_id: each valid trip scored once with a finite fare, each bad one
    dead-lettered with a reason and its source partition/offset, and nothing in both."""
    latest = {p["trip_id"]: p for p in predictions}
    assert set(latest) == good
    assert all(isinstance(p["fare"], float) and 0 < p["fare"] < 1000 for p in latest.values())
    letters = {d["_key"]: d for d in dead}
    assert set(letters) == bad
    for letter in letters.values():
        assert letter["reason"] and letter["source"]["topic"] == topics.RAW_TRIPS
        assert letter["source"]["partition"] is not None and letter["source"]["offset"] is not None
    assert not good & bad


def test_produced_trips_trigger_a_run_that_scores_the_valid_and_dead_letters_the_rest(stream_stack, clean_rows, kafka_broker):
    prefix = f"dag-{uuid.uuid4().hex[:6]}"
    outputs = Outputs(kafka_broker)
    messages, good, bad = messages_for(prefix, clean_rows[300:330], bad={3: "not-json", 11: "missing-field", 20: "negative-miles"}, legacy={5, 6, 7})
    runs_before = len(stream_stack.dag_runs(DAG_ID))
    started = time.monotonic()
    produce(kafka_broker, messages)
    predictions, dead = wait_for_outputs(stream_stack, outputs, prefix, good, bad)
    print(f"\n[timing] 30 messages -> every prediction published: {time.monotonic() - started:.1f} s", flush=True)
    check_exactly_once(predictions, dead, good, bad)
    assert {p["trip_id"] for p in predictions} >= {f"{prefix}-{i:03d}" for i in (5, 6, 7)}  # the legacy shape, mapped
    reasons = {d["_key"]: d["reason"] for d in dead}
    assert all(reasons[f"{prefix}-{i:03d}"] for i in (3, 11, 20)), reasons
    runs = stream_stack.wait_for_runs(DAG_ID, runs_before + 1, timeout=120)
    assert all(r["run_type"] == "asset_triggered" for r in runs)


def test_a_broker_restart_mid_stream_loses_nothing(stream_stack, clean_rows, kafka_broker):
    prefix = f"dag-{uuid.uuid4().hex[:6]}"
    outputs = Outputs(kafka_broker)
    first, good1, bad1 = messages_for(f"{prefix}a", clean_rows[340:355], bad={4: "not-json"})
    second, good2, bad2 = messages_for(f"{prefix}b", clean_rows[355:370], bad={9: "negative-miles"})
    produce(kafka_broker, first)
    restart_broker()
    produce(kafka_broker, second)
    predictions, dead = wait_for_outputs(stream_stack, outputs, prefix, good1 | good2, bad1 | bad2)
    check_exactly_once(predictions, dead, good1 | good2, bad1 | bad2)


def test_trips_sent_while_airflow_is_down_are_scored_after_it_comes_back(stream_stack, clean_rows, kafka_broker):
    prefix = f"dag-{uuid.uuid4().hex[:6]}"
    outputs = Outputs(kafka_broker)
    messages, good, bad = messages_for(prefix, clean_rows[380:400], bad={7: "missing-field"}, legacy={2})
    stream_stack.stop()
    produce(kafka_broker, messages)
    time.sleep(2)
    assert not outputs.read(topics.PREDICTIONS, prefix), "nothing may score while Airflow is down"
    stream_stack.start()
    predictions, dead = wait_for_outputs(stream_stack, outputs, prefix, good, bad)
    check_exactly_once(predictions, dead, good, bad)


def test_every_socket_the_stack_listens_on_is_loopback(stream_stack):
    sockets = stream_stack.listening_sockets()
    assert sockets, "found no listening socket of the stack's processes (ss -ltnp)"
    assert all(s["address"] == "127.0.0.1" for s in sockets), sockets
    assert any(s["port"] == stream_stack.port for s in sockets)

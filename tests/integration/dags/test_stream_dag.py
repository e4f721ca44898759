"""The taxi_stream DAG through a live Airflow (api-server, scheduler, DAG processor, triggerer;
LocalExecutor) with the session's Kafka broker, a Redis of this module's own and the champion
trained in this session. Trips are produced onto taxi-raw-data; the shared-stream trigger wakes
the DAG, whose runs drain, validate, score and publish, then commit.

Every test uses trip ids with a prefix of its own and reads the output topics from where they
ended when the test started. The scoring group (TAXI_STREAM_GROUP) and the trigger's group are
this module's own, positioned at the raw topic's end, so messages of other tests are not ours
to wait for. Outputs are checked once the scoring group has committed past the test's messages;
duplicates are counted, not de-duplicated away (`check_exactly_once`). Timings (stack start,
produce -> every prediction published and committed) and the duplicate counts print with `-s`.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest

from chicago_taxi.ingest import topics
from chicago_taxi.streaming import kafka_io
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


def uncommitted(live: AirflowStack, placed: dict[str, tuple[int, int]]) -> dict[int, tuple[int | None, int]]:
    """Partitions where the scoring group has not yet committed past the messages in `placed`:
    partition -> (committed, needed). Empty once every attempt that processed them is over."""
    needed: dict[int, int] = {}
    for partition, offset in placed.values():
        needed[partition] = max(needed.get(partition, 0), offset + 1)
    try:
        committed = kafka_io.committed_offsets(live.env["KAFKA_BOOTSTRAP_SERVERS"], live.env["TAXI_STREAM_GROUP"])
    except topics.BrokerUnavailable:  # right after a broker restart
        return {p: (None, n) for p, n in needed.items()}
    return {p: (committed.get(p), n) for p, n in needed.items() if (committed.get(p) or 0) < n}


def wait_for_outputs(
    live: AirflowStack, outputs: Outputs, prefix: str, good: set[str], bad: set[str], placed: dict[str, tuple[int, int]], timeout: float = TIMEOUT
) -> tuple[list, list]:
    """Poll until every good id has a prediction and every bad one a dead letter, and the scoring
    group has committed past every message in `placed` (read after the commit: no attempt is still
    publishing them, so what a redelivery publishes is all there); fail with the DAG's run states,
    the failed task's log and the scheduler's tail."""
    deadline = time.monotonic() + timeout
    predictions, dead, pending = [], [], {}
    while time.monotonic() < deadline:
        pending = uncommitted(live, placed)
        predictions = outputs.read(topics.PREDICTIONS, prefix)
        dead = outputs.read(topics.RAW_TRIPS_DLQ, prefix)
        if not pending and {p["trip_id"] for p in predictions} >= good and {d["_key"] for d in dead} >= bad:
            return predictions, dead
        time.sleep(3)
    runs = live.dag_runs(DAG_ID)
    failed = next((r for r in runs if r["state"] == "failed"), None)
    missing = sorted(good - {p["trip_id"] for p in predictions})[:10]
    pytest.fail(
        f"after {timeout}s: {len(good - {p['trip_id'] for p in predictions})} of {len(good)} predictions and "
        f"{len(bad - {d['_key'] for d in dead})} of {len(bad)} dead letters missing (e.g. {missing}); "
        f"not committed yet (partition: (committed, needed)): {pending}\n"
        f"{live._explain(DAG_ID, runs, failed)}\n{live.log_tails(40, ['triggerer'])}",
        pytrace=False,
    )


def check_exactly_once(
    predictions: list[dict], dead: list[dict], good: set[str], bad: set[str], placed: dict[str, tuple[int, int]], *, redelivery_possible: bool
) -> dict[str, int]:
    """Every valid trip scored (a finite fare) and every bad one dead-lettered (a reason), each from
    the one message produced for it (`placed`: its partition/offset), and nothing in both.

    Duplicates are counted, not de-duplicated away. Delivery is at least once
    (chicago_taxi/streaming/batch.py): only a failure after publishing and before the commit makes
    the next run process the same messages again, and it processes that batch again whole. So a
    trip has more than one prediction only in a test that causes such a failure
    (`redelivery_possible`), and then every copy is the same message processed by a different
    attempt (each batch stamps its own `scored_at_ms`), and an attempt whose trips of a partition
    come again comes again whole. Copies may differ in fare: the retry scores with the online store
    as the failed attempt's push left it. The counts are printed (with `-s`) and returned."""
    assert not good & bad
    by_trip: dict[str, list[dict]] = defaultdict(list)
    for p in predictions:
        by_trip[p["trip_id"]].append(p)
    letters: dict[str, list[dict]] = defaultdict(list)
    for d in dead:
        letters[d["_key"]].append(d)
    assert set(by_trip) == good, f"missing {sorted(good - set(by_trip))[:10]}, unexpected {sorted(set(by_trip) - good)[:10]}"
    assert set(letters) == bad, f"missing {sorted(bad - set(letters))[:10]}, unexpected {sorted(set(letters) - bad)[:10]}"
    for trip_id, copies in by_trip.items():
        for p in copies:
            assert isinstance(p["fare"], float) and 0 < p["fare"] < 1000, p
            assert p["source"]["topic"] == topics.RAW_TRIPS and (p["source"]["partition"], p["source"]["offset"]) == placed[trip_id], p
        attempts = [p["scored_at_ms"] for p in copies]
        assert len(set(attempts)) == len(attempts), f"{trip_id} published more than once by one attempt: {copies}"
        assert len({p["model_version"] for p in copies}) == 1, copies
    for key, copies in letters.items():
        for letter in copies:
            assert letter["reason"] and letter["source"] == {"topic": topics.RAW_TRIPS, "partition": placed[key][0], "offset": placed[key][1]}, letter
        assert len({(letter["reason"], letter["payload"]) for letter in copies}) == 1, copies  # one message, one verdict
    # One scored_at_ms per attempt: where an attempt's trips of a partition were processed again
    # (its commit failed), all of them were.
    by_attempt: dict[tuple[int, int], set[str]] = defaultdict(set)
    for p in predictions:
        by_attempt[p["scored_at_ms"], p["source"]["partition"]].add(p["trip_id"])
    redelivered = set()
    for (at, partition), trip_ids in by_attempt.items():
        again = {t for t in trip_ids if any(q["scored_at_ms"] > at for q in by_trip[t])}
        assert not again or again == trip_ids, f"attempt scored at {at}, partition {partition}: only {sorted(again)} of {sorted(trip_ids)} came again"
        if again:
            redelivered.add(at)
    counts = {
        "trips": len(good),
        "extra_predictions": sum(len(c) - 1 for c in by_trip.values()),
        "trips_redelivered": sum(len(c) > 1 for c in by_trip.values()),
        "attempts_redelivered": len(redelivered),
        "fare_changed_on_redelivery": sum(len({p["fare"] for p in c}) > 1 for c in by_trip.values()),
        "dead_lettered": len(bad),
        "extra_dead_letters": sum(len(c) - 1 for c in letters.values()),
    }
    print(f"\n[exactly-once] {counts}", flush=True)
    if not redelivery_possible:
        duplicated = {t: [(p["scored_at_ms"], p["source"]) for p in c] for t, c in by_trip.items() if len(c) > 1}
        duplicated.update({k: [(d["failed_at"], d["source"]) for d in c] for k, c in letters.items() if len(c) > 1})
        assert not duplicated, f"nothing in this test fails a batch, yet messages were processed more than once: {duplicated}"
    return counts


def test_produced_trips_trigger_a_run_that_scores_the_valid_and_dead_letters_the_rest(stream_stack, clean_rows, kafka_broker):
    prefix = f"dag-{uuid.uuid4().hex[:6]}"
    outputs = Outputs(kafka_broker)
    messages, good, bad = messages_for(prefix, clean_rows[300:330], bad={3: "not-json", 11: "missing-field", 20: "negative-miles"}, legacy={5, 6, 7})
    runs_before = len(stream_stack.dag_runs(DAG_ID))
    started = time.monotonic()
    placed = produce(kafka_broker, messages)
    predictions, dead = wait_for_outputs(stream_stack, outputs, prefix, good, bad, placed)
    print(f"\n[timing] 30 messages -> every prediction published and committed: {time.monotonic() - started:.1f} s", flush=True)
    check_exactly_once(predictions, dead, good, bad, placed, redelivery_possible=False)
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
    placed = produce(kafka_broker, first)
    restart_broker()  # a run publishing or committing meanwhile fails, and its batch is processed again
    placed.update(produce(kafka_broker, second))
    predictions, dead = wait_for_outputs(stream_stack, outputs, prefix, good1 | good2, bad1 | bad2, placed)
    check_exactly_once(predictions, dead, good1 | good2, bad1 | bad2, placed, redelivery_possible=True)


def test_trips_sent_while_airflow_is_down_are_scored_after_it_comes_back(stream_stack, clean_rows, kafka_broker):
    prefix = f"dag-{uuid.uuid4().hex[:6]}"
    outputs = Outputs(kafka_broker)
    messages, good, bad = messages_for(prefix, clean_rows[380:400], bad={7: "missing-field"}, legacy={2})
    stream_stack.stop()
    placed = produce(kafka_broker, messages)
    time.sleep(2)
    assert not outputs.read(topics.PREDICTIONS, prefix), "nothing may score while Airflow is down"
    stream_stack.start()
    predictions, dead = wait_for_outputs(stream_stack, outputs, prefix, good, bad, placed)
    # Airflow was down before these messages were produced: no attempt saw them before the restart.
    check_exactly_once(predictions, dead, good, bad, placed, redelivery_possible=False)


def test_every_socket_the_stack_listens_on_is_loopback(stream_stack):
    sockets = stream_stack.listening_sockets()
    assert sockets, "found no listening socket of the stack's processes (ss -ltnp)"
    assert all(s["address"] == "127.0.0.1" for s in sockets), sockets
    assert any(s["port"] == stream_stack.port for s in sockets)

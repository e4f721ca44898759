"""Benchmark the Kafka streaming path against its floor, measured in the same run.

1. Throughput over the same N pre-produced messages (each read from the start by a fresh group):
   - bare loop: a confluent-kafka consumer, `json.loads`, nothing else (the floor of reading);
   - bare scoring loop: the same, plus the same champion scoring (`FareService.predict`) in
     batches of 500: what reading + scoring costs with none of the pipeline's guarantees;
   - the pipeline: `batch.process_pending` in batches of 500 (parse, row checks (vectorized; GX with TAXI_STREAM_GX=1), score,
     Feast push, publish predictions/features/dead letters, flush, commit), warm process.
2. Produce -> prediction published latency at `--rate` messages/s for `--seconds`:
   - warm loop: `process_pending` called back to back in this process (what a long-running
     consumer of the same code gives);
   - through Airflow: the taxi_stream DAG woken by the Kafka shared-stream trigger (the real
     path), with a live stack (api-server, scheduler, DAG processor, triggerer).
   Latency per trip = `published_at_ms - produced_at_ms` from the prediction record (the raw
   message's Kafka timestamp to the moment the batch's publish was acknowledged).

Needs a champion in the MLflow registry (`make run`). Starts its own redis-server (warmed),
Kafka broker and Airflow stack on free 127.0.0.1 ports with state in a temp dir, and stops them.
Usage: `make bench-streaming` (BENCH_ARGS="--rate 20 --seconds 60 --messages 2000").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "tests")]

from confluent_kafka import TopicPartition  # noqa: E402

from chicago_taxi.core import config  # noqa: E402
from chicago_taxi.ingest import topics  # noqa: E402
from chicago_taxi.ingest.replay import chicago_message  # noqa: E402
from chicago_taxi.streaming import batch, kafka_io  # noqa: E402
from fixtures.airflow import AirflowStack  # noqa: E402  (the test suite's stack and broker helpers, reused)
from fixtures.kafka import KafkaBroker  # noqa: E402
from fixtures.streams import _consumer, end_offsets, environ, new_group, produce, read_since, trigger_connection, warmed_redis  # noqa: E402


def clean_rows() -> list[dict]:
    trips = pd.read_csv(ROOT / "data" / "chicago_taxi_trips.csv")
    ok = (
        trips.fare.between(3.25, 300)
        & trips.trip_seconds.between(60, 6 * 3600)
        & trips.trip_miles.between(0, 100)
        & (trips.trip_miles / (trips.trip_seconds / 3600) <= 80)
        & trips.payment_type.notna()
    )
    # Only trips that started before the data clock: a later one is dead-lettered, never predicted,
    # and a latency run would wait for its prediction until it times out.
    from chicago_taxi.core.config import load_settings

    clock = load_settings().data_time(datetime.now(UTC)).replace(tzinfo=None)
    ok &= trips.trip_start_timestamp < int(clock.replace(tzinfo=UTC).timestamp())
    return trips[ok].to_dict("records")


def messages(rows: list[dict], prefix: str, n: int) -> list[tuple[str, bytes]]:
    return [(f"{prefix}-{i:05d}", json.dumps(chicago_message(rows[i % len(rows)], f"{prefix}-{i:05d}")).encode()) for i in range(n)]


def pct(values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    return (
        {"n": len(a), "p50": round(float(np.percentile(a, 50)), 1), "p95": round(float(np.percentile(a, 95)), 1), "max": round(float(a.max()), 1)}
        if len(a)
        else {"n": 0}
    )


# ---------------------------------------------------------------- throughput
def bare_loop(bootstrap: str, start: dict[int, int], n: int, scorer=None, batch: int = 500) -> float:
    """Messages/s of a plain consumer from `start` until n messages, json.loads each, scoring
    every `batch` messages with `scorer` when given."""
    consumer = _consumer(bootstrap)
    consumer.assign([TopicPartition(topics.RAW_TRIPS, p, o) for p, o in start.items()])
    pending, seen = [], 0
    started = time.perf_counter()
    try:
        while seen < n:
            for msg in consumer.consume(500, timeout=1.0):
                if msg.error():
                    continue
                pending.append(json.loads(msg.value()))
                seen += 1
            if scorer and (len(pending) >= batch or seen >= n):
                scorer(pending)
                pending = []
    finally:
        consumer.close()
    return n / (time.perf_counter() - started)


def pipeline_rate(env: dict, group: str, n: int) -> tuple[float, dict]:
    done, seconds = 0, {}
    started = time.perf_counter()
    with environ(env, TAXI_STREAM_GROUP=group):
        while done < n:
            result = batch.process_pending(max_messages=500, idle_seconds=0.2)
            if result.consumed == 0:
                break
            done += result.consumed
            for stage, value in result.seconds.items():
                seconds[stage] = seconds.get(stage, 0.0) + value
    return done / (time.perf_counter() - started), {k: round(v, 2) for k, v in seconds.items()}


def group_at(bootstrap: str, offsets: dict[int, int]) -> str:
    """A fresh group whose committed offsets are `offsets`."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    consumer = _consumer(bootstrap, group)
    try:
        consumer.commit(offsets=[TopicPartition(topics.RAW_TRIPS, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()
    return group


# ---------------------------------------------------------------- latency
def produce_at_rate(bootstrap: str, batch: list[tuple[str, bytes]], rate: float) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "log_level": 0})
    started = time.perf_counter()
    for i, (key, value) in enumerate(batch):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        producer.produce(topics.RAW_TRIPS, key=key.encode(), value=value)
        producer.poll(0)
    producer.flush(30)


def wait_predictions(bootstrap: str, start: dict[int, int], prefix: str, n: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    found: dict[str, dict] = {}
    while time.monotonic() < deadline and len(found) < n:
        for record in read_since(bootstrap, topics.PREDICTIONS, start):
            if str(record.get("trip_id", "")).startswith(prefix):
                found.setdefault(record["trip_id"], record)  # the first publication of each trip
        time.sleep(1)
    return list(found.values())


def latencies(records: list[dict]) -> list[float]:
    return [r["published_at_ms"] - r["produced_at_ms"] for r in records if r.get("produced_at_ms") and r.get("published_at_ms")]


def warm_loop_latency(env: dict, bootstrap: str, rows: list[dict], rate: float, seconds: int) -> dict:
    prefix = f"warm-{uuid.uuid4().hex[:6]}"
    planned = messages(rows, prefix, int(rate * seconds))
    group = new_group(bootstrap, "bench-warm")
    start = end_offsets(bootstrap, topics.PREDICTIONS)
    producer = threading.Thread(target=produce_at_rate, args=(bootstrap, planned, rate))
    producer.start()
    with environ(env, TAXI_STREAM_GROUP=group):
        while producer.is_alive() or sum(kafka_io.pending_messages(bootstrap, group).values()):
            batch.process_pending(max_messages=500, idle_seconds=0.05)
    producer.join()
    return pct(latencies(wait_predictions(bootstrap, start, prefix, len(planned), 60)))


def first_trip_timeline(stack, runs: list[dict], found: list[dict], log_folder: str) -> dict:
    """Where the first trip's wait went, in seconds after it was produced: the run woken by it
    queued, its task started, that task's first prediction published."""
    if not runs or not found:
        return {}
    produced = min(r["produced_at_ms"] for r in found if r.get("produced_at_ms")) / 1000
    first_run = min(runs, key=lambda r: pd.Timestamp(r["queued_at"]))
    tis = stack.task_instances("taxi_stream", first_run["dag_run_id"])
    task_start = min((pd.Timestamp(t["start_date"]).timestamp() for t in tis if t.get("start_date")), default=float("nan"))
    # the task's own account of its start: its log file's first lines, seconds after the first trip
    for path in sorted(Path(log_folder).glob(f"dag_id=taxi_stream/run_id={first_run['dag_run_id']}/**/*.log"))[:1]:
        print("  first task's log, first lines (s after the first trip produced):", flush=True)
        for line in path.read_text(errors="replace").splitlines()[:14]:
            try:
                entry = json.loads(line)
                print(f"    {pd.Timestamp(entry['timestamp']).timestamp() - produced:7.2f}  {str(entry.get('event'))[:160]}", flush=True)
            except (ValueError, KeyError):
                print(f"    {line[:160]}", flush=True)
    published = min(r["published_at_ms"] for r in found if r.get("published_at_ms")) / 1000
    return {
        "run_queued": round(pd.Timestamp(first_run["queued_at"]).timestamp() - produced, 2),
        "task_started": round(task_start - produced, 2),
        "first_prediction_published": round(published - produced, 2),
    }


def airflow_latency(env: dict, bootstrap: str, rows: list[dict], rate: float, seconds: int, tmp: Path) -> tuple[dict, dict]:
    env = {
        **env,
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(tmp / "airflow-logs"),
        "TAXI_STREAM_GROUP": new_group(bootstrap, "bench-dag"),
    }
    env["AIRFLOW_CONN_TAXI_KAFKA_TRIGGER"] = trigger_connection(env, bootstrap, new_group(bootstrap, "bench-trigger"))
    stack = AirflowStack(env)
    stack.start()
    try:
        stack.wait_for_dag("taxi_stream")
        # a first run warms nothing (each run is a new task process), but lets the trigger join its group
        prefix = f"dag-{uuid.uuid4().hex[:6]}"
        planned = messages(rows, prefix, int(rate * seconds))
        start = end_offsets(bootstrap, topics.PREDICTIONS)
        produce_at_rate(bootstrap, planned, rate)
        found = wait_predictions(bootstrap, start, prefix, len(planned), 600)
        runs = stack.dag_runs("taxi_stream")
        durations = [
            (pd.Timestamp(r["end_date"]) - pd.Timestamp(r["start_date"])).total_seconds() for r in runs if r.get("end_date") and r.get("start_date")
        ]
        queued = [
            (pd.Timestamp(r["start_date"]) - pd.Timestamp(r["queued_at"])).total_seconds() for r in runs if r.get("queued_at") and r.get("start_date")
        ]
        # steady state: the trips produced once the first run had started scoring (its task start,
        # imports and model load are behind it)
        first_published = min((r["published_at_ms"] for r in found if r.get("published_at_ms")), default=0)
        steady = [r for r in found if (r.get("produced_at_ms") or 0) >= first_published]
        return pct(latencies(found)), {
            "first_trip_timeline_s": first_trip_timeline(stack, runs, found, env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]),
            "steady_state_ms": pct(latencies(steady)),
            "runs": len(runs),
            "run_seconds": pct([d * 1000 for d in durations]),
            "queued_to_start_ms": pct([q * 1000 for q in queued]),
            "stack_start_s": stack.start_seconds,
        }
    finally:
        stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages for the throughput comparison")
    parser.add_argument("--rate", type=float, default=20.0, help="messages/s for the latency runs")
    parser.add_argument("--seconds", type=int, default=60, help="length of each latency run")
    parser.add_argument("--skip-airflow", action="store_true", help="skip the latency run through Airflow")
    args = parser.parse_args()
    rows = clean_rows()
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as tmp_name:
        tmp = Path(tmp_name)
        broker = KafkaBroker(tmp / "kafka").start()
        try:
            topics.ensure_topics(broker.bootstrap, timeout=30)
            base = {k: v for k, v in os.environ.items()}
            base.update(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, TAXI_ONLINE_STORE="redis")
            with warmed_redis(base) as (env, _port):
                os.environ.update(env)
                print(f"broker {broker.bootstrap} (start {broker.start_seconds} s), redis 127.0.0.1:{env['REDIS_PORT']}", flush=True)
                # warm the process: model, Feast, GX (a first small batch)
                warm_group = new_group(broker.bootstrap, "bench-warmup")
                produce(broker.bootstrap, messages(rows, f"w{uuid.uuid4().hex[:4]}", 20))
                t0 = time.perf_counter()
                with environ(env, TAXI_STREAM_GROUP=warm_group):
                    batch.process_pending(idle_seconds=0.2)
                print(
                    f"cold first micro-batch in this process (imports, loads the champion: its numpy scorer bundle when it has one, "
                    f"else TensorFlow; GX too with TAXI_STREAM_GX=1): {time.perf_counter() - t0:.1f} s",
                    flush=True,
                )

                start = end_offsets(broker.bootstrap, topics.RAW_TRIPS)
                produce(broker.bootstrap, messages(rows, f"t{uuid.uuid4().hex[:4]}", args.messages))
                scorer = batch.default_scorer(config.load_settings())
                # The bare loops take well under a second: the best of three, so a slow first
                # connection or fetch does not flatter the pipeline's ratio.
                bare = max(bare_loop(broker.bootstrap, start, args.messages) for _ in range(3))
                bare_scoring = max(bare_loop(broker.bootstrap, start, args.messages, scorer) for _ in range(3))
                rate, stages = pipeline_rate(env, group_at(broker.bootstrap, start), args.messages)
                print("\nThroughput over the same messages (messages/s):")
                print("| path | msg/s | vs bare consume | vs bare consume + scoring |\n|---|---|---|---|")
                print(f"| bare confluent-kafka consume + json.loads (best of 3) | {bare:,.0f} | 1.00x | |")
                print(
                    f"| bare consume + the same champion scoring (batches of 500, best of 3) | {bare_scoring:,.0f} | {bare_scoring / bare:.3f}x | 1.00x |"
                )
                print(
                    f"| batch.process_pending (parse, row checks, score, push, publish, commit) | {rate:,.0f} | {rate / bare:.3f}x | {rate / bare_scoring:.2f}x |"
                )
                print(f"pipeline seconds per stage over {args.messages} messages: {stages}", flush=True)

                warm = warm_loop_latency(env, broker.bootstrap, rows, args.rate, args.seconds)
                print(f"\nproduce -> prediction published at {args.rate:g} msg/s for {args.seconds} s, warm loop (ms): {warm}", flush=True)
                if not args.skip_airflow:
                    dag, runs = airflow_latency(env, broker.bootstrap, rows, args.rate, args.seconds, tmp)
                    print(f"produce -> prediction published at {args.rate:g} msg/s for {args.seconds} s, through the taxi_stream DAG (ms): {dag}")
                    print(f"  DAG runs: {runs}", flush=True)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()

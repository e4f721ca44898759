"""Streaming micro-batches: drain what is pending on `taxi-raw-data`, score it, publish the results,
and only then commit. The Airflow task woken by the Kafka trigger calls `process_pending` once
per run (the trigger is only a wake-up: each run drains whatever is pending, see
/work/shared/reference/airflow-kafka-trigger-notes.md).

    from chicago_taxi.streaming import process_pending
    result = process_pending()            # -> BatchResult; result.as_dict() for the task's XCom/log
    python -m chicago_taxi.streaming drain --until-empty     # the same from a shell

One call, in this order (each stage timed in `BatchResult.seconds`):

1. consume: a consumer of its own group (`TAXI_STREAM_GROUP`, default `taxi-scoring`; never the
   trigger's group) is `assign()`ed every partition at the group's committed offset (the
   partition's low watermark when the group has none), so no group join/rebalance happens per
   run. It stops at `max_messages`, after `idle_seconds` without a message, when every partition
   reached the high watermark it had when the call started, or after `TAXI_STREAM_MAX_SECONDS`.
2. parse: `messages.parse_trip` (Chicago or legacy shape) on every message.
3. quality: the row-level ("quarantine") expectations of the Great Expectations raw suite
   (`expectations/gx/expectations/raw_trips.json`, the training gate's own file) on the parsed
   trips as one batch, in an ephemeral GX context (nothing written under expectations/). A row GX
   flags is rejected with the expectations it failed. Two deliberate differences from the
   training gate, because a micro-batch is not a training extract: the batch-level expectations
   (row count, null rates, dtypes) are skipped (meaningless on a few dozen individually parsed
   messages), and not-null is enforced only on the columns scoring needs
   (`messages.REQUIRED_COLUMNS`): `fare` and `payment_type` are training requirements, and the
   legacy shape has no payment type at all. After `parse_trip` (which already checks types and
   ranges from the same schema) the expectation that still catches rows is the implied speed.
   Cost measured on 2 cores: importing GX ~12-15 s once per process, then ~0.55 s per 60-row
   micro-batch. `TAXI_STREAM_GX=0` evaluates exactly the same expectations with pandas instead
   (same rows, same labels: a test checks both agree on the whole sample; ~0.03 s per batch).
4. score: the champion through `FareService.predict` (or an injected `scorer`, same signature),
   which reads the online store as it is *before* this batch's push. Scoring after the push
   would let an earlier trip of the batch read a row that a later trip of the batch pushed and
   that contains the earlier trip's own fare (the store is read "now", not as of each trip).
5. push: the statistics of the views fed by the Feast push source `company_stats_push`
   (`company_half_hourly_stats`), see "What is pushed" below.
6. publish, then flush and check every delivery report (any failure raises `PublishFailed`):
   - every rejected message -> `taxi-raw-data-dlq` (`messages.dead_letter_record`: payload
     verbatim, reason, errors per field, source topic/partition/offset), keyed by its trip_id when
     known, else by the message's key. Nothing is dropped silently;
   - when the batch has at least `TAXI_STREAM_ALERT_MIN_MESSAGES` (default 5) messages and the
     rejected share exceeds `TAXI_STREAM_MAX_BAD_SHARE` (default 0.2): one JSON event on
     `taxi-alerts` (kind `stream_bad_message_share`, share, threshold, counts, reasons, offsets
     per partition, group, time), keyed by the kind;
   - per valid trip, keyed by trip_id: its prediction on `taxi-predictions` (fare, model_version,
     features_defaulted, degraded, source partition/offset, the raw message's Kafka timestamp
     `produced_at_ms` and `scored_at_ms`/`published_at_ms`, for produce -> prediction latency) and
     its features on `taxi-features` (entities, each pushed view's row as of the trip, whether
     this batch pushed it).
7. commit: only after every publish is acknowledged, the next offset per consumed partition,
   synchronously (`CommitFailed` if the broker refuses).

Delivery: at least once. A crash or failure anywhere before the commit leaves the offsets where
they were, so the next run processes the same messages again and publishes them again.
Consumers of `taxi-predictions`, `taxi-features` and the DLQ must de-duplicate: predictions and
features by `trip_id` (keep the latest), dead letters by `source` (topic, partition, offset).
Within one batch a trip_id seen twice is scored once (the later message wins).

What is pushed (and why it is correct)
---------------------------------------
`company_half_hourly_stats` holds, for a company at a half-hour boundary B, the trips and mean
fare of its trips started in [B - 1 day, B) (`features.compute_view`); training joins each trip
with the latest row at or before its start (point in time, within the 1-day TTL). So the value
"as of a trip" never includes the trip itself or anything of its own half hour. For every valid
trip this module computes exactly that row, with `compute_view` itself, over the union (by
trip_id) of
- the batch history: `TAXI_STREAM_HISTORY` (default the raw source `Settings.source_csv` that the
  taxi_features DAG aggregates into the offline store), filtered by the same quarantine
  expectations as the training gate, each row with the producer's stable id `trip-<row>`; a test
  checks the result equals the offline store's rows; and
- every trip the stream has already accepted: a small stream log kept beside the online store
  (Redis: `chicago_taxi:stream:*` keys; SQLite online store: `stream_log.db` next to it), keyed
  by trip_id, so a re-delivered message never counts twice, trimmed to
  `TAXI_STREAM_LOG_RETENTION_DAYS` (default 7, the raw topic's retention).
A replayed trip of the sample (`trip-<row>`) is therefore not counted twice; a trip the batch
history does not have (a new id) is added to its company's later rows. Per company, the newest
such row is pushed (`store.push`) only when it is newer than the row the online store holds: Feast's
Redis store ignores older or same-timestamp writes and its SQLite store would overwrite newer
ones, so this check makes both behave alike and keeps materialized rows from being replaced by
older ones. Because the pushed row covers trips *before* the trip's half hour, a trip's own fare
reaches the online store with the next push of its company from a later half hour (or with
the next offline rebuild + materialization). Trips without a fare are scored but feed no
statistic. Known limits: a row already stored for boundary B is not rewritten when a late trip
of [B - 1 day, B) arrives (same timestamp); the next boundary's row includes it. And the
half-hourly materialization writes newer rows computed from the offline store, which holds only
the batch history: until the offline store also takes in streamed trips (from `taxi-features` or
the stream log), a materialized row does not count trips that only the stream has seen.

Failures
--------
- Broker down or unknown: `topics.BrokerUnavailable` naming the bootstrap address, nothing
  committed (the Airflow task fails and retries).
- Online store (Redis) down: scoring still answers (`FareService` degrades to the training
  defaults, `"degraded": true`), but the push then fails with `features.OnlineStoreUnavailable`
  naming the address, before anything is published or committed. The messages stay pending and
  the retry processes them once Redis is back, push included, instead of committing trips whose
  feature updates would be lost (the batch path does not restore streamed trips). Predictions
  flagged degraded are published only if Redis fails for the read but answers the push.
- A publish that the broker does not acknowledge: `PublishFailed`, nothing committed.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from chicago_taxi import schema
from chicago_taxi.config import Settings, env_bool, env_float, load_settings
from chicago_taxi.messages import REQUIRED_COLUMNS, TRIP_ID, InvalidMessage, dead_letter_record, parse_trip
from chicago_taxi.topics import ALERTS, FEATURES, PREDICTIONS, RAW_TRIPS, RAW_TRIPS_DLQ, BrokerUnavailable, bootstrap_servers

log = logging.getLogger(__name__)

PUSH_SOURCE = "company_stats_push"
DEFAULT_GROUP = "taxi-scoring"
ALERT_KIND = "stream_bad_message_share"
QUALITY_REASON = "failed quality expectations"
Scorer = Callable[[list[dict]], list[dict]]


class PublishFailed(RuntimeError):
    """Some results were not acknowledged by the broker: nothing was committed."""


class CommitFailed(RuntimeError):
    """The results were published but the offsets could not be committed (they will be redelivered)."""


# ---------------------------------------------------------------- configuration
@dataclass(frozen=True)
class StreamConfig:
    """The streaming knobs (environment variables, read at each call)."""

    group: str = DEFAULT_GROUP  # TAXI_STREAM_GROUP
    use_gx: bool = True  # TAXI_STREAM_GX
    max_bad_share: float = 0.2  # TAXI_STREAM_MAX_BAD_SHARE
    alert_min_messages: int = 5  # TAXI_STREAM_ALERT_MIN_MESSAGES
    kafka_timeout: float = 10.0  # TAXI_STREAM_KAFKA_TIMEOUT: metadata, offsets, flush, commit
    max_seconds: float = 120.0  # TAXI_STREAM_MAX_SECONDS: hard bound of the consume loop
    history: str | None = None  # TAXI_STREAM_HISTORY: CSV/Parquet of past trips; "none" = none
    log_retention_days: float = 7.0  # TAXI_STREAM_LOG_RETENTION_DAYS

    @classmethod
    def from_env(cls) -> "StreamConfig":
        history = os.environ.get("TAXI_STREAM_HISTORY", "").strip() or None
        return cls(
            group=os.environ.get("TAXI_STREAM_GROUP", "").strip() or DEFAULT_GROUP,
            use_gx=env_bool("TAXI_STREAM_GX", True),
            max_bad_share=env_float("TAXI_STREAM_MAX_BAD_SHARE", 0.2),
            alert_min_messages=int(env_float("TAXI_STREAM_ALERT_MIN_MESSAGES", 5)),
            kafka_timeout=env_float("TAXI_STREAM_KAFKA_TIMEOUT", 10.0),
            max_seconds=env_float("TAXI_STREAM_MAX_SECONDS", 120.0),
            history=history,
            log_retention_days=env_float("TAXI_STREAM_LOG_RETENTION_DAYS", 7.0),
        )


# Per-process objects that are slow to build (GX context, Feast store, the champion, the producer).
_CACHE: dict[tuple, object] = {}
_CACHE_LOCK = threading.Lock()


def _cached(key: tuple, build: Callable[[], object]):
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


# ---------------------------------------------------------------- result
STAGES = ("consume", "parse", "quality", "score", "push", "publish", "commit")


@dataclass
class BatchResult:
    """What one call did: consumed = valid + dead_lettered + duplicates_in_batch. `offsets` maps
    partition -> {first, last, committed} (committed = the next offset to read, as committed by
    this call); `seconds` per stage plus `total`."""

    group: str
    bootstrap: str
    consumed: int = 0
    valid: int = 0
    dead_lettered: int = 0
    duplicates_in_batch: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    bad_share: float = 0.0
    alerts: int = 0
    pushed_rows: int = 0
    push_skipped_not_newer: int = 0
    predictions_published: int = 0
    features_published: int = 0
    degraded_predictions: int = 0
    model_version: str | None = None
    validator: str = "none"
    offsets: dict[int, dict[str, int]] = field(default_factory=dict)
    committed: bool = False
    seconds: dict[str, float] = field(default_factory=lambda: {stage: 0.0 for stage in STAGES})

    def as_dict(self) -> dict:
        result = asdict(self)
        result["offsets"] = {str(p): v for p, v in self.offsets.items()}
        return result

    def summary(self) -> str:
        stages = ", ".join(f"{k} {v:.3f}" for k, v in self.seconds.items())
        return (f"group {self.group} on {self.bootstrap}: consumed {self.consumed}, valid {self.valid}, dead-lettered {self.dead_lettered} "
                f"(bad share {self.bad_share:.1%}), alerts {self.alerts}, pushed {self.pushed_rows} row(s), predictions {self.predictions_published} "
                f"({self.degraded_predictions} degraded), committed {self.committed}; seconds: {stages}")


@dataclass
class _Record:
    partition: int
    offset: int
    key: str | None
    value: bytes | None
    timestamp_ms: int | None


# ---------------------------------------------------------------- Kafka helpers
def _consumer(bootstrap: str, group: str):
    from confluent_kafka import Consumer

    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "log_level": 0,  # a down broker is reported once, as BrokerUnavailable, not per retry
    })


def _partitions(consumer, bootstrap: str, topic: str, timeout: float) -> list[int]:
    from confluent_kafka import KafkaException

    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnavailable(f"Kafka broker at {bootstrap} did not answer within {timeout:g} s: {exc}") from exc
    meta = metadata.topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        problem = meta.error if meta is not None else "not in the metadata"
        raise BrokerUnavailable(f"topic {topic!r} is not available on the Kafka broker at {bootstrap} ({problem}); "
                                f"create the topics with `python -m chicago_taxi.topics create`")
    return sorted(meta.partitions)


def _positions(consumer, bootstrap: str, group: str, topic: str, partitions: list[int], timeout: float) -> dict[int, tuple[int, int, int | None]]:
    """Per partition: (start offset for this run, high watermark, committed offset or None)."""
    from confluent_kafka import KafkaException, TopicPartition

    deadline = time.monotonic() + timeout
    while True:
        try:
            committed = {tp.partition: tp.offset for tp in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout)}
            break
        except KafkaException as exc:
            # A group's first use (or a restarted broker) answers NOT_COORDINATOR /
            # COORDINATOR_LOAD_IN_PROGRESS while the offsets topic is being set up: retry.
            error = exc.args[0] if exc.args else None
            if error is None or not getattr(error, "retriable", lambda: False)() or time.monotonic() >= deadline:
                raise BrokerUnavailable(f"Kafka broker at {bootstrap}: reading the committed offsets of group {group!r} "
                                        f"on {topic} failed within {timeout:g} s: {exc}") from exc
            time.sleep(0.2)
    try:
        result = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            done = committed.get(p)
            done = done if done is not None and done >= 0 else None
            # No commit yet: from the beginning. A commit below the low watermark (retention
            # deleted those messages): from the low watermark.
            start = low if done is None else max(done, low)
            result[p] = (start, high, done)
        return result
    except KafkaException as exc:
        raise BrokerUnavailable(f"Kafka broker at {bootstrap}: reading the offsets of {topic} failed within {timeout:g} s: {exc}") from exc


def pending_messages(bootstrap: str | None = None, group: str | None = None, topic: str = RAW_TRIPS, timeout: float | None = None) -> dict[int, int]:
    """Messages of `topic` not yet committed by `group`, per partition (a cheap check for a DAG)."""
    config = StreamConfig.from_env()
    bootstrap = bootstrap or bootstrap_servers()
    group = group or config.group
    timeout = timeout or config.kafka_timeout
    consumer = _consumer(bootstrap, group)
    try:
        positions = _positions(consumer, bootstrap, group, topic, _partitions(consumer, bootstrap, topic, timeout), timeout)
        return {p: high - start for p, (start, high, _) in positions.items()}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str | None = None, group: str | None = None, topic: str = RAW_TRIPS, timeout: float = 10.0) -> dict[int, int | None]:
    """The group's committed offset per partition (None when it never committed one)."""
    bootstrap = bootstrap or bootstrap_servers()
    group = group or StreamConfig.from_env().group
    consumer = _consumer(bootstrap, group)
    try:
        positions = _positions(consumer, bootstrap, group, topic, _partitions(consumer, bootstrap, topic, timeout), timeout)
        return {p: done for p, (_, _, done) in positions.items()}
    finally:
        consumer.close()


def _consume(consumer, bootstrap: str, topic: str, positions: dict[int, tuple[int, int, int | None]], max_messages: int,
             idle_seconds: float, max_seconds: float, first_wait: float) -> list[_Record]:
    """Read from the start offsets until `max_messages`, every partition at its high watermark,
    `idle_seconds` without a message (`first_wait` for the first one: the watermarks say
    messages are there, a cold fetch must not end the run empty) or `max_seconds`."""
    from confluent_kafka import KafkaError, TopicPartition

    todo = {p: high for p, (start, high, _) in positions.items() if high > start}
    if not todo or max_messages <= 0:
        return []
    consumer.assign([TopicPartition(topic, p, positions[p][0]) for p in sorted(todo)])
    records: list[_Record] = []
    deadline = time.monotonic() + max_seconds
    last_message = time.monotonic()
    last_error = None
    while len(records) < max_messages and todo:
        now = time.monotonic()
        idle_limit = idle_seconds if records else max(idle_seconds, first_wait)
        if now - last_message >= idle_limit or now >= deadline:
            break
        msg = consumer.poll(max(0.05, min(0.5, idle_limit - (now - last_message))))
        if msg is None:
            continue
        if msg.error() is not None:
            error = msg.error()
            if error.code() == KafkaError._PARTITION_EOF:
                continue
            if error.fatal():
                raise BrokerUnavailable(f"Kafka consumer on {bootstrap} failed: {error}")
            last_error = error  # transient (broker restarting): librdkafka retries by itself
            log.warning("consumer of %s on %s: %s", topic, bootstrap, error)
            continue
        last_message = time.monotonic()
        key = msg.key()
        stamp_type, stamp = msg.timestamp()
        records.append(_Record(msg.partition(), msg.offset(), None if key is None else key.decode("utf-8", "replace"), msg.value(),
                               stamp if stamp_type != 0 and stamp >= 0 else None))
        if msg.offset() + 1 >= todo.get(msg.partition(), float("inf")):
            todo.pop(msg.partition(), None)
    if not records and last_error is not None:
        raise BrokerUnavailable(f"Kafka broker at {bootstrap}: no message could be read from {topic}: {last_error}")
    return records


class _Publisher:
    """One batch's publishing; every delivery report is checked before anything is committed.

    The idempotent producer is kept per process (its first flush costs ~0.5 s for the producer
    id); after a failed flush it is dropped, so the next call starts with an empty queue."""

    def __init__(self, bootstrap: str, timeout: float):
        from confluent_kafka import Producer

        self.bootstrap, self.timeout = bootstrap, timeout
        self._key = ("producer", bootstrap, timeout)
        self.producer = _cached(self._key, lambda: Producer({
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,  # acks=all, no duplicates from the producer's own retries
            "linger.ms": 5,
            "message.timeout.ms": int(timeout * 1000),
            "log_level": 0,
        }))
        self.failed: list[str] = []
        self.delivered = Counter()

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.failed.append(f"{msg.topic()} key {msg.key()!r}: {err}")
        else:
            self.delivered[msg.topic()] += 1

    def send(self, topic: str, key: str | None, value: dict) -> None:
        payload = json.dumps(value, default=_json_default).encode()
        while True:
            try:
                self.producer.produce(topic, key=None if key is None else key.encode(), value=payload, on_delivery=self._on_delivery)
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)

    def flush(self) -> None:
        remaining = self.producer.flush(self.timeout)
        if remaining:
            self.failed.append(f"{remaining} message(s) not acknowledged within {self.timeout:g} s")
        if self.failed:
            with _CACHE_LOCK:
                _CACHE.pop(self._key, None)
            self.producer.purge()
            raise PublishFailed(f"publishing to the Kafka broker at {self.bootstrap} failed for {len(self.failed)} message(s), "
                                f"offsets not committed: {self.failed[0]}")


def _commit(consumer, bootstrap: str, topic: str, offsets: dict[int, int], timeout: float) -> None:
    """Synchronous commit of the next offset to read per partition."""
    from confluent_kafka import KafkaException, TopicPartition

    try:
        result = consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in sorted(offsets.items())], asynchronous=False)
    except KafkaException as exc:
        raise CommitFailed(f"committing offsets {offsets} of {topic} on {bootstrap} failed (the results are published; "
                           f"the messages will be processed again): {exc}") from exc
    errors = [f"partition {tp.partition}: {tp.error}" for tp in result or [] if tp.error is not None]
    if errors:
        raise CommitFailed(f"committing offsets of {topic} on {bootstrap} failed: {'; '.join(errors)}")


def _json_default(value):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, (datetime, pd.Timestamp)):
        return _iso(value)
    return str(value)


def _iso(moment: datetime | pd.Timestamp) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_ms(ms: int | None) -> str | None:
    return None if ms is None else _iso(datetime.fromtimestamp(ms / 1000, timezone.utc))


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------- quality expectations
def quarantine_expectations(expectations_dir: Path, streaming: bool = True) -> list[dict]:
    """The row-level expectations of the committed raw suite; for streaming, not-null only on
    the columns scoring needs (see the module docstring)."""
    from chicago_taxi.validation import RAW_SUITE

    path = expectations_dir / "gx" / "expectations" / f"{RAW_SUITE}.json"
    suite = json.loads(path.read_text())
    chosen = []
    for exp in suite["expectations"]:
        if (exp.get("meta") or {}).get("severity") != "quarantine":
            continue
        if streaming and exp["type"] == "expect_column_values_to_not_be_null" and exp["kwargs"].get("column") not in REQUIRED_COLUMNS:
            continue
        chosen.append({"type": exp["type"], "kwargs": dict(exp["kwargs"]), "meta": dict(exp.get("meta") or {})})
    return chosen


def _label(exp: dict) -> str:
    from chicago_taxi.validation import _expectation_label

    return _expectation_label(SimpleNamespace(type=exp["type"], kwargs=exp["kwargs"]))


def failed_rows_pandas(frame: pd.DataFrame, expectations: list[dict]) -> dict[int, list[str]]:
    """Row position -> labels of the expectations it fails, evaluated with pandas exactly as GX
    does for these three types (nulls pass "between" and "in set"; NaN counts as null)."""
    failed: dict[int, list[str]] = {}
    checked = _with_derived(frame)
    for exp in expectations:
        column, kind = exp["kwargs"]["column"], exp["type"]
        if column not in checked:
            continue
        values = checked[column]
        if kind == "expect_column_values_to_not_be_null":
            bad = values.isna()
        elif kind == "expect_column_values_to_be_between":
            numbers = pd.to_numeric(values, errors="coerce").astype(float)
            low, high = exp["kwargs"].get("min_value"), exp["kwargs"].get("max_value")
            bad = pd.Series(False, index=values.index)
            if low is not None:
                bad |= numbers < low
            if high is not None:
                bad |= numbers > high
            bad &= values.notna()
        elif kind == "expect_column_values_to_be_in_set":
            bad = values.notna() & ~values.isin(exp["kwargs"]["value_set"])
        else:
            raise ValueError(f"no pandas evaluation for {kind}; run with TAXI_STREAM_GX=1")
        label = _label(exp)
        for position in np.flatnonzero(bad.to_numpy()):
            failed.setdefault(int(position), []).append(label)
    return failed


def _with_derived(frame: pd.DataFrame) -> pd.DataFrame:
    from chicago_taxi.validation import add_derived_columns

    frame = frame.copy()
    for name in schema.RAW_COLUMN_NAMES:
        if name not in frame:
            frame[name] = None
    # Numeric columns of parsed trips can hold None: make them float (NaN) like a read CSV.
    for column in schema.COLUMNS:
        if column.kind != "string":
            frame[column.name] = pd.to_numeric(frame[column.name], errors="coerce").astype(float)
    return add_derived_columns(frame)


class _GxValidator:
    """The same expectations run by Great Expectations in an ephemeral context (nothing is written
    to expectations/: no data docs, no stored results), built once per process."""

    def __init__(self, expectations: list[dict]):
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        suite = gx.ExpectationSuite(name="raw_trips_stream")
        for exp in expectations:
            suite.add_expectation(ExpectationConfiguration(type=exp["type"], kwargs=exp["kwargs"], meta=exp["meta"]).to_domain_obj())
        suite = context.suites.add(suite)
        batch = context.data_sources.add_pandas("stream").add_dataframe_asset("trips").add_batch_definition_whole_dataframe("micro_batch")
        self.definition = context.validation_definitions.add(gx.ValidationDefinition(name="raw_trips_stream", data=batch, suite=suite))

    def failed_rows(self, frame: pd.DataFrame) -> dict[int, list[str]]:
        from chicago_taxi.validation import ROW_ID, _collect

        checked = _with_derived(frame)
        result = self.definition.run(batch_parameters={"dataframe": checked},
                                     result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW_ID]})
        broken = [r for r in result.results if r.exception_info and r.exception_info.get("raised_exception")]
        if broken:
            detail = broken[0].exception_info.get("exception_message")
            raise RuntimeError(f"Great Expectations could not evaluate {broken[0].expectation_config.type}: {detail}")
        _, failed = _collect(result.results)
        return failed


# ---------------------------------------------------------------- push: stream log + history
def pushed_views(store) -> list[schema.StoreView]:
    """The schema views the push source feeds, read from the applied Feast registry."""
    by_name = {v.name: v for v in schema.STORE_VIEWS}
    names = [fv.name for fv in store.list_feature_views() if getattr(fv, "stream_source", None) is not None
             and fv.stream_source.name == PUSH_SOURCE]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"push source {PUSH_SOURCE} feeds {unknown}, which schema.STORE_VIEWS does not define")
    if not names:
        raise ValueError(f"no feature view in the Feast registry is fed by the push source {PUSH_SOURCE}: run `feast apply` (the taxi_features DAG)")
    return [by_name[n] for n in names]


_LOG_COLUMNS = (TRIP_ID, schema.TIMESTAMP, schema.LABEL, "trip_miles", "trip_seconds", "company", "pickup_community_area")


def _stats_rows(trips: pd.DataFrame) -> pd.DataFrame:
    """The trips that can feed a statistic (a fare is needed), with the columns compute_view reads."""
    frame = trips.reindex(columns=list(_LOG_COLUMNS))
    frame = frame[frame[schema.LABEL].notna() & frame[schema.TIMESTAMP].notna()]
    return frame.reset_index(drop=True)


class _RedisStreamLog:
    """Accepted trips in Redis, per view entity value: a sorted set of trip_ids scored by start
    time (range reads, retention) and a hash trip_id -> JSON record."""

    PREFIX = "chicago_taxi:stream"

    def __init__(self, settings: Settings):
        from redis import Redis

        host, port = settings.redis_address.rsplit(":", 1)
        self.address = settings.redis_address
        self.client = Redis(host=host, port=int(port), socket_connect_timeout=settings.redis_timeout_seconds,
                            socket_timeout=settings.redis_timeout_seconds)

    def _keys(self, entity: str, value) -> tuple[str, str]:
        index = f"{self.PREFIX}:{entity}:{value}"
        return index, f"{index}:trips"

    def add(self, rows: pd.DataFrame, entities: list[str], retention_seconds: float) -> None:
        from chicago_taxi.features import entity_keys

        keys = entity_keys(rows)
        pipe = self.client.pipeline(transaction=False)
        touched = set()
        for i, row in enumerate(rows.to_dict("records")):
            record = json.dumps(row, default=_json_default)
            for entity in entities:
                index, data = self._keys(entity, keys[entity].iloc[i])
                pipe.zadd(index, {row[TRIP_ID]: float(row[schema.TIMESTAMP])})
                pipe.hset(data, row[TRIP_ID], record)
                touched.add((index, data))
        pipe.execute()
        for index, data in touched:
            newest = self.client.zrange(index, -1, -1, withscores=True)
            old = self.client.zrangebyscore(index, "-inf", f"({newest[0][1] - retention_seconds}") if newest else []
            if old:
                self.client.zrem(index, *old)
                self.client.hdel(data, *old)

    def read(self, entity: str, values: Iterable, start: float, end: float) -> pd.DataFrame:
        records = []
        for value in values:
            index, data = self._keys(entity, value)
            ids = self.client.zrangebyscore(index, start, end)
            if ids:
                records += [json.loads(r) for r in self.client.hmget(data, ids) if r is not None]
        return pd.DataFrame(records, columns=list(_LOG_COLUMNS))


class _SqliteStreamLog:
    """The same log in a SQLite file beside the SQLite online store (embedded default)."""

    def __init__(self, settings: Settings):
        import sqlite3

        settings.feast_dir.mkdir(parents=True, exist_ok=True)
        self.address = str(settings.feast_dir / "stream_log.db")
        self.db = sqlite3.connect(self.address, timeout=30)
        self.db.execute("CREATE TABLE IF NOT EXISTS stream_trips (trip_id TEXT PRIMARY KEY, ts REAL, company TEXT, "
                        "pickup_community_area INTEGER, record TEXT)")
        self.db.commit()

    def add(self, rows: pd.DataFrame, entities: list[str], retention_seconds: float) -> None:
        from chicago_taxi.features import entity_keys

        keys = entity_keys(rows)
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO stream_trips VALUES (?, ?, ?, ?, ?)",
                [(r[TRIP_ID], float(r[schema.TIMESTAMP]), str(keys["company"].iloc[i]), int(keys["pickup_community_area"].iloc[i]),
                  json.dumps(r, default=_json_default)) for i, r in enumerate(rows.to_dict("records"))])
            newest = self.db.execute("SELECT MAX(ts) FROM stream_trips").fetchone()[0]
            if newest is not None:
                self.db.execute("DELETE FROM stream_trips WHERE ts < ?", (newest - retention_seconds,))

    def read(self, entity: str, values: Iterable, start: float, end: float) -> pd.DataFrame:
        values = [str(v) if entity == "company" else int(v) for v in values]
        if not values:
            return pd.DataFrame(columns=list(_LOG_COLUMNS))
        marks = ",".join("?" * len(values))
        cursor = self.db.execute(f"SELECT record FROM stream_trips WHERE {entity} IN ({marks}) AND ts BETWEEN ? AND ?", (*values, start, end))
        return pd.DataFrame([json.loads(r) for (r,) in cursor], columns=list(_LOG_COLUMNS))


def _stream_log(settings: Settings):
    if settings.online_store == "redis":
        return _RedisStreamLog(settings)
    return _SqliteStreamLog(settings)


def load_history(path: Path | str, expectations_dir: Path) -> pd.DataFrame:
    """Past trips as the offline store sees them: the rows of the raw source that pass the
    training gate's row-level expectations, with the producer's ids (`trip-<row>`)."""
    from chicago_taxi.producer import trip_id_for

    path = Path(path)
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if TRIP_ID not in frame:
        frame.insert(0, TRIP_ID, [trip_id_for(i) for i in range(len(frame))])
    failed = failed_rows_pandas(frame, quarantine_expectations(expectations_dir, streaming=False))
    keep = np.ones(len(frame), dtype=bool)
    keep[list(failed)] = False
    return _stats_rows(frame[keep])


def _history(settings: Settings, config: StreamConfig) -> pd.DataFrame:
    source = config.history or str(settings.source_csv)
    if source.lower() in ("none", "off", "0"):
        return pd.DataFrame(columns=list(_LOG_COLUMNS))
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"TAXI_STREAM_HISTORY {path} does not exist (set it to 'none' to push statistics of streamed trips only)")
    stat = path.stat()
    return _cached(("history", str(path.resolve()), stat.st_mtime_ns, stat.st_size), lambda: load_history(path, settings.expectations_dir))


def stats_as_of(trips: pd.DataFrame, known: pd.DataFrame, view: schema.StoreView) -> pd.DataFrame:
    """For each trip (row order kept), the view's row as of the trip's start: the `compute_view`
    row at the latest boundary B <= start with B >= start - window, over `known` trips (which
    must already contain the new ones). Columns: the entity, event_timestamp (NaT when the view
    has no live row as of the trip) and the view's features."""
    from chicago_taxi.features import EVENT_TIMESTAMP, compute_view, entity_keys

    keys = entity_keys(trips)[view.entity].reset_index(drop=True)
    starts_ns = trips[schema.TIMESTAMP].astype("int64").to_numpy() * 1_000_000_000
    nat = np.iinfo(np.int64).min
    stamps_out = np.full(len(keys), nat, dtype=np.int64)
    values_out = {feature: np.full(len(keys), np.nan) for feature in view.features}
    if not known.empty:
        rows = compute_view(known, view)
        window_ns = view.window_minutes * 60 * 1_000_000_000
        key_values = keys.to_numpy()
        for entity, group in rows.groupby(view.entity, sort=False):
            mine = np.flatnonzero(key_values == entity)
            if len(mine) == 0:
                continue
            group = group.sort_values(EVENT_TIMESTAMP)
            stamps = pd.DatetimeIndex(group[EVENT_TIMESTAMP]).as_unit("ns").asi8
            at = starts_ns[mine]
            position = np.searchsorted(stamps, at, side="right") - 1
            live = position >= 0
            live[live] &= stamps[position[live]] >= at[live] - window_ns  # the row must still be inside its window
            chosen, position = mine[live], position[live]
            stamps_out[chosen] = stamps[position]
            for feature in view.features:
                values_out[feature][chosen] = group[feature].to_numpy(dtype=float)[position]
    out = pd.DataFrame({view.entity: keys, EVENT_TIMESTAMP: pd.Series(stamps_out.view("datetime64[ns]")).dt.tz_localize("UTC")})
    for feature in view.features:
        out[feature] = values_out[feature]
    return out


def _known_trips(batch: pd.DataFrame, eligible: pd.DataFrame, history: pd.DataFrame, stream_log, view: schema.StoreView) -> pd.DataFrame:
    """History + stream log + the batch's trips with a fare, for the batch's entities over the
    span the rows as of the batch's trips need."""
    from chicago_taxi.features import entity_keys

    span = 2 * view.window_minutes * 60  # rows within the window need trips within 2 windows
    start, end = float(batch[schema.TIMESTAMP].min()) - span, float(batch[schema.TIMESTAMP].max())
    values = entity_keys(batch)[view.entity].unique()
    parts = []
    if not history.empty:
        hist_keys = entity_keys(history)[view.entity]
        stamps = history[schema.TIMESTAMP].astype(float)
        parts.append(history[hist_keys.isin(values) & stamps.between(start, end)])
    parts.append(stream_log.read(view.entity, values, start, end))
    parts.append(eligible)
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=list(_LOG_COLUMNS))
    known = pd.concat(parts, ignore_index=True)
    # The same trip from several places (a replayed sample row, a redelivered message): once.
    return known.drop_duplicates(TRIP_ID, keep="last").reset_index(drop=True)


def _stored_timestamps(store, view: schema.StoreView, values: list) -> dict:
    feature = view.features[0]
    response = store.get_online_features(features=[f"{view.name}:{feature}"], entity_rows=[{view.entity: v} for v in values]).to_dict(
        include_event_timestamps=True)
    stamps = response.get(f"{feature}__ts", [None] * len(values))
    return {v: (None if s is None else pd.Timestamp(float(s), unit="s", tz="UTC")) for v, s in zip(values, stamps)}


@dataclass
class _PushOutcome:
    as_of: dict[str, pd.DataFrame]  # view name -> per-trip rows (stats_as_of)
    pushed_rows: int = 0
    skipped: int = 0
    pushed_keys: set = field(default_factory=set)  # (view, entity value, boundary) written


def push_features(trips: list[dict], settings: Settings, config: StreamConfig, store=None) -> _PushOutcome:
    """Record the batch in the stream log, compute each trip's statistics as of its start, and
    push per entity the newest row when it is newer than the stored one."""
    import sqlite3

    from redis.exceptions import RedisError

    from chicago_taxi.features import CREATED, EVENT_TIMESTAMP, OnlineStoreUnavailable, feature_store

    store = store if store is not None else _cached(("store", settings.online_store, settings.redis_address, str(settings.feast_dir)),
                                                     lambda: feature_store(settings))
    views = pushed_views(store)
    batch = pd.DataFrame.from_records(trips).reindex(columns=list(_LOG_COLUMNS))
    eligible = _stats_rows(batch)
    outcome = _PushOutcome(as_of={})
    address = settings.redis_address if settings.online_store == "redis" else str(settings.feast_dir / "online.db")
    try:
        stream_log = _stream_log(settings)
        if not eligible.empty:
            stream_log.add(eligible, [v.entity for v in views], config.log_retention_days * 86400)
        history = _history(settings, config)
        for view in views:
            known = _known_trips(batch, eligible, history, stream_log, view)
            rows = stats_as_of(batch, known, view)
            outcome.as_of[view.name] = rows
            live = rows.dropna(subset=[EVENT_TIMESTAMP])
            if live.empty:
                continue
            newest = live.sort_values(EVENT_TIMESTAMP).groupby(view.entity, sort=False).tail(1)
            stored = _stored_timestamps(store, view, newest[view.entity].tolist())
            newer = newest[[stored[v] is None or t > stored[v] for v, t in zip(newest[view.entity], newest[EVENT_TIMESTAMP])]]
            outcome.skipped += len(newest) - len(newer)
            if newer.empty:
                continue
            frame = newer[[view.entity, EVENT_TIMESTAMP, *view.features]].copy()
            for feature in view.features:
                frame[feature] = frame[feature].astype("int64" if "_trips_" in feature else "float32")
            frame[CREATED] = pd.Timestamp.now(tz="UTC")
            store.push(PUSH_SOURCE, frame.reset_index(drop=True))
            outcome.pushed_rows += len(frame)
            outcome.pushed_keys.update((view.name, v, t) for v, t in zip(frame[view.entity], frame[EVENT_TIMESTAMP]))
    except (RedisError, sqlite3.Error) as exc:
        raise OnlineStoreUnavailable(f"online store at {address} failed while pushing streamed features "
                                     f"({type(exc).__name__}: {exc}); nothing published or committed, the messages stay pending") from exc
    return outcome


# ---------------------------------------------------------------- scoring
def default_scorer(settings: Settings) -> Scorer:
    """The champion through one `FareService` per process (the model loads once)."""
    from chicago_taxi.fare_service import FareService

    key = ("scorer", settings.mlflow_tracking_uri, settings.model_name, settings.online_store, settings.redis_address, str(settings.feast_dir))
    service = _cached(key, lambda: FareService(settings))
    return service.predict


# ---------------------------------------------------------------- the micro-batch
def process_pending(settings: Settings | None = None, *, bootstrap: str | None = None, group: str | None = None,
                    max_messages: int = 500, idle_seconds: float = 1.0, scorer: Scorer | None = None, store=None) -> BatchResult:
    """Drain up to `max_messages` pending messages of taxi-raw-data for the group, publish the
    results, then commit. See the module docstring for the stages and guarantees."""
    total_started = time.perf_counter()
    config = StreamConfig.from_env()
    settings = settings or load_settings()
    bootstrap = bootstrap or bootstrap_servers()
    group = group or config.group
    result = BatchResult(group=group, bootstrap=bootstrap)
    timer = _Timer(result)

    consumer = _consumer(bootstrap, group)
    try:
        with timer("consume"):
            partitions = _partitions(consumer, bootstrap, RAW_TRIPS, config.kafka_timeout)
            positions = _positions(consumer, bootstrap, group, RAW_TRIPS, partitions, config.kafka_timeout)
            records = _consume(consumer, bootstrap, RAW_TRIPS, positions, max_messages, idle_seconds, config.max_seconds, config.kafka_timeout)
        result.consumed = len(records)
        if not records:
            log.info("nothing pending on %s for group %s at %s", RAW_TRIPS, group, bootstrap)
            result.seconds["total"] = round(time.perf_counter() - total_started, 4)
            return result

        with timer("parse"):
            valid, rejected = _parse(records)
        with timer("quality"):
            valid, quality_rejected, result.validator = _quality(valid, settings, config)
            rejected += quality_rejected
        valid, result.duplicates_in_batch = _dedup(valid)
        result.valid = len(valid)
        result.dead_lettered = len(rejected)
        result.dead_letter_reasons = dict(Counter(r[1].reason for r in rejected))
        result.bad_share = round(len(rejected) / len(records), 4)

        trips = [trip for trip, _ in valid]
        # Score first, then push: every trip is scored with the online state from before its
        # batch, so no trip reads a row its own fare went into (see the module docstring).
        with timer("score"):
            answers = (scorer or default_scorer(settings))(trips) if trips else []
        if len(answers) != len(trips):
            raise RuntimeError(f"the scorer returned {len(answers)} answers for {len(trips)} trips")
        scored_ms = _now_ms()
        with timer("push"):
            pushed = push_features(trips, settings, config, store) if trips else _PushOutcome(as_of={})
        result.pushed_rows, result.push_skipped_not_newer = pushed.pushed_rows, pushed.skipped

        with timer("publish"):
            publisher = _Publisher(bootstrap, config.kafka_timeout)
            for record, error in rejected:
                key = error.trip_id or record.key
                publisher.send(RAW_TRIPS_DLQ, key, dead_letter_record(record.value, error.reason, error.errors, RAW_TRIPS, record.partition,
                                                                       record.offset, trip_id=key))
            if len(records) >= config.alert_min_messages and result.bad_share > config.max_bad_share:
                publisher.send(ALERTS, ALERT_KIND, _alert(result, records, config))
                result.alerts = 1
                log.warning("bad message share %.1f%% over %.1f%% in %d messages: alert sent to %s", 100 * result.bad_share,
                            100 * config.max_bad_share, len(records), ALERTS)
            # per batch, not per trip: the entity keys and each view's rows as plain dicts
            keys = _batch_entity_keys(trips)
            as_of = {name: rows.to_dict("records") for name, rows in pushed.as_of.items()}
            for index, ((trip, record), answer) in enumerate(zip(valid, answers)):
                publisher.send(PREDICTIONS, trip[TRIP_ID], _prediction(trip, record, answer, group, scored_ms))
                publisher.send(FEATURES, trip[TRIP_ID], _features(trip, record, pushed, keys[index], {n: r[index] for n, r in as_of.items()}))
            publisher.flush()
        result.predictions_published = publisher.delivered[PREDICTIONS]
        result.features_published = publisher.delivered[FEATURES]
        result.degraded_predictions = sum(bool(a.get("degraded")) for a in answers)
        result.model_version = next((str(a["model_version"]) for a in answers if a.get("model_version") is not None), None)

        offsets = {}
        for record in records:
            span = result.offsets.setdefault(record.partition, {"first": record.offset, "last": record.offset})
            span["first"], span["last"] = min(span["first"], record.offset), max(span["last"], record.offset)
            offsets[record.partition] = max(offsets.get(record.partition, 0), record.offset + 1)
        with timer("commit"):
            _commit(consumer, bootstrap, RAW_TRIPS, offsets, config.kafka_timeout)
        for partition, next_offset in offsets.items():
            result.offsets[partition]["committed"] = next_offset
        result.committed = True
    finally:
        consumer.close()
    result.seconds["total"] = round(time.perf_counter() - total_started, 4)
    log.info(result.summary())
    return result


def drain(settings: Settings | None = None, *, bootstrap: str | None = None, group: str | None = None, max_messages: int = 500,
          idle_seconds: float = 1.0, linger_seconds: float | None = None, max_run_seconds: float | None = None,
          scorer: Scorer | None = None, store=None) -> dict:
    """What one Kafka-triggered DAG run does: `process_pending` again and again while messages
    keep coming; stop once nothing arrived for `linger_seconds` (TAXI_STREAM_LINGER_SECONDS,
    default 10) or after `max_run_seconds` (TAXI_STREAM_MAX_RUN_SECONDS, default 600; the next
    run goes on). Lingering keeps one warm task process on a steady stream instead of paying a
    new task's start (imports, model load: ~15 s) per wake-up. Each batch is committed before
    the next starts, so a failure part-way keeps the batches already done. Returns the totals
    and every batch's `as_dict()`."""
    linger = env_float("TAXI_STREAM_LINGER_SECONDS", 10.0) if linger_seconds is None else linger_seconds
    limit = env_float("TAXI_STREAM_MAX_RUN_SECONDS", 600.0) if max_run_seconds is None else max_run_seconds
    started = time.monotonic()
    batches: list[dict] = []
    last_message = time.monotonic()
    while time.monotonic() - started < limit:
        result = process_pending(settings, bootstrap=bootstrap, group=group, max_messages=max_messages, idle_seconds=idle_seconds,
                                 scorer=scorer, store=store)
        if result.consumed:
            batches.append(result.as_dict())
            last_message = time.monotonic()
        elif time.monotonic() - last_message >= linger:
            break
        else:
            time.sleep(0.2)  # nothing pending: look again shortly
    totals = {key: sum(b[key] for b in batches) for key in ("consumed", "valid", "dead_lettered", "predictions_published", "alerts")}
    more = time.monotonic() - started >= limit
    if more:
        log.warning("stopped after %.0f s with messages still arriving: the next run goes on", limit)
    log.info("drained %d batch(es) in %.1f s: %s", len(batches), time.monotonic() - started, totals)
    return {**totals, "batches": batches, "more_pending": more, "seconds": round(time.monotonic() - started, 3)}


class _Timer:
    def __init__(self, result: BatchResult):
        self.result = result

    def __call__(self, stage: str):
        timer = self

        class _Stage:
            def __enter__(self):
                self.started = time.perf_counter()

            def __exit__(self, *exc):
                timer.result.seconds[stage] = round(timer.result.seconds.get(stage, 0.0) + time.perf_counter() - self.started, 4)
                return False

        return _Stage()


def _parse(records: list[_Record]) -> tuple[list[tuple[dict, _Record]], list[tuple[_Record, InvalidMessage]]]:
    valid, rejected = [], []
    for record in records:
        try:
            valid.append((parse_trip(record.value), record))
        except InvalidMessage as exc:
            rejected.append((record, exc))
    return valid, rejected


def _quality(valid: list[tuple[dict, _Record]], settings: Settings, config: StreamConfig):
    if not valid:
        return valid, [], "none"
    expectations = _cached(("expectations", str(settings.expectations_dir)), lambda: quarantine_expectations(settings.expectations_dir))
    frame = pd.DataFrame.from_records([trip for trip, _ in valid])
    if config.use_gx:
        validator = _cached(("gx", str(settings.expectations_dir)), lambda: _GxValidator(expectations))
        failed, name = validator.failed_rows(frame), "great_expectations"
    else:
        failed, name = failed_rows_pandas(frame, expectations), "pandas"
    kept, rejected = [], []
    for position, (trip, record) in enumerate(valid):
        labels = failed.get(position)
        if labels:
            errors = [{"field": _label_field(label), "problem": f"failed {label}"} for label in labels]
            rejected.append((record, InvalidMessage(f"{QUALITY_REASON}: {'; '.join(labels)}", errors, trip_id=trip[TRIP_ID])))
        else:
            kept.append((trip, record))
    return kept, rejected, name


def _label_field(label: str) -> str:
    return label.split("(", 1)[1].split(")", 1)[0] if "(" in label else "(row)"


def _dedup(valid: list[tuple[dict, _Record]]) -> tuple[list[tuple[dict, _Record]], int]:
    latest = {trip[TRIP_ID]: position for position, (trip, _) in enumerate(valid)}
    kept = [pair for position, pair in enumerate(valid) if latest[pair[0][TRIP_ID]] == position]
    return kept, len(valid) - len(kept)


def _alert(result: BatchResult, records: list[_Record], config: StreamConfig) -> dict:
    spans = {}
    for record in records:
        low, high = spans.get(record.partition, (record.offset, record.offset))
        spans[record.partition] = (min(low, record.offset), max(high, record.offset))
    return {
        "kind": ALERT_KIND,
        "source": "chicago_taxi.streaming",
        "topic": RAW_TRIPS,
        "group": result.group,
        "bad_share": result.bad_share,
        "threshold": config.max_bad_share,
        "counts": {"consumed": result.consumed, "valid": result.valid, "dead_lettered": result.dead_lettered},
        "reasons": result.dead_letter_reasons,
        "offsets": {str(p): {"first": lo, "last": hi} for p, (lo, hi) in sorted(spans.items())},
        "dead_letter_topic": RAW_TRIPS_DLQ,
        "at": _iso(datetime.now(timezone.utc)),
    }


def _prediction(trip: dict, record: _Record, answer: dict, group: str, scored_ms: int) -> dict:
    return {
        "trip_id": trip[TRIP_ID],
        "fare": answer["fare"],
        "model_version": answer.get("model_version"),
        "features_defaulted": answer.get("features_defaulted", []),
        "degraded": bool(answer.get("degraded", False)),
        "trip_start_timestamp": trip.get(schema.TIMESTAMP),
        "source": {"topic": RAW_TRIPS, "partition": record.partition, "offset": record.offset, "group": group},
        "produced_at_ms": record.timestamp_ms,  # the raw message's Kafka timestamp
        "produced_at": _iso_ms(record.timestamp_ms),
        "scored_at_ms": scored_ms,
        "scored_at": _iso_ms(scored_ms),
        "published_at_ms": _now_ms(),
    }


def _batch_entity_keys(trips: list[dict]) -> list[dict]:
    from chicago_taxi.features import entity_keys

    return entity_keys(pd.DataFrame(trips)).to_dict("records") if trips else []


def _features(trip: dict, record: _Record, pushed: _PushOutcome, keys: dict, rows: dict[str, dict]) -> dict:
    """The features record of one trip: `keys` its entity keys, `rows` each pushed view's row as
    of the trip (view name -> column -> value)."""
    from chicago_taxi.features import EVENT_TIMESTAMP

    views = {}
    for view in schema.STORE_VIEWS:
        row = rows.get(view.name)
        if row is None:
            continue
        as_of = row[EVENT_TIMESTAMP]
        missing = as_of is None or pd.isna(as_of)
        views[view.name] = {
            "entity": {view.entity: row[view.entity] if isinstance(row[view.entity], str) else _json_default(row[view.entity])},
            "as_of": None if missing else _iso(as_of),
            "values": None if missing else {f: int(row[f]) if "_trips_" in f else _json_default(row[f]) for f in view.features},
            "pushed": not missing and (view.name, row[view.entity], as_of) in pushed.pushed_keys,
        }
    return {
        "trip_id": trip[TRIP_ID],
        "trip_start_timestamp": trip.get(schema.TIMESTAMP),
        "entities": {"pickup_community_area": int(keys["pickup_community_area"]), "company": str(keys["company"])},
        "feature_views": views,
        "source": {"topic": RAW_TRIPS, "partition": record.partition, "offset": record.offset},
        "produced_at_ms": record.timestamp_ms,
        "published_at_ms": _now_ms(),
    }


# ---------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chicago_taxi.streaming", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["drain", "pending"])
    parser.add_argument("--bootstrap", default=None, help="broker address (default $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")
    parser.add_argument("--group", default=None, help=f"consumer group (default $TAXI_STREAM_GROUP or {DEFAULT_GROUP})")
    parser.add_argument("--max-messages", type=int, default=500)
    parser.add_argument("--idle-seconds", type=float, default=1.0)
    parser.add_argument("--until-empty", action="store_true", help="repeat until nothing arrived for --linger seconds")
    parser.add_argument("--linger", type=float, default=0.0, help="with --until-empty: seconds to wait for more messages (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    try:
        if args.command == "pending":
            print(json.dumps(pending_messages(args.bootstrap, args.group)))
            return 0
        if args.until_empty:
            print(json.dumps(drain(bootstrap=args.bootstrap, group=args.group, max_messages=args.max_messages, idle_seconds=args.idle_seconds,
                                   linger_seconds=args.linger)))
        else:
            result = process_pending(bootstrap=args.bootstrap, group=args.group, max_messages=args.max_messages, idle_seconds=args.idle_seconds)
            print(json.dumps(result.as_dict()))
        return 0
    except (BrokerUnavailable, PublishFailed, CommitFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

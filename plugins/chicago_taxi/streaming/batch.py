"""Streaming micro-batches: drain what is pending on `taxi-raw-data`, score it, publish the results,
and only then commit. The Airflow task woken by the Kafka trigger calls `process_pending` once
per run (the trigger is only a wake-up: each run drains whatever is pending, see
the README's "Kafka-triggered runs").

    from chicago_taxi.streaming.batch import process_pending
    result = process_pending()            # -> BatchResult; result.as_dict() for the task's XCom/log
    python -m chicago_taxi.streaming drain --until-empty     # the same from a shell

One call, in this order (each stage timed in `BatchResult.seconds`):

1. consume: a consumer of its own group (`TAXI_STREAM_GROUP`, default `taxi-scoring`; never the
   trigger's group) is `assign()`ed every partition at the group's committed offset (the
   partition's low watermark when the group has none), so no group join/rebalance happens per
   run. It stops at `max_messages`, after `idle_seconds` without a message, when every partition
   reached the high watermark it had when the call started, or after `TAXI_STREAM_MAX_SECONDS`.
2. parse: `ingest.messages.parse_trip` (Chicago or legacy shape) on every message; any
   exception it raises dead-letters that message only.
3. quality: the row-level ("quarantine") expectations of the Great Expectations raw suite
   (`expectations/gx/expectations/raw_trips.json`, the training gate's own file) on the parsed
   trips as one batch, in an ephemeral GX context (nothing written under expectations/). A row GX
   flags is rejected with the expectations it failed. Deliberate differences from the training
   gate, because a micro-batch is not a training extract (`quality.rows`): the batch-level
   expectations (row count, null rates, dtypes) are skipped (meaningless on a few dozen
   individually parsed messages); not-null is enforced only on the columns scoring needs
   (`messages.REQUIRED_COLUMNS`: the legacy shape has no payment type at all); the label's
   expectations are skipped (scoring never reads the fare); duplicates are stage 4's. After
   `parse_trip` (which already checks types and ranges from the same schema) the expectations
   that still catch rows are the data clock (no trip starts after the data time,
   `Settings.data_time`, plus `TAXI_STREAM_FUTURE_TOLERANCE_MINUTES`, default 60: one
   future-dated trip would otherwise move every trailing window and trim the stream log) and an
   hour, weekday or month that disagrees with the start time. Dirty model inputs (zero seconds or
   miles, an implausible speed, coordinates outside Chicago) are not rejected: the transform
   graph repairs them and the trip is scored. The expectations are evaluated vectorized with
   pandas by default (`quality.rows.failed_rows_pandas`: the same rows and labels as GX, a test
   checks both agree on the whole sample; ~0.03 s per batch); `TAXI_STREAM_GX=1` runs GX itself
   (importing GX costs ~12-15 s once per process on 2 cores, then ~0.3-0.55 s per batch).
4. dedup, by content: the sha256 of each parsed trip (`messages.trip_fingerprint`) against the
   fingerprints the stream log remembers for the trip_ids it accepted before
   (`features.stream_log`) and against the batch's earlier messages. The same content again is a
   redelivery: scored again (within one batch, once: the later message wins). Other content
   under a known trip_id is dead-lettered ("trip_id already seen with different content"): the
   first content stays the trip's.
5. score: the champion through `FareService.predict` (or an injected `scorer`, same signature),
   which reads the online store as it is *before* this batch's push. With A/B on
   (config/monitoring.yaml, TAXI_AB_MODE) the same call scores the challenger too: in shadow, or
   answering a share of trips by trip id with the champion in shadow (see `serving.fare_service`). Scoring after the push
   would let an earlier trip of the batch read a row that a later trip of the batch pushed and
   that contains the earlier trip's own fare (the store is read "now", not as of each trip).
6. push: the statistics of the views fed by the Feast push source `company_stats_push`
   (`company_half_hourly_stats`): `features.push`, over the history and the stream log
   of `features.stream_log` (why each row is exactly what training would join: see those modules);
   then the stream log remembers the fingerprints of the batch's trips.
7. publish, then flush and check every delivery report (any failure raises `PublishFailed`):
   - every rejected message -> `taxi-raw-data-dlq` (`messages.dead_letter_record`: payload
     verbatim, reason, errors per field, source topic/partition/offset), keyed by its trip_id when
     known, else by the message's key. Nothing is dropped silently;
   - when the batch has at least `TAXI_STREAM_ALERT_MIN_MESSAGES` (default 5) messages and the
     rejected share exceeds `TAXI_STREAM_MAX_BAD_SHARE` (default 0.2): one JSON event on
     `taxi-alerts` (kind `stream_bad_message_share`, share, threshold, counts, reasons, offsets
     per partition, group, time), keyed by the kind;
   - per valid trip, keyed by trip_id: its prediction on `taxi-predictions`
     (`monitoring.prediction_log.prediction_records`, source kind "stream": fare, model name and
     version, variant, features_defaulted, degraded, the inputs and store features used, source
     partition/offset, the raw message's Kafka timestamp `produced_at_ms` and
     `scored_at_ms`/`published_at_ms`, for produce -> prediction latency), followed by its shadow
     prediction when A/B is on (`variant` "shadow", `served` false), and its features on
     `taxi-features` (entities, each pushed view's row as of the trip, whether this batch pushed it).
8. commit: only after every publish is acknowledged, the next offset per consumed partition,
   synchronously (`CommitFailed` if the broker refuses).

Scale-out: `TAXI_STREAM_SCORERS` scorers side by side, each on its own partition set
(`partitions`, `scorer_partitions`; the taxi_stream DAG maps its drain over them). They share the
group's committed offsets (per partition), the stream log and the online store; the push stage
(stream log, statistics, Feast push) runs under the stream log's lock, so parallel scorers push
exactly what sequential batches would.

Delivery: at least once. A crash or failure anywhere before the commit leaves the offsets where
they were, so the next run processes the same messages again and publishes them again.
Consumers of `taxi-predictions`, `taxi-features` and the DLQ must de-duplicate: predictions and
features by `trip_id` (keep the latest), dead letters by `source` (topic, partition, offset).
Within one batch a trip_id seen twice with the same content is scored once (the later message
wins); every other consumed message ends as one prediction or one dead letter.

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
- Anything else a stage (quality, score, push) raises is taken for a message it cannot process
  (a poison message), not an outage (`is_outage`): the stage is run again on halves of the
  batch, and so on down to single messages (`isolate_failures`), so each message it raises on
  alone is dead-lettered with the exception as its reason and the rest goes on and commits.
  Halves interleave (even and odd positions), so a burst of poison messages is spread over both.
  When the stage raises for every message on its own, or for the first
  `SYSTEMIC_FAILURES` it isolated while no part passed, the stage itself is broken (a bug, a
  missing model or registry): the batch fails with the first error, uncommitted, and is
  retried. A batch holding a single poison message is therefore retried until another message
  joins it. Likewise a trip whose prediction or features record cannot be built is
  dead-lettered before anything is sent. A message dead-lettered by the push or the publish
  stage may already be in the stream log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.core.config import Settings, StreamConfig, load_settings
from chicago_taxi.core.jsonable import now_ms
from chicago_taxi.core.process_cache import cached
from chicago_taxi.features.push import PushOutcome, push_features
from chicago_taxi.features.stream_log import history_for, open_stream_log
from chicago_taxi.ingest.messages import TRIP_ID, InvalidMessage, dead_letter_record, parse_trip, trip_fingerprint
from chicago_taxi.ingest.topics import ALERTS, FEATURES, PREDICTIONS, RAW_TRIPS, RAW_TRIPS_DLQ, BrokerUnavailable, bootstrap_servers
from chicago_taxi.quality.rows import GxRowValidator, failed_rows_pandas, quarantine_expectations
from chicago_taxi.streaming.kafka_io import (
    CommitFailed,
    Record,
    commit,
    consume,
    consumer_for,
    offset_gaps,
    partition_set,
    partitions_of,
    positions_of,
)
from chicago_taxi.streaming.publisher import Publisher, PublishFailed, encoded
from chicago_taxi.streaming.records import (
    ALERT_KIND,
    GAP_ALERT_KIND,
    alert_record,
    batch_entity_keys,
    features_record,
    gap_alert_record,
    prediction_records_of,
)

log = logging.getLogger(__name__)

QUALITY_REASON = "failed quality expectations"
PARSER_FAILURE = "the parser failed on this message"
CONFLICT_REASON = "trip_id already seen with different content"
# A poison message's dead letter: "<stage> failed on this message: <exception>".
POISON_REASON = "{stage} failed on this message"
# Isolated failures with no part of the batch passing, after which a stage counts as broken.
SYSTEMIC_FAILURES = 8
Scorer = Callable[[list[dict]], list[dict]]
Pair = tuple[dict, Record]  # a parsed trip and the message it came from
Rejected = tuple[Record, InvalidMessage]

STAGES = ("consume", "parse", "quality", "dedup", "score", "push", "publish", "commit")


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
    redelivered: int = 0  # trips accepted by an earlier batch, same content: scored again
    poisoned: int = 0  # dead-lettered because a stage raised on them alone (isolate_failures)
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    bad_share: float = 0.0
    alerts: int = 0
    expired_messages: int = 0  # deleted by retention before the group read them (alerted, never scored)
    pushed_rows: int = 0
    push_skipped_not_newer: int = 0
    predictions_published: int = 0  # served predictions (one per trip), acknowledged
    shadow_predictions_published: int = 0  # A/B shadow predictions, acknowledged (0 with A/B off)
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
        return (
            f"group {self.group} on {self.bootstrap}: consumed {self.consumed}, valid {self.valid}, dead-lettered {self.dead_lettered} "
            f"(bad share {self.bad_share:.1%}, poison {self.poisoned}), duplicates {self.duplicates_in_batch}, alerts {self.alerts}, pushed {self.pushed_rows} row(s), predictions {self.predictions_published} "
            f"({self.degraded_predictions} degraded, {self.shadow_predictions_published} shadow), committed {self.committed}; seconds: {stages}"
        )


def default_scorer(settings: Settings) -> Scorer:
    """The champion through one `FareService` per process (the model loads once)."""
    from chicago_taxi.serving.fare_service import FareService

    key = ("scorer", settings.mlflow_tracking_uri, settings.model_name, settings.online_store, settings.redis_address, str(settings.feast_dir))
    service = cached(key, lambda: FareService(settings))
    return service.predict


def warm_up(settings: Settings, bootstrap: str, config: StreamConfig, champion: bool = True) -> threading.Thread:
    """Start what the first batch will need in a thread of its own: the idempotent producer's
    connection and producer id (librdkafka's own threads: ~0.5 s of network round trips), the
    history of past trips and the champion (`default_scorer`), while the first consume talks to
    the broker. Everything is built through the process cache, so the batch finds it built (or
    waits for it); a failure here is only logged: the batch builds it again and reports it."""

    def build() -> None:
        try:
            Publisher(bootstrap, config.kafka_timeout).producer.poll(0)
            history_for(settings, config)
            if champion:
                default_scorer(settings)
        except Exception as exc:  # noqa: BLE001 - the batch itself raises it with its context
            log.info("warm-up did not finish (%s: %s); the batch builds what is missing", type(exc).__name__, exc)

    thread = threading.Thread(target=build, name="stream-warm-up", daemon=True)
    thread.start()
    return thread


def process_pending(
    settings: Settings | None = None,
    *,
    bootstrap: str | None = None,
    group: str | None = None,
    max_messages: int = 500,
    idle_seconds: float = 1.0,
    scorer: Scorer | None = None,
    store=None,
    partitions: list[int] | None = None,
) -> BatchResult:
    """Drain up to `max_messages` pending messages of taxi-raw-data for the group, publish the
    results, then commit. See the module docstring for the stages and guarantees. `partitions`:
    only these partitions of the topic (a scorer's set, `kafka_io.partition_set`); default all."""
    total_started = time.perf_counter()
    config = StreamConfig.from_env()
    settings = settings or load_settings()
    bootstrap = bootstrap or bootstrap_servers()
    group = group or config.group
    result = BatchResult(group=group, bootstrap=bootstrap)
    timer = _Timer(result)

    consumer = consumer_for(bootstrap, group)
    try:
        with timer("consume"):
            partitions = owned_partitions(partitions_of(consumer, bootstrap, RAW_TRIPS, config.kafka_timeout), partitions, bootstrap)
            positions = positions_of(consumer, bootstrap, group, RAW_TRIPS, partitions, config.kafka_timeout)
            records = consume(consumer, bootstrap, RAW_TRIPS, positions, max_messages, idle_seconds, config.max_seconds, config.kafka_timeout)
        result.consumed = len(records)
        gaps = offset_gaps(positions)
        result.expired_messages = sum(gaps.values())
        if gaps:
            log.warning("%d message(s) of %s expired before group %s read them: %s", result.expired_messages, RAW_TRIPS, group, gaps)
        if not records and not gaps:
            log.info("nothing pending on %s for group %s at %s", RAW_TRIPS, group, bootstrap)
            result.seconds["total"] = round(time.perf_counter() - total_started, 4)
            return result

        now = datetime.now(UTC)  # one data clock for the whole batch
        with timer("parse"):
            valid, rejected = _parse(records)
        with timer("quality"):
            valid, quality_rejected, result.validator = _quality(valid, settings, config, now)
            rejected += quality_rejected
        with timer("dedup"):
            known = _known_contents(settings, [trip[TRIP_ID] for trip, _ in valid]) if valid else {}
            valid, conflicts, result.duplicates_in_batch, result.redelivered, fingerprints = _by_content(valid, known)
            rejected += conflicts

        # Score first, then push: every trip is scored with the online state from before its
        # batch, so no trip reads a row its own fare went into (see the module docstring).
        with timer("score"):
            valid, answers, poisoned = _score(valid, scorer or default_scorer(settings)) if valid else ([], [], [])
            rejected += poisoned
        scored_ms = now_ms()
        with timer("push"):
            valid, answers, pushed, rows_as_of, poisoned = _push(valid, answers, settings, config, store)
            rejected += poisoned
        with timer("publish"):
            outgoing, poisoned = _outgoing(valid, answers, pushed, rows_as_of, group, scored_ms)
            rejected += poisoned
        with timer("push"):
            _remember_contents(settings, config, {trip_id: fingerprints[trip_id] for trip_id, _, _ in outgoing})
        result.pushed_rows, result.push_skipped_not_newer = pushed.pushed_rows, pushed.skipped
        result.valid = len(outgoing)
        result.dead_lettered = len(rejected)
        result.poisoned = sum(isinstance(error, PoisonMessage) for _, error in rejected)
        result.dead_letter_reasons = dict(Counter(r[1].reason for r in rejected))
        result.bad_share = round(len(rejected) / len(records), 4) if records else 0.0

        with timer("publish"):
            publisher = Publisher(bootstrap, config.kafka_timeout)
            if gaps:
                publisher.send(ALERTS, GAP_ALERT_KIND, gap_alert_record(gaps, positions, group))
                result.alerts += 1
            for record, error in rejected:
                key = error.trip_id or record.key
                publisher.send(
                    RAW_TRIPS_DLQ,
                    key,
                    dead_letter_record(record.value, error.reason, error.errors, RAW_TRIPS, record.partition, record.offset, trip_id=key),
                )
            if len(records) >= config.alert_min_messages and result.bad_share > config.max_bad_share:
                publisher.send(ALERTS, ALERT_KIND, alert_record(result, records, config))
                result.alerts += 1
                log.warning(
                    "bad message share %.1f%% over %.1f%% in %d messages: alert sent to %s",
                    100 * result.bad_share,
                    100 * config.max_bad_share,
                    len(records),
                    ALERTS,
                )
            for trip_id, predictions, features in outgoing:
                for prediction in predictions:  # the served prediction, then any shadow one
                    publisher.send(PREDICTIONS, trip_id, prediction)
                publisher.send(FEATURES, trip_id, features)
            publisher.flush()
        # flush() raised unless every message was acknowledged: one served prediction per trip, the rest shadow.
        result.predictions_published = len(outgoing)
        result.shadow_predictions_published = publisher.delivered[PREDICTIONS] - len(outgoing)
        result.features_published = publisher.delivered[FEATURES]
        published = {trip_id for trip_id, _, _ in outgoing}
        answers = [answer for (trip, _), answer in zip(valid, answers) if trip[TRIP_ID] in published]
        result.degraded_predictions = sum(bool(a.get("degraded")) for a in answers)
        result.model_version = next((str(a["model_version"]) for a in answers if a.get("model_version") is not None), None)

        offsets = {}
        for record in records:
            span = result.offsets.setdefault(record.partition, {"first": record.offset, "last": record.offset})
            span["first"], span["last"] = min(span["first"], record.offset), max(span["last"], record.offset)
            offsets[record.partition] = max(offsets.get(record.partition, 0), record.offset + 1)
        for partition in gaps.keys() - offsets.keys():
            offsets[partition] = positions[partition][0]  # past the expired messages: reported once
        with timer("commit"):
            commit(consumer, bootstrap, RAW_TRIPS, offsets, config.kafka_timeout)
        for partition, next_offset in offsets.items():
            result.offsets.setdefault(partition, {})["committed"] = next_offset
        result.committed = True
    finally:
        consumer.close()
    result.seconds["total"] = round(time.perf_counter() - total_started, 4)
    log.info(result.summary())
    return result


def owned_partitions(existing: list[int], wanted: list[int] | None, bootstrap: str) -> list[int]:
    """The partitions a call works on: `wanted` (all when None), each of which must exist."""
    if wanted is None:
        return existing
    unknown = sorted(set(wanted) - set(existing))
    if unknown:
        raise ValueError(f"partitions {unknown} of {RAW_TRIPS} do not exist on {bootstrap} (it has {existing})")
    return sorted(wanted)


def scorer_partitions(scorer: int, scorers: int, bootstrap: str | None = None) -> list[int]:
    """The raw topic's partitions that scorer `scorer` of `scorers` owns (`kafka_io.partition_set`)."""
    config = StreamConfig.from_env()
    bootstrap = bootstrap or bootstrap_servers()
    consumer = consumer_for(bootstrap, config.group)
    try:
        return partition_set(partitions_of(consumer, bootstrap, RAW_TRIPS, config.kafka_timeout), scorer, scorers)
    finally:
        consumer.close()


def drain(
    settings: Settings | None = None,
    *,
    bootstrap: str | None = None,
    group: str | None = None,
    max_messages: int = 500,
    idle_seconds: float = 1.0,
    linger_seconds: float | None = None,
    max_run_seconds: float | None = None,
    scorer: Scorer | None = None,
    store=None,
    partitions: list[int] | None = None,
) -> dict:
    """What one Kafka-triggered DAG run does: `process_pending` again and again while messages
    keep coming; stop once nothing arrived for `linger_seconds` (TAXI_STREAM_LINGER_SECONDS,
    default 10) or after `max_run_seconds` (TAXI_STREAM_MAX_RUN_SECONDS, default 600; the next
    run goes on). Lingering keeps one warm task process on a steady stream instead of paying a
    new task's start (imports, the champion's load: ~4 s with its numpy scorer bundle) per
    wake-up; that load and the producer's handshake start at once, beside the first consume
    (`warm_up`). Each batch is committed before the next starts, so a failure part-way keeps the
    batches already done. Returns the totals and every batch's `as_dict()`."""
    config = StreamConfig.from_env()
    warm_up(settings or load_settings(), bootstrap or bootstrap_servers(), config, scorer is None)
    linger = config.linger_seconds if linger_seconds is None else linger_seconds
    limit = config.max_run_seconds if max_run_seconds is None else max_run_seconds
    started = time.monotonic()
    batches: list[dict] = []
    last_message = time.monotonic()
    while time.monotonic() - started < limit:
        result = process_pending(
            settings,
            bootstrap=bootstrap,
            group=group,
            max_messages=max_messages,
            idle_seconds=idle_seconds,
            scorer=scorer,
            store=store,
            partitions=partitions,
        )
        if result.consumed or result.expired_messages:
            batches.append(result.as_dict())
            last_message = time.monotonic()
        elif time.monotonic() - last_message >= linger:
            break
        else:
            time.sleep(0.2)  # nothing pending: look again shortly
    totals = {
        key: sum(b[key] for b in batches)
        for key in (
            "consumed",
            "valid",
            "dead_lettered",
            "duplicates_in_batch",
            "poisoned",
            "predictions_published",
            "shadow_predictions_published",
            "alerts",
            "expired_messages",
        )
    }
    more = time.monotonic() - started >= limit
    if more:
        log.warning("stopped after %.0f s with messages still arriving: the next run goes on", limit)
    log.info("drained %d batch(es) in %.1f s: %s", len(batches), time.monotonic() - started, totals)
    return {**totals, "batches": batches, "more_pending": more, "partitions": partitions, "seconds": round(time.monotonic() - started, 3)}


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


def _parse(records: list[Record]) -> tuple[list[tuple[dict, Record]], list[tuple[Record, InvalidMessage]]]:
    valid, rejected = [], []
    for record in records:
        try:
            valid.append((parse_trip(record.value), record))
        except InvalidMessage as exc:
            rejected.append((record, exc))
        except Exception as exc:  # noqa: BLE001 - one message must never fail the batch: it is dead-lettered with the error
            log.exception("parsing the message at %s[%d]@%d failed unexpectedly", RAW_TRIPS, record.partition, record.offset)
            problem = f"{type(exc).__name__}: {exc}"[:500]
            rejected.append((record, InvalidMessage(PARSER_FAILURE, [{"field": "(message)", "problem": problem}])))
    return valid, rejected


class PoisonMessage(InvalidMessage):
    """A message a stage raised on when run on it alone (`isolate_failures`)."""


def data_clock_epoch(settings: Settings, config: StreamConfig, now: datetime) -> int:
    """The latest start a streamed trip may have: the data time of `now` (wall clock minus the
    replay offset) plus the tolerance, in the trips' convention (Chicago wall clock read as UTC)."""
    data_now = settings.data_time(now).replace(tzinfo=None)
    return int(data_now.replace(tzinfo=UTC).timestamp() + config.future_tolerance_minutes * 60)


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says a service the batch needs is down (the batch must fail uncommitted and
    be retried), rather than that some message cannot be processed. A refused command is not an
    outage: Redis answering WRONGTYPE or ERR, SQLite refusing a value."""
    import sqlite3

    from confluent_kafka import KafkaException
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import DataError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from chicago_taxi.features.store import OnlineStoreUnavailable

    refused = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError, sqlite3.InterfaceError)
    if isinstance(exc, OnlineStoreUnavailable):
        cause = exc.__cause__
        return not (type(cause) in (ResponseError, DataError) or isinstance(cause, refused))
    outages = (BrokerUnavailable, PublishFailed, CommitFailed, KafkaException, RedisConnectionError, RedisTimeoutError, sqlite3.OperationalError)
    return isinstance(exc, (*outages, ConnectionError, TimeoutError, MemoryError))


def isolate_failures(stage: str, count: int, run: Callable[[list[int]], Any]) -> tuple[list[tuple[list[int], Any]], dict[int, Exception]]:
    """Run a stage on items 0..count-1 at once: `run(positions)`. When it raises and that is not
    an outage, run it on halves (even and odd positions) and so on, down to single items.

    Returns the parts that passed with what `run` returned for each, and the exception of each
    item that failed alone. Outages propagate. When no part passes (every item failed alone, or
    the first `SYSTEMIC_FAILURES` did), the stage is broken, not the items: the first error is
    raised."""
    everything = list(range(count))
    try:
        return [(everything, run(everything))], {}
    except Exception as exc:  # noqa: BLE001 - classified below: an outage fails the batch, anything else is isolated
        if is_outage(exc) or count == 0:
            raise
        first = exc
    log.warning("%s failed on a batch of %d (%s: %s): isolating the message(s) it fails on", stage, count, type(first).__name__, first)
    passed: list[tuple[list[int], Any]] = []
    failed: dict[int, Exception] = {}

    def visit(part: list[int]) -> None:
        if not passed and len(failed) >= SYSTEMIC_FAILURES:
            return
        try:
            output = run(part)
        except Exception as exc:  # noqa: BLE001 - as above
            if is_outage(exc):
                raise
            if len(part) == 1:
                failed[part[0]] = exc
            else:
                visit(part[0::2])
                visit(part[1::2])
            return
        passed.append((part, output))

    if count > 1:
        visit(everything[0::2])
        visit(everything[1::2])
    if not passed:
        log.error("%s failed on every message it was tried on alone (%d): the stage is broken, not the messages", stage, max(len(failed), 1))
        raise first
    log.warning("%s: isolated %d poison message(s) of %d", stage, len(failed), count)
    return passed, failed


def _outgoing(
    valid: list[Pair], answers: list[dict], pushed: PushOutcome, rows_as_of: list[dict[str, dict]], group: str, scored_ms: int
) -> tuple[list[tuple[str, list[bytes], bytes]], list[Rejected]]:
    """Each trip's prediction records (served, then shadow) and features record, encoded:
    (trip_id, [prediction, ...], features).
    A trip whose records cannot be built is dead-lettered, before anything is sent; when no
    trip's can, the fault is the code's, not the trips': the batch fails with the first error."""
    keys = batch_entity_keys([trip for trip, _ in valid])  # per batch, not per trip
    outgoing, rejected, first = [], [], None
    for index, ((trip, record), answer) in enumerate(zip(valid, answers)):
        try:
            predictions = [encoded(p) for p in prediction_records_of(trip, record, answer, group, scored_ms)]
            features = encoded(features_record(trip, record, pushed, keys[index], rows_as_of[index]))
        except Exception as exc:  # noqa: BLE001 - one message must never fail the batch
            first = first or exc
            rejected.append(_poisoned("publish", (trip, record), exc))
            continue
        outgoing.append((trip[TRIP_ID], predictions, features))
    if first is not None and not outgoing:
        raise first
    return outgoing, rejected


def _poisoned(stage: str, pair: Pair, exc: Exception) -> Rejected:
    trip, record = pair
    problem = f"{type(exc).__name__}: {exc}"[:500]
    log.error("%s failed on the message at %s[%d]@%d alone (%s): dead-lettered", stage, RAW_TRIPS, record.partition, record.offset, problem)
    return record, PoisonMessage(
        f"{POISON_REASON.format(stage=stage)}: {problem}", [{"field": "(message)", "problem": problem}], trip_id=trip[TRIP_ID]
    )


def _quality(valid: list[Pair], settings: Settings, config: StreamConfig, now: datetime) -> tuple[list[Pair], list[Rejected], str]:
    if not valid:
        return valid, [], "none"
    expectations = cached(("expectations", str(settings.expectations_dir)), lambda: quarantine_expectations(settings.expectations_dir))
    clock = data_clock_epoch(settings, config, now)
    if config.use_gx:
        validator = cached(("gx", str(settings.expectations_dir)), lambda: GxRowValidator(expectations))
        name = "great_expectations"
    else:
        name = "pandas"

    def failed_rows(positions: list[int]) -> list[list[str] | None]:
        frame = pd.DataFrame.from_records([valid[i][0] for i in positions])
        failed = validator.failed_rows(frame, clock) if config.use_gx else failed_rows_pandas(frame, expectations, clock)
        return [failed.get(row) for row in range(len(positions))]

    passed, failed = isolate_failures("quality", len(valid), failed_rows)
    verdicts = {i: labels for part, output in passed for i, labels in zip(part, output)}
    clock_text = f"the data clock is {datetime.fromtimestamp(clock, UTC).replace(tzinfo=None).isoformat()} (data time plus {config.future_tolerance_minutes:g} min)"
    kept, rejected = [], []
    for position, (trip, record) in enumerate(valid):
        if position in failed:
            rejected.append(_poisoned("quality", (trip, record), failed[position]))
            continue
        labels = verdicts[position]
        if labels:
            errors = [{"field": _label_field(label), "problem": _problem(label, clock_text)} for label in labels]
            rejected.append((record, InvalidMessage(f"{QUALITY_REASON}: {'; '.join(labels)}", errors, trip_id=trip[TRIP_ID])))
        else:
            kept.append((trip, record))
    return kept, rejected, name


def _label_field(label: str) -> str:
    return label.split("(", 1)[1].split(")", 1)[0] if "(" in label else "(row)"


def _problem(label: str, clock_text: str) -> str:
    # The start time's upper bound is the data clock: say what it was.
    return f"failed {label}" + (f": {clock_text}" if _label_field(label) == schema.TIMESTAMP else "")


def _known_contents(settings: Settings, trip_ids: list[str]) -> dict[str, str]:
    """trip_id -> content fingerprint of the trips the stream accepted before (stream log)."""
    return _with_stream_log(settings, "reading trip fingerprints", lambda log_: log_.contents(list(dict.fromkeys(trip_ids))))


def _remember_contents(settings: Settings, config: StreamConfig, fingerprints: dict[str, str]) -> None:
    if fingerprints:
        _with_stream_log(
            settings, "storing trip fingerprints", lambda log_: log_.remember_contents(fingerprints, time.time(), config.log_retention_days * 86400)
        )


def _with_stream_log(settings: Settings, doing: str, action: Callable[[Any], Any]):
    import sqlite3

    from redis.exceptions import RedisError

    from chicago_taxi.features.store import OnlineStoreUnavailable

    address = settings.redis_address if settings.online_store == "redis" else str(settings.feast_dir / "stream_log.db")
    try:
        return action(open_stream_log(settings))
    except (RedisError, sqlite3.Error) as exc:
        raise OnlineStoreUnavailable(
            f"stream log at {address} failed while {doing} ({type(exc).__name__}: {exc}); nothing published or committed, the messages stay pending"
        ) from exc


def _by_content(valid: list[Pair], known: dict[str, str]) -> tuple[list[Pair], list[Rejected], int, int, dict[str, str]]:
    """Tell redeliveries from other content under a known trip_id (`known`: fingerprints of
    trips accepted by earlier batches). Returns the trips to score (per trip_id the latest message
    with its accepted content), the dead letters of other content, the in-batch duplicates
    dropped, the trips scored again after an earlier batch, and trip_id -> fingerprint."""
    first: dict[str, tuple[str, str]] = {t: (f, "by an earlier batch") for t, f in known.items()}
    candidates: list[tuple[int, str]] = []
    rejected: list[Rejected] = []
    for position, (trip, record) in enumerate(valid):
        try:
            fingerprint = trip_fingerprint(trip)
        except Exception as exc:  # noqa: BLE001 - one message must never fail the batch
            rejected.append(_poisoned("dedup", (trip, record), exc))
            continue
        trip_id = trip[TRIP_ID]
        accepted, where = first.setdefault(trip_id, (fingerprint, f"at {RAW_TRIPS}[{record.partition}]@{record.offset}"))
        if fingerprint != accepted:
            problem = f"{_quoted(trip_id)} was accepted {where} with other content (sha256 {accepted[:16]}..., this message {fingerprint[:16]}...)"
            rejected.append((record, InvalidMessage(CONFLICT_REASON, [{"field": TRIP_ID, "problem": problem}], trip_id=trip_id)))
            continue
        candidates.append((position, fingerprint))
    latest = {valid[position][0][TRIP_ID]: position for position, _ in candidates}
    kept = [valid[position] for position, _ in candidates if latest[valid[position][0][TRIP_ID]] == position]
    fingerprints = {valid[position][0][TRIP_ID]: fingerprint for position, fingerprint in candidates}
    redelivered = sum(trip[TRIP_ID] in known for trip, _ in kept)
    return kept, rejected, len(candidates) - len(kept), redelivered, fingerprints


def _quoted(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _score(valid: list[Pair], scorer: Scorer) -> tuple[list[Pair], list[dict], list[Rejected]]:
    """Score the trips; a trip the scorer raises on alone is dead-lettered (isolate_failures)."""

    def score(positions: list[int]) -> list[dict]:
        answers = scorer([valid[i][0] for i in positions])
        if len(answers) != len(positions):
            raise RuntimeError(f"the scorer returned {len(answers)} answers for {len(positions)} trips")
        return answers

    passed, failed = isolate_failures("score", len(valid), score)
    answers = {i: answer for part, output in passed for i, answer in zip(part, output)}
    kept = [pair for i, pair in enumerate(valid) if i in answers]
    return kept, [answers[i] for i in range(len(valid)) if i in answers], [_poisoned("score", valid[i], exc) for i, exc in sorted(failed.items())]


def _push(
    valid: list[Pair], answers: list[dict], settings: Settings, config: StreamConfig, store
) -> tuple[list[Pair], list[dict], PushOutcome, list[dict[str, dict]], list[Rejected]]:
    """Push the trips' statistics; a trip the push raises on alone is dead-lettered. Returns the
    trips kept (batch order), their answers, the merged outcome, each kept trip's row per view
    as of the trip, and the dead letters."""
    if not valid:
        return [], [], PushOutcome(as_of={}), [], []
    passed, failed = isolate_failures("push", len(valid), lambda positions: push_features([valid[i][0] for i in positions], settings, config, store))
    merged = PushOutcome(as_of={})
    rows: dict[int, dict[str, dict]] = {}
    for part, outcome in passed:
        merged.pushed_rows += outcome.pushed_rows
        merged.skipped += outcome.skipped
        merged.pushed_keys |= outcome.pushed_keys
        for name, frame in outcome.as_of.items():
            merged.as_of[name] = pd.concat([merged.as_of[name], frame], ignore_index=True) if name in merged.as_of else frame
            for i, row in zip(part, frame.to_dict("records")):
                rows.setdefault(i, {})[name] = row
    kept = [i for i in range(len(valid)) if i not in failed]
    poisoned = [_poisoned("push", valid[i], exc) for i, exc in sorted(failed.items())]
    return [valid[i] for i in kept], [answers[i] for i in kept], merged, [rows.get(i, {}) for i in kept], poisoned

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
2. parse: `ingest.messages.parse_trip` (Chicago or legacy shape) on every message.
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
   (`company_half_hourly_stats`): `features.push`, over the history and the stream log
   of `features.stream_log` (why each row is exactly what training would join: see those modules).
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

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import pandas as pd

from chicago_taxi.core.config import Settings, StreamConfig, load_settings
from chicago_taxi.core.jsonable import now_ms
from chicago_taxi.core.process_cache import cached
from chicago_taxi.features.push import PushOutcome, push_features
from chicago_taxi.ingest.messages import TRIP_ID, InvalidMessage, dead_letter_record, parse_trip
from chicago_taxi.ingest.topics import ALERTS, FEATURES, PREDICTIONS, RAW_TRIPS, RAW_TRIPS_DLQ, bootstrap_servers
from chicago_taxi.quality.rows import GxRowValidator, failed_rows_pandas, quarantine_expectations
from chicago_taxi.streaming.kafka_io import Record, commit, consume, consumer_for, offset_gaps, partitions_of, positions_of
from chicago_taxi.streaming.publisher import Publisher
from chicago_taxi.streaming.records import (
    ALERT_KIND,
    GAP_ALERT_KIND,
    alert_record,
    batch_entity_keys,
    features_record,
    gap_alert_record,
    prediction_record,
)

log = logging.getLogger(__name__)

QUALITY_REASON = "failed quality expectations"
PARSER_FAILURE = "the parser failed on this message"
Scorer = Callable[[list[dict]], list[dict]]

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
    expired_messages: int = 0  # deleted by retention before the group read them (alerted, never scored)
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
        return (
            f"group {self.group} on {self.bootstrap}: consumed {self.consumed}, valid {self.valid}, dead-lettered {self.dead_lettered} "
            f"(bad share {self.bad_share:.1%}), alerts {self.alerts}, pushed {self.pushed_rows} row(s), predictions {self.predictions_published} "
            f"({self.degraded_predictions} degraded), committed {self.committed}; seconds: {stages}"
        )


def default_scorer(settings: Settings) -> Scorer:
    """The champion through one `FareService` per process (the model loads once)."""
    from chicago_taxi.serving.fare_service import FareService

    key = ("scorer", settings.mlflow_tracking_uri, settings.model_name, settings.online_store, settings.redis_address, str(settings.feast_dir))
    service = cached(key, lambda: FareService(settings))
    return service.predict


def process_pending(
    settings: Settings | None = None,
    *,
    bootstrap: str | None = None,
    group: str | None = None,
    max_messages: int = 500,
    idle_seconds: float = 1.0,
    scorer: Scorer | None = None,
    store=None,
) -> BatchResult:
    """Drain up to `max_messages` pending messages of taxi-raw-data for the group, publish the
    results, then commit. See the module docstring for the stages and guarantees."""
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
            partitions = partitions_of(consumer, bootstrap, RAW_TRIPS, config.kafka_timeout)
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

        with timer("parse"):
            valid, rejected = _parse(records)
        with timer("quality"):
            valid, quality_rejected, result.validator = _quality(valid, settings, config)
            rejected += quality_rejected
        valid, result.duplicates_in_batch = _dedup(valid)
        result.valid = len(valid)
        result.dead_lettered = len(rejected)
        result.dead_letter_reasons = dict(Counter(r[1].reason for r in rejected))
        result.bad_share = round(len(rejected) / len(records), 4) if records else 0.0

        trips = [trip for trip, _ in valid]
        # Score first, then push: every trip is scored with the online state from before its
        # batch, so no trip reads a row its own fare went into (see the module docstring).
        with timer("score"):
            answers = (scorer or default_scorer(settings))(trips) if trips else []
        if len(answers) != len(trips):
            raise RuntimeError(f"the scorer returned {len(answers)} answers for {len(trips)} trips")
        scored_ms = now_ms()
        with timer("push"):
            pushed = push_features(trips, settings, config, store) if trips else PushOutcome(as_of={})
        result.pushed_rows, result.push_skipped_not_newer = pushed.pushed_rows, pushed.skipped

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
            # per batch, not per trip: the entity keys and each view's rows as plain dicts
            keys = batch_entity_keys(trips)
            as_of = {name: rows.to_dict("records") for name, rows in pushed.as_of.items()}
            for index, ((trip, record), answer) in enumerate(zip(valid, answers)):
                publisher.send(PREDICTIONS, trip[TRIP_ID], prediction_record(trip, record, answer, group, scored_ms))
                publisher.send(FEATURES, trip[TRIP_ID], features_record(trip, record, pushed, keys[index], {n: r[index] for n, r in as_of.items()}))
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
) -> dict:
    """What one Kafka-triggered DAG run does: `process_pending` again and again while messages
    keep coming; stop once nothing arrived for `linger_seconds` (TAXI_STREAM_LINGER_SECONDS,
    default 10) or after `max_run_seconds` (TAXI_STREAM_MAX_RUN_SECONDS, default 600; the next
    run goes on). Lingering keeps one warm task process on a steady stream instead of paying a
    new task's start (imports, model load: ~15 s) per wake-up. Each batch is committed before
    the next starts, so a failure part-way keeps the batches already done. Returns the totals
    and every batch's `as_dict()`."""
    config = StreamConfig.from_env()
    linger = config.linger_seconds if linger_seconds is None else linger_seconds
    limit = config.max_run_seconds if max_run_seconds is None else max_run_seconds
    started = time.monotonic()
    batches: list[dict] = []
    last_message = time.monotonic()
    while time.monotonic() - started < limit:
        result = process_pending(
            settings, bootstrap=bootstrap, group=group, max_messages=max_messages, idle_seconds=idle_seconds, scorer=scorer, store=store
        )
        if result.consumed or result.expired_messages:
            batches.append(result.as_dict())
            last_message = time.monotonic()
        elif time.monotonic() - last_message >= linger:
            break
        else:
            time.sleep(0.2)  # nothing pending: look again shortly
    totals = {
        key: sum(b[key] for b in batches) for key in ("consumed", "valid", "dead_lettered", "predictions_published", "alerts", "expired_messages")
    }
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


def _quality(valid: list[tuple[dict, Record]], settings: Settings, config: StreamConfig):
    if not valid:
        return valid, [], "none"
    expectations = cached(("expectations", str(settings.expectations_dir)), lambda: quarantine_expectations(settings.expectations_dir))
    frame = pd.DataFrame.from_records([trip for trip, _ in valid])
    if config.use_gx:
        validator = cached(("gx", str(settings.expectations_dir)), lambda: GxRowValidator(expectations))
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


def _dedup(valid: list[tuple[dict, Record]]) -> tuple[list[tuple[dict, Record]], int]:
    latest = {trip[TRIP_ID]: position for position, (trip, _) in enumerate(valid)}
    kept = [pair for position, pair in enumerate(valid) if latest[pair[0][TRIP_ID]] == position]
    return kept, len(valid) - len(kept)

"""The prediction log: every prediction the platform makes, from the stream and from the HTTP
service, as one JSON record on `taxi-predictions` (keyed by trip_id) holding what monitoring
needs to judge it once the trip's fare is known: the model and variant that made it, the inputs
and store features it saw, and when.

    records = prediction_records(trip, answer, source={"kind": "http", "endpoint": "/predict"}, scored_ms=now_ms())
    publisher = PredictionLogPublisher()   # the HTTP service's; the stream publishes with its batch
    publisher.publish(records)             # never blocks, never raises
    publisher.stats()                      # published / lost / pending, for GET /ops/health

A trip yields its served record, then one record per shadow prediction (A/B, see
`serving.fare_service`): same trip, inputs and store features, `variant` "shadow", `served` false.

The HTTP service's records are best effort: a request never waits for the broker and never fails
because of it. A record that cannot be queued (local queue full) or that the broker did not
acknowledge within `message.timeout.ms` is counted as lost and logged (at most every 30 s): what
is lost is monitoring data, never an answer. The stream's records are not: they go out with its
micro-batch, which commits only once the broker acknowledged them (`streaming.batch`).

`TAXI_PREDICTION_LOG=0` (off/false) turns the HTTP service's publishing off.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import UTC, datetime

from chicago_taxi.core import schema
from chicago_taxi.core.config import env_bool, kafka_bootstrap
from chicago_taxi.core.jsonable import encoded, iso, iso_ms, json_default, now_ms
from chicago_taxi.core.monitoring_schema import VARIANTS
from chicago_taxi.ingest.topics import PREDICTIONS

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER, SHADOW = VARIANTS
ENABLED_ENV = "TAXI_PREDICTION_LOG"
# Lost records and broker errors are logged at most this often (a down broker must not flood the log).
LOG_EVERY_SECONDS = 30.0
MESSAGE_TIMEOUT_MS = 30_000
QUEUE_MAX_MESSAGES = 100_000
CLOSED_REASON = "the publisher was closed before the broker acknowledged them"


def _plain(value):
    """A JSON-safe scalar: numpy numbers as Python ones, NaN and the infinities as None."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:  # the usual cases first: this runs per field
        return value
    if kind is not float:
        value = json_default(value)
    return None if isinstance(value, float) and not math.isfinite(value) else value


def prediction_records(trip: dict, answer: dict, *, source: dict, scored_ms: int, produced_ms: int | None = None) -> list[dict]:
    """The records of one scored trip: the served prediction, then one per shadow prediction.

    `trip` is the trip as scored (Chicago columns), `answer` its `FareService.predict` answer,
    `source` where the trip came from ({"kind": "stream", topic, partition, offset, group} or
    {"kind": "http", "endpoint"}), `produced_ms` when it was produced (the raw message's Kafka
    timestamp; for HTTP the request's arrival, or None)."""
    used = answer.get("store_features") or {}
    served = {
        "trip_id": trip.get("trip_id", answer.get("trip_id")),
        "fare": answer["fare"],
        "model_name": answer.get("model_name"),
        "model_version": answer.get("model_version"),
        "variant": answer.get("variant", CHAMPION),
        "served": True,
        "features_defaulted": list(answer.get("features_defaulted", [])),
        "degraded": bool(answer.get("degraded", False)),
        # The repairs the transform graph made to the trip's inputs (as the HTTP service answers).
        "input_warnings": answer.get("input_warnings", []),
        "inputs": {column: _plain(trip.get(column)) for column in schema.MODEL_INPUT_COLUMNS},
        # The store features the model was given; None where the store had none (defaulted).
        "store_features": {feature: _plain(used.get(feature)) for feature in schema.STORE_FEATURES},
        "trip_start_timestamp": _plain(trip.get(schema.TIMESTAMP)),
        "source": dict(source),
        "produced_at_ms": produced_ms,
        "produced_at": iso_ms(produced_ms),
        "scored_at_ms": scored_ms,
        "scored_at": iso_ms(scored_ms),
    }
    records = [served]
    for shadow in answer.get("shadow", []):
        records.append(
            {
                **served,
                "fare": shadow["fare"],
                "model_name": shadow.get("model_name"),
                "model_version": shadow.get("model_version"),
                "variant": SHADOW,
                "served": False,
            }
        )
    published = now_ms()
    for record in records:
        record["published_at_ms"] = published
    return records


class PredictionLogPublisher:
    """The HTTP service's producer of prediction records: `publish` only queues (librdkafka's
    bounded local queue) and returns; a daemon thread serves the delivery reports. Counts what
    was published and what was lost, and why (`stats`)."""

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        topic: str = PREDICTIONS,
        enabled: bool | None = None,
        message_timeout_ms: int = MESSAGE_TIMEOUT_MS,
        queue_max_messages: int = QUEUE_MAX_MESSAGES,
        poll_seconds: float = 0.5,
    ):
        self.enabled = env_bool(ENABLED_ENV, True) if enabled is None else enabled
        self.topic = topic
        self.bootstrap = bootstrap or kafka_bootstrap()
        self.message_timeout_ms = message_timeout_ms
        self.queue_max_messages = queue_max_messages
        self.published = 0
        self.lost = 0
        self._in_flight = 0  # produced, delivery report not served yet (len(producer) counts client events too)
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self._lock = threading.Lock()
        self._logged_lost_at = -math.inf
        self._logged_error_at = -math.inf
        self._stop = threading.Event()
        self._producer = None
        self._poller: threading.Thread | None = None
        if not self.enabled:
            log.info("prediction log off (%s): the HTTP service's predictions are not published to %s", ENABLED_ENV, topic)
            return
        from confluent_kafka import Producer

        self._producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "linger.ms": 50,  # records are small and many: batch them
                "queue.buffering.max.messages": queue_max_messages,
                "message.timeout.ms": message_timeout_ms,
                # With the broker down librdkafka retries every 100 ms by default: once a second to 10 s is enough.
                "reconnect.backoff.ms": 1000,
                "reconnect.backoff.max.ms": 10000,
                "log_level": 0,  # broker errors come through error_cb, logged at most every 30 s
                "error_cb": self._on_error,
            }
        )
        self._poller = threading.Thread(target=self._serve_delivery_reports, args=(poll_seconds,), name="prediction-log", daemon=True)
        self._poller.start()

    # ------------------------------------------------------------------ publishing
    def publish(self, records: list[dict]) -> int:
        """Queue `records` (keyed by trip_id); returns how many were queued. Never blocks, never raises."""
        if not self.enabled:
            return 0
        producer = self._producer
        if producer is None:
            self.record_lost(len(records), CLOSED_REASON)
            return 0
        queued = 0
        for record in records:
            trip_id = record.get("trip_id")
            with self._lock:  # counted before produce(): its delivery report may be served first
                self._in_flight += 1
            try:
                producer.produce(
                    self.topic, key=None if trip_id is None else str(trip_id).encode(), value=encoded(record), on_delivery=self._on_delivery
                )
                queued += 1
                continue
            except BufferError:
                reason = f"local queue full ({self.queue_max_messages} records waiting for the broker at {self.bootstrap})"
            except Exception as exc:  # noqa: BLE001 - a record that cannot be sent is counted, the request goes on
                reason = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._in_flight -= 1
            self.record_lost(1, reason)
        return queued

    def record_lost(self, count: int, reason: str) -> None:
        """Count `count` records as lost for `reason`; logged at most every LOG_EVERY_SECONDS."""
        if count <= 0:
            return
        with self._lock:
            self.lost += count
            self._note_error(reason)
            lost, due = self.lost, time.monotonic() - self._logged_lost_at >= LOG_EVERY_SECONDS
            if due:
                self._logged_lost_at = time.monotonic()
        if due:
            log.warning(
                "prediction log: %d prediction record(s) for monitoring lost so far (not sent to %s at %s), latest because: %s. "
                "Answers are not affected; monitoring misses these predictions",
                lost,
                self.topic,
                self.bootstrap,
                reason,
            )

    def _note_error(self, reason: str) -> None:
        self.last_error = reason
        self.last_error_at = iso(datetime.now(UTC))

    def _on_delivery(self, err, msg) -> None:
        with self._lock:
            self._in_flight -= 1
            if err is None:
                self.published += 1
        if err is None:
            return
        from confluent_kafka import KafkaError

        if err.code() in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
            self.record_lost(1, CLOSED_REASON)
        else:
            self.record_lost(1, f"not acknowledged by the broker at {self.bootstrap} within {self.message_timeout_ms / 1000:g} s: {err.str()}")

    def _on_error(self, err) -> None:
        """librdkafka's client-level errors (broker down, name resolution, ...): remembered, logged
        at most every LOG_EVERY_SECONDS; the records wait in the local queue until their timeout."""
        reason = f"Kafka at {self.bootstrap}: {err.str()}"
        with self._lock:
            self._note_error(reason)
            due = time.monotonic() - self._logged_error_at >= LOG_EVERY_SECONDS
            if due:
                self._logged_error_at = time.monotonic()
        if due:
            log.warning(
                "prediction log: %s; prediction records wait in the local queue up to %g s, then are lost to monitoring (answers are not affected)",
                reason,
                self.message_timeout_ms / 1000,
            )

    def _serve_delivery_reports(self, poll_seconds: float) -> None:
        while not self._stop.is_set():
            producer = self._producer
            if producer is None:
                return
            producer.poll(poll_seconds)

    # ------------------------------------------------------------------ state
    def stats(self) -> dict:
        with self._lock:
            return {
                "enabled": self.enabled,
                "topic": self.topic,
                "bootstrap": self.bootstrap,
                "published": self.published,
                "lost": self.lost,
                "pending": self._in_flight,
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
            }

    def close(self, timeout: float = 5.0) -> dict:
        """Wait up to `timeout` seconds for the queued records; what is still queued is lost. Returns `stats()`."""
        producer = self._producer
        if producer is None:
            return self.stats()
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=max(timeout, 1.0))
        producer.flush(timeout)
        if len(producer):
            producer.purge()
            producer.poll(0)  # the purged records' reports: counted as lost
        self._producer = None
        stats = self.stats()
        log.info("prediction log closed: %d published, %d lost", stats["published"], stats["lost"])
        return stats

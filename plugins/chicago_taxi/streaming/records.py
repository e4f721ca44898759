"""The records the stream publishes: a prediction per trip (taxi-predictions; plus a shadow one
per trip when A/B is on, see `monitoring.prediction_log`), the features it was scored with
(taxi-features), and a bad-share alert per batch (taxi-alerts)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.core.config import StreamConfig
from chicago_taxi.core.jsonable import iso, json_default, now_ms
from chicago_taxi.features.aggregates import EVENT_TIMESTAMP, entity_keys
from chicago_taxi.features.push import PushOutcome
from chicago_taxi.ingest.messages import TRIP_ID
from chicago_taxi.ingest.topics import RAW_TRIPS, RAW_TRIPS_DLQ
from chicago_taxi.serving.prediction_log import prediction_records
from chicago_taxi.streaming.kafka_io import Record

ALERT_KIND = "stream_bad_message_share"
GAP_ALERT_KIND = "stream_offset_gap"


def alert_record(result, records: list[Record], config: StreamConfig) -> dict:
    """The taxi-alerts event of a batch whose bad share crossed the threshold (`result`: its BatchResult)."""
    spans = {}
    for record in records:
        low, high = spans.get(record.partition, (record.offset, record.offset))
        spans[record.partition] = (min(low, record.offset), max(high, record.offset))
    return {
        "kind": ALERT_KIND,
        "source": "chicago_taxi.streaming.batch",
        "topic": RAW_TRIPS,
        "group": result.group,
        "bad_share": result.bad_share,
        "threshold": config.max_bad_share,
        "counts": {"consumed": result.consumed, "valid": result.valid, "dead_lettered": result.dead_lettered},
        "reasons": result.dead_letter_reasons,
        "offsets": {str(p): {"first": lo, "last": hi} for p, (lo, hi) in sorted(spans.items())},
        "dead_letter_topic": RAW_TRIPS_DLQ,
        "at": iso(datetime.now(UTC)),
    }


def prediction_records_of(trip: dict, record: Record, answer: dict, group: str, scored_ms: int) -> list[dict]:
    """A scored trip's prediction log records (`monitoring.prediction_log`: the served prediction,
    then any shadow one), with the message it came from and its Kafka timestamp as produce time."""
    source = {"kind": "stream", "topic": RAW_TRIPS, "partition": record.partition, "offset": record.offset, "group": group}
    return prediction_records(trip, answer, source=source, scored_ms=scored_ms, produced_ms=record.timestamp_ms)


def batch_entity_keys(trips: list[dict]) -> list[dict]:
    return entity_keys(pd.DataFrame(trips)).to_dict("records") if trips else []


def features_record(trip: dict, record: Record, pushed: PushOutcome, keys: dict, rows: dict[str, dict]) -> dict:
    """The features record of one trip: `keys` its entity keys, `rows` each pushed view's row as
    of the trip (view name -> column -> value)."""
    views = {}
    for view in schema.STORE_VIEWS:
        row = rows.get(view.name)
        if row is None:
            continue
        as_of = row[EVENT_TIMESTAMP]
        missing = as_of is None or pd.isna(as_of)
        views[view.name] = {
            "entity": {view.entity: row[view.entity] if isinstance(row[view.entity], str) else json_default(row[view.entity])},
            "as_of": None if missing else iso(as_of),
            "values": None
            if missing
            else {f: int(row[f]) if schema.FEATURE_SPECS[f].dtype == "int64" else json_default(row[f]) for f in view.features},
            "pushed": not missing and (view.name, row[view.entity], as_of) in pushed.pushed_keys,
        }
    return {
        "trip_id": trip[TRIP_ID],
        "trip_start_timestamp": trip.get(schema.TIMESTAMP),
        "entities": {e.name: e.key_of(keys[e.name]) for e in schema.ENTITIES if e.column is not None},
        "feature_views": views,
        "source": {"topic": RAW_TRIPS, "partition": record.partition, "offset": record.offset},
        "produced_at_ms": record.timestamp_ms,
        "published_at_ms": now_ms(),
    }


def gap_alert_record(gaps: dict[int, int], positions: dict[int, tuple[int, int, int | None]], group: str) -> dict:
    """The taxi-alerts event for messages that expired before the group read them (`gaps`:
    partition -> count, from `kafka_io.offset_gaps`): they are lost to scoring, say how many."""
    return {
        "kind": GAP_ALERT_KIND,
        "source": "chicago_taxi.streaming",
        "topic": RAW_TRIPS,
        "group": group,
        "expired_messages": sum(gaps.values()),
        "partitions": {str(p): {"committed": positions[p][2], "low_watermark": positions[p][0], "expired": n} for p, n in sorted(gaps.items())},
        "at": iso(datetime.now(UTC)),
    }

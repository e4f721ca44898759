"""The offline prediction store and the ground truth, landed from Kafka as Parquet by hour.

Two consumer groups of their own read to the end of their topics and commit only after the
Parquet files are written (at least once):

- `taxi-predictions` (group TAXI_MONITORING_GROUP, default `taxi-monitoring`): every logged
  prediction, from the stream and from the HTTP service, one row each, under
  `<monitoring_dir>/predictions/hour=YYYY-MM-DDTHH/` by the hour it was scored (UTC).
- `taxi-raw-data` (group `<that group>-labels`): the ground truth. A trip's fare is known when
  the trip ends; in the replay it is the raw message's `fare` (legacy shape: `fare_amount`),
  which scoring never reads. One row per message with a trip id and a numeric fare, under
  `<monitoring_dir>/labels/hour=.../` by the message's Kafka time.

A message that cannot be read (not JSON, no trip id, no numeric fare) is counted with its reason
and skipped: the landing never stalls on one. Redelivered messages land twice and are
de-duplicated when read (last prediction per trip, model version and variant; last label per
trip). A label and its prediction are joined by trip id whichever arrived first: a window reads
the labels of the hours around it (LABEL_LOOKBACK before, LABEL_HORIZON after).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from chicago_taxi.core import monitoring_schema as C
from chicago_taxi.core import schema
from chicago_taxi.core.config import Settings, load_settings, monitoring_group
from chicago_taxi.ingest.topics import PREDICTIONS, RAW_TRIPS, bootstrap_servers

log = logging.getLogger(__name__)

PREDICTIONS_DIR = "predictions"
LABELS_DIR = "labels"
# A window joins the labels that landed from LABEL_LOOKBACK before its start (the replay sends a
# trip's fare before its prediction exists) to LABEL_HORIZON after its end (a fare arrives when
# the trip ends; a window monitored again later picks up the late ones).
LABEL_LOOKBACK = timedelta(hours=24)
LABEL_HORIZON = timedelta(hours=24)
LABEL_AT = "label_at"
BATCH = 5000


def hour_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H")


# ---------------------------------------------------------------- records -> rows
def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value) if math.isfinite(value) else math.nan


def _codes(warnings) -> str:
    if not isinstance(warnings, list):
        return ""
    return ",".join(str(w.get("code")) if isinstance(w, dict) else str(w) for w in warnings)


def prediction_row(record: dict, partition: int, offset: int, default_model: str) -> dict:
    """One prediction store row from a `taxi-predictions` record. Records from before the
    prediction log had variants are the champion's."""
    scored_ms = record.get("scored_at_ms") or record.get("published_at_ms")
    if not isinstance(scored_ms, (int, float)):
        raise ValueError("no scored_at_ms")
    if not isinstance(record.get("fare"), (int, float)):
        raise ValueError("no numeric fare (the prediction)")
    inputs = record.get("inputs") if isinstance(record.get("inputs"), dict) else {}
    store = record.get("store_features") if isinstance(record.get("store_features"), dict) else {}
    source = record.get("source") if isinstance(record.get("source"), dict) else {}
    row = {
        C.TRIP_ID: None if record.get("trip_id") is None else str(record["trip_id"]),
        C.MODEL_NAME: str(record.get("model_name") or default_model),
        C.MODEL_VERSION: str(record.get("model_version")),
        C.VARIANT: str(record.get("variant") or "champion"),
        C.SERVED: bool(record.get("served", True)),
        C.PREDICTION: float(record["fare"]),
        C.DEGRADED: bool(record.get("degraded", False)),
        C.INPUT_WARNINGS: _codes(record.get("input_warnings")),
        C.FEATURES_DEFAULTED: ",".join(map(str, record.get("features_defaulted") or [])),
        C.SOURCE: str(source.get("kind") or "stream"),
        C.SCORED_AT: pd.Timestamp(int(scored_ms), unit="ms", tz="UTC"),
        schema.TIMESTAMP: _number(record.get(schema.TIMESTAMP)),
        "kafka_partition": partition,
        "kafka_offset": offset,
    }
    for name in schema.MODEL_INPUT_COLUMNS:
        value = inputs.get(name)
        kind = schema.COLUMNS_BY_NAME[name].kind
        row[name] = (None if value is None else str(value)) if kind == "string" else _number(value)
    for name in schema.STORE_FEATURES:
        row[name] = _number(store.get(name))
    return row


def json_object(raw: bytes | None) -> dict:
    """A Kafka message value as a JSON object; ValueError saying what it is instead."""
    try:
        value = json.loads(raw) if raw is not None else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not JSON") from exc
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def label_row(raw: bytes | None, timestamp_ms: int | None) -> dict:
    """The ground truth in a raw trip message: trip id, fare, trip start. Raises ValueError
    with the reason when the message has none."""
    message = json_object(raw)
    trip_id = message.get("trip_id")
    if not isinstance(trip_id, str) or not trip_id:
        raise ValueError("no trip_id")
    fare = message.get(schema.LABEL, message.get("fare_amount"))
    if fare is None:
        raise ValueError("no fare yet")
    fare = _number(fare)
    if math.isnan(fare):
        raise ValueError("fare is not a finite number")
    at = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    return {
        C.TRIP_ID: trip_id,
        C.LABEL: fare,
        schema.TIMESTAMP: _number(message.get(schema.TIMESTAMP)),
        LABEL_AT: pd.Timestamp(at, unit="ms", tz="UTC"),
    }


def write_by_hour(frame: pd.DataFrame, root: Path, time_column: str, name: str) -> list[Path]:
    """Write `frame` as one Parquet file per hour of `time_column` (`hour=.../<name>.parquet`,
    written to a temp name and renamed, so a reader never sees half a file)."""
    written = []
    hours = frame[time_column].dt.strftime("%Y-%m-%dT%H")
    for hour, part in frame.groupby(hours, sort=True):
        folder = root / f"hour={hour}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.parquet"
        tmp = folder / f".{name}.parquet.tmp"
        part.reset_index(drop=True).to_parquet(tmp, index=False)
        tmp.replace(path)
        written.append(path)
    return written


# ---------------------------------------------------------------- landing
def _land_topic(bootstrap: str, topic: str, group: str, to_row, root: Path, time_column: str, max_seconds: float) -> dict:
    from chicago_taxi.streaming.kafka_io import commit, consume, consumer_for, partitions_of, positions_of

    timeout = 10.0
    started = time.monotonic()
    counts: Counter = Counter()
    skipped: Counter = Counter()
    files: set[str] = set()
    consumer = consumer_for(bootstrap, group)
    try:
        while time.monotonic() - started < max_seconds:
            positions = positions_of(consumer, bootstrap, group, topic, partitions_of(consumer, bootstrap, topic, timeout), timeout)
            if all(high <= start for start, high, _ in positions.values()):
                break
            records = consume(consumer, bootstrap, topic, positions, BATCH, idle_seconds=1.0, max_seconds=60.0, first_wait=5.0)
            if not records:
                break
            rows = []
            for record in records:
                try:
                    rows.append(to_row(record))
                except ValueError as exc:
                    skipped[str(exc)] += 1
            if rows:
                frame = pd.DataFrame(rows)
                first, last = records[0], records[-1]
                name = f"part-p{first.partition}-o{first.offset}-p{last.partition}-o{last.offset}"
                files.update(str(p.relative_to(root)) for p in write_by_hour(frame, root, time_column, name))
            counts["messages"] += len(records)
            counts["rows"] += len(rows)
            ends = {}
            for record in records:
                ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
            commit(consumer, bootstrap, topic, ends, timeout)
    finally:
        consumer.close()
    return {
        "topic": topic,
        "group": group,
        **counts,
        "skipped": dict(skipped),
        "files": sorted(files),
        "seconds": round(time.monotonic() - started, 2),
    }


def land(settings: Settings | None = None, bootstrap: str | None = None, max_seconds: float = 300.0) -> dict:
    """Land everything pending on `taxi-predictions` and the labels on `taxi-raw-data`."""
    settings = settings or load_settings()
    bootstrap = bootstrap or bootstrap_servers()
    group = monitoring_group()
    root = settings.monitoring_dir

    def predictions(record):
        return prediction_row(json_object(record.value), record.partition, record.offset, settings.model_name)

    landed = {
        "predictions": _land_topic(bootstrap, PREDICTIONS, group, predictions, root / PREDICTIONS_DIR, C.SCORED_AT, max_seconds),
        "labels": _land_topic(
            bootstrap, RAW_TRIPS, f"{group}-labels", lambda r: label_row(r.value, r.timestamp_ms), root / LABELS_DIR, LABEL_AT, max_seconds
        ),
    }
    for name, result in landed.items():
        log.info(
            "landed %s: %d message(s), %d row(s), skipped %s, %d file(s)",
            name,
            result.get("messages", 0),
            result.get("rows", 0),
            result["skipped"] or "none",
            len(result["files"]),
        )
    return landed


# ---------------------------------------------------------------- reading
def _hour_folders(root: Path, start: datetime, end: datetime) -> list[Path]:
    if not root.exists():
        return []
    low, high = hour_of(start), hour_of(end - timedelta(microseconds=1))
    return sorted(p for p in root.glob("hour=*") if low <= p.name.removeprefix("hour=") <= high)


def _read(folders: list[Path]) -> pd.DataFrame | None:
    files = [f for folder in folders for f in sorted(folder.glob("*.parquet"))]
    if not files:
        return None
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def read_predictions(settings: Settings, start: datetime, end: datetime) -> pd.DataFrame:
    """Predictions scored in [start, end), one per (trip, model version, variant): the last."""
    frame = _read(_hour_folders(settings.monitoring_dir / PREDICTIONS_DIR, start, end))
    if frame is None:
        return pd.DataFrame(columns=[C.TRIP_ID, C.MODEL_NAME, C.MODEL_VERSION, C.VARIANT, C.SERVED, C.PREDICTION, C.SCORED_AT])
    frame = frame[(frame[C.SCORED_AT] >= pd.Timestamp(start)) & (frame[C.SCORED_AT] < pd.Timestamp(end))]
    keyed = frame[frame[C.TRIP_ID].notna()].sort_values(C.SCORED_AT, kind="stable")
    keyed = keyed.drop_duplicates([C.TRIP_ID, C.MODEL_VERSION, C.VARIANT], keep="last")
    return pd.concat([keyed, frame[frame[C.TRIP_ID].isna()]], ignore_index=True)


def read_labels(settings: Settings, start: datetime, end: datetime) -> pd.DataFrame:
    """The last label per trip among those landed in [start - LABEL_LOOKBACK, end + LABEL_HORIZON)."""
    frame = _read(_hour_folders(settings.monitoring_dir / LABELS_DIR, start - LABEL_LOOKBACK, end + LABEL_HORIZON))
    if frame is None:
        return pd.DataFrame(columns=[C.TRIP_ID, C.LABEL, LABEL_AT])
    return frame.sort_values(LABEL_AT, kind="stable").drop_duplicates(C.TRIP_ID, keep="last")[[C.TRIP_ID, C.LABEL, LABEL_AT]]


def window_frame(settings: Settings, start: datetime, end: datetime) -> pd.DataFrame:
    """The window's predictions with their label (NaN while the trip's fare is unknown)."""
    predictions = read_predictions(settings, start, end)
    labels = read_labels(settings, start, end)
    return predictions.merge(labels, on=C.TRIP_ID, how="left")

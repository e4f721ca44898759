"""Point-in-time aggregates of validated trips: the Feast entity keys of each trip and each
view's statistics at its cadence boundaries, written as the Parquet files of the offline store.

The same `compute_view` feeds the offline store (taxi_features DAG) and the stream's push
(`features.push`), so a streamed row equals the row the batch path would compute.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.core.config import offline_engine

log = logging.getLogger(__name__)
EVENT_TIMESTAMP = "event_timestamp"
CREATED = "created"


def entity_keys(trips: pd.DataFrame) -> pd.DataFrame:
    """The Feast join keys of each trip (one column per `schema.ENTITIES`); a missing value gets
    its entity's missing key, and an entity without a column (the city) is the same for all."""
    keys = pd.DataFrame(index=trips.index)
    for entity in schema.ENTITIES:
        if entity.column is None:
            keys[entity.name] = entity.missing_key
        elif entity.kind == "int":
            values = pd.to_numeric(trips[entity.column], errors="coerce") if entity.column in trips else pd.Series(np.nan, index=trips.index)
            keys[entity.name] = values.fillna(entity.missing_key).astype("int64")
        else:
            values = trips[entity.column] if entity.column in trips else pd.Series(None, index=trips.index, dtype=object)
            present = values.notna() & (values.astype(str).str.strip() != "")
            keys[entity.name] = values.where(present, entity.missing_key).astype(str)
    return keys


def record_entity_keys(trips: list[dict]) -> dict[str, list]:
    """`entity_keys` for trips as dicts (the request path), entity by entity: the same keys."""
    keys = {}
    for entity in schema.ENTITIES:
        if entity.column is None:
            keys[entity.name] = [entity.missing_key] * len(trips)
        elif entity.kind == "int":
            numbers = (schema.to_number(trip.get(entity.column)) for trip in trips)
            keys[entity.name] = [entity.missing_key if n != n else int(n) for n in numbers]
        else:
            values = (trip.get(entity.column) for trip in trips)
            keys[entity.name] = [str(v) if _present_text(v) else entity.missing_key for v in values]
    return keys


def _present_text(value) -> bool:
    return value is not None and not (isinstance(value, float) and value != value) and str(value).strip() != ""


def tariff_ratio(fare, miles, seconds) -> np.ndarray:
    """Each trip's fare over its meter fare at the reference tariff; NaN when the meter recorded
    no distance or no time (the ratio would say nothing about prices)."""
    fare, miles, seconds = (np.asarray(v, dtype=float) for v in (fare, miles, seconds))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((miles > 0) & (seconds > 0), fare / schema.REFERENCE_TARIFF.fare(miles, seconds), np.nan)


def _windowed_median(ts: np.ndarray, values: np.ndarray, boundaries: np.ndarray, window: int) -> np.ndarray:
    """Median of the non-NaN `values` with ts in [B - window, B) for each boundary B (ts sorted)."""
    present = ~np.isnan(values)
    ts, values = ts[present], values[present]
    hi = np.searchsorted(ts, boundaries, side="left")
    lo = np.searchsorted(ts, boundaries - window, side="left")
    return np.array([np.median(values[a:b]) if b > a else np.nan for a, b in zip(lo, hi)], dtype=float)


class _Windows:
    """One entity's trips (start times `ts`, sorted) against its cadence boundaries: for each
    boundary B the trips started in [B - window, B) are ts[lo:hi]."""

    def __init__(self, ts: np.ndarray, cadence: int, window: int):
        self.ts, self.window = ts, window
        self.boundaries = np.unique(ts // cadence * cadence + cadence)
        self.hi = np.searchsorted(ts, self.boundaries, side="left")
        self.lo = np.searchsorted(ts, self.boundaries - window, side="left")
        self.count = self.hi - self.lo

    def sum(self, values: np.ndarray) -> np.ndarray:
        csum = np.concatenate([[0.0], np.cumsum(values)])
        return csum[self.hi] - csum[self.lo]

    def aggregate(self, kind: str, fare: np.ndarray, miles: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """One branch per schema.AGGREGATIONS entry."""
        with np.errstate(invalid="ignore", divide="ignore"):
            if kind == "count":
                return self.count
            if kind == "fare_per_mile":
                sum_miles = self.sum(np.where(miles > 0, miles, 0.0))
                return np.where(sum_miles > 0, self.sum(np.where(miles > 0, fare, 0.0)) / sum_miles, np.nan)
            if kind == "mean_seconds":  # over the trips with a duration: one without is not a zero
                timed = ~np.isnan(seconds)
                count = self.sum(timed.astype(float))
                return np.where(count > 0, self.sum(np.where(timed, seconds, 0.0)) / count, np.nan)
            if kind == "mean_fare":
                return self.sum(fare) / self.count
            if kind == "median_fare_index":
                return _windowed_median(self.ts, tariff_ratio(fare, miles, seconds), self.boundaries, self.window)
        raise ValueError(f"unknown aggregation {kind!r}; known: {sorted(schema.AGGREGATIONS)}")


def compute_view(trips: pd.DataFrame, view: schema.StoreView) -> pd.DataFrame:
    """One row per entity and cadence boundary B that follows a trip of that entity, with the
    statistics of the entity's trips started in [B - window, B). A trip at B itself is not
    included, so a trip never sees its own fare."""
    cadence, window = view.cadence_minutes * 60, view.window_minutes * 60
    frame = entity_keys(trips)[[view.entity]].assign(
        ts=trips[schema.TIMESTAMP].astype("int64").to_numpy(),
        fare=trips[schema.LABEL].astype(float).to_numpy(),
        miles=trips["trip_miles"].astype(float).to_numpy(),
        seconds=trips["trip_seconds"].astype(float).to_numpy(),
    )
    parts = []
    for key, group in frame.sort_values("ts", kind="mergesort").groupby(view.entity, sort=True):
        windows = _Windows(group["ts"].to_numpy(), cadence, window)
        part = pd.DataFrame({view.entity: key, EVENT_TIMESTAMP: windows.boundaries})
        for spec in view.specs:
            part[spec.name] = windows.aggregate(spec.aggregation, group["fare"].to_numpy(), group["miles"].to_numpy(), group["seconds"].to_numpy())
        parts.append(part)
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[view.entity, EVENT_TIMESTAMP, *view.features])
    out[EVENT_TIMESTAMP] = pd.to_datetime(out[EVENT_TIMESTAMP].astype("int64"), unit="s", utc=True)
    out[CREATED] = pd.Timestamp.now(tz="UTC")
    for spec in view.specs:
        out[spec.name] = out[spec.name].astype(spec.dtype)
    return out


def write_offline_store(trips: pd.DataFrame, features_dir: Path) -> dict[str, dict]:
    """Each view's aggregates as the Parquet its Feast FileSource reads (rewritten whole); with
    TAXI_OFFLINE_ENGINE=spark computed by Spark (`features.spark_engine`), the same files."""
    if offline_engine() == "spark":
        from chicago_taxi.features.spark_engine import write_offline_store_spark

        return write_offline_store_spark(trips, features_dir)
    features_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for view in schema.STORE_VIEWS:
        started = time.perf_counter()
        written[view.name] = write_view_file(compute_view(trips, view), view, features_dir, started)
    return written


def write_view_file(frame: pd.DataFrame, view: schema.StoreView, features_dir: Path, started: float, engine: str = "pandas") -> dict:
    """One view's rows as the Parquet file its Feast FileSource names (replaced whole: readers never
    see a half-written file); what was written, with the seconds since `started`."""
    path = features_dir / f"{view.name}.parquet"
    tmp = path.with_suffix(".tmp.parquet")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    entities = int(frame[view.entity].nunique())
    log.info("%s: %d rows for %d entities -> %s (%s)", view.name, len(frame), entities, path, engine)
    return {"path": str(path), "rows": len(frame), "entities": entities, "seconds": round(time.perf_counter() - started, 2)}

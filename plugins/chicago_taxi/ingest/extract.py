"""Step 1 of the taxi_features and taxi_training DAGs: the trips up to the run's data interval
end (and within the lookback) from the raw source into a raw zone of monthly Parquet partitions."""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.core.config import Settings, load_settings
from chicago_taxi.core.runs import run_paths, run_report

log = logging.getLogger(__name__)


class ExtractError(ValueError):
    """The source cannot be windowed: its file or its timestamp column is unusable."""


def _epoch_of_wall_clock(moment: datetime) -> int:
    # Trip timestamps are Chicago wall-clock time stored as if it were UTC; compare the
    # interval's wall-clock reading the same way, without converting time zones.
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return int(moment.replace(tzinfo=UTC).timestamp())


def start_stamps(trips: pd.DataFrame, source: str, error: type[ValueError] = ExtractError) -> pd.Series:
    """The trips' start times as epoch seconds; `error`, naming `source`, when the column is
    missing or holds anything but numbers."""
    if schema.TIMESTAMP not in trips.columns:
        raise error(f"{source} has no {schema.TIMESTAMP!r} column, so trips cannot be windowed; columns: {list(trips.columns)}")
    stamps = pd.to_numeric(trips[schema.TIMESTAMP], errors="coerce")
    if stamps.isna().any():
        bad = trips.loc[stamps.isna(), schema.TIMESTAMP].head(3).tolist()
        raise error(f"{int(stamps.isna().sum())} rows of {source} have a non-numeric {schema.TIMESTAMP} (e.g. {bad}); expected epoch seconds")
    return stamps


def read_raw_zone(raw_dir: Path) -> pd.DataFrame:
    parts = sorted(raw_dir.glob("year_month=*/trips.parquet"))
    if not parts:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def extract(run_id: str, data_interval_end: datetime, settings: Settings | None = None) -> dict:
    """Trips up to `data_interval_end` (and within the lookback) into Parquet partitions by month."""
    settings = settings or load_settings()
    paths = run_paths(settings, run_id)
    if not settings.source_csv.exists():
        raise ExtractError(f"source file not found: {settings.source_csv}")
    trips = pd.read_csv(settings.source_csv)
    stamps = start_stamps(trips, str(settings.source_csv))
    end = _epoch_of_wall_clock(data_interval_end)
    keep = stamps < end
    if settings.lookback_days is not None:
        keep &= stamps >= end - settings.lookback_days * 86400
    window = trips[keep]
    months = pd.to_datetime(stamps[keep], unit="s").dt.strftime("%Y-%m")
    shutil.rmtree(paths["raw"], ignore_errors=True)
    for month, part in window.groupby(months.values):
        target = paths["raw"] / f"year_month={month}"
        target.mkdir(parents=True, exist_ok=True)
        part.to_parquet(target / "trips.parquet", index=False)
    section = {
        "source": str(settings.source_csv),
        "source_rows": len(trips),
        "rows": len(window),
        "partitions": int(months.nunique()),
        "window_end_epoch": end,
        "lookback_days": settings.lookback_days,
        "raw_zone": str(paths["raw"]),
    }
    if window.empty:
        raise ExtractError(f"no trips before {data_interval_end.isoformat()} (lookback {settings.lookback_days} days) in {settings.source_csv}")
    run_report(settings, paths).update("extract", section)
    log.info("extracted %d of %d trips into %d monthly partitions", len(window), len(trips), section["partitions"])
    return section

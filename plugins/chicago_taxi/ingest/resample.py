"""Larger trip sets resampled from the vendored sample, for scaling benchmarks (and Spark later).

How: draw `n` rows with replacement from the sample (a seeded numpy Generator), then move each
drawn copy's `trip_start_timestamp` by a random whole number of 15-minute steps within
+-`jitter_days` (default 7), wrapping around inside the sample's own first..last start time, so
the data clock, the lookback and the monthly partitions behave as on the sample. The calendar
columns (hour, weekday, month) follow the new time; a `trip_end_timestamp`, where a source has
one, moves by the same offset (the sample has none: `trip_seconds` is the duration and stays).
Every other value is copied as it is, so dirty rows stay dirty in the same share. No two rows
come out identical (copies of a trip get distinct times), so the duplicate-row check of gate 1
sees what it sees on the sample: none. Trip ids: the sample has no id column (the replay names
trips `trip-<row>` by position, which is unique in any file); a `unique_key`/`trip_id` column, if
a source has one, gets a new unique value per row.

    trips = resample_trips(pd.read_csv(sample), 150_000, seed=0)
    path = write_resampled(1_500_000, seed=0)   # cached under ~/.cache/chicago-taxi/resampled/
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.core.config import load_settings

log = logging.getLogger(__name__)

GRID_SECONDS = 15 * 60  # the public Chicago feed rounds trip times to 15 minutes
DEFAULT_JITTER_DAYS = 7.0
END_TIMESTAMP = "trip_end_timestamp"
ID_COLUMNS = ("unique_key", "trip_id")
CALENDAR_COLUMNS = ("trip_start_hour", "trip_start_day", "trip_start_month")
# Bump when the method changes, so cached files of the old method are not reused.
METHOD_VERSION = 1
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "chicago-taxi" / "resampled"
_MAX_REDRAW_ROUNDS = 200


class ResampleError(ValueError):
    """The sample cannot be resampled as asked (no rows, unusable timestamps, too many copies)."""


def calendar_of(stamps: np.ndarray) -> dict[str, np.ndarray]:
    """Hour, weekday (1 = Sunday, as the Chicago feed counts) and month of epoch seconds read as
    wall-clock time (the feed stores Chicago local time as if it were UTC)."""
    times = pd.DatetimeIndex(pd.to_datetime(stamps, unit="s"))
    return {
        "trip_start_hour": times.hour.to_numpy(),
        "trip_start_day": ((times.dayofweek + 1) % 7 + 1).to_numpy(),
        "trip_start_month": times.month.to_numpy(),
    }


def _start_stamps(trips: pd.DataFrame) -> np.ndarray:
    from chicago_taxi.ingest.extract import start_stamps

    return start_stamps(trips, "the trips", ResampleError).to_numpy(dtype=np.int64)


def _calendar_agrees(trips: pd.DataFrame, stamps: np.ndarray) -> np.ndarray:
    """Rows whose calendar columns all say what their timestamp says (only these are re-derived
    after the shift; a disagreeing row keeps its values and stays dirty)."""
    present = [c for c in CALENDAR_COLUMNS if c in trips.columns]
    agrees = np.ones(len(trips), dtype=bool)
    for column, expected in calendar_of(stamps).items():
        if column in present:
            agrees &= pd.to_numeric(trips[column], errors="coerce").to_numpy() == expected
    return agrees


def _content_ids(trips: pd.DataFrame, agrees: np.ndarray) -> np.ndarray:
    """One integer per distinct source row content apart from its time (what two rows at the same
    time must differ in not to be duplicates)."""
    ignored = {schema.TIMESTAMP, END_TIMESTAMP, *ID_COLUMNS, *CALENDAR_COLUMNS}
    content = trips[[c for c in trips.columns if c not in ignored]].copy()
    for column in CALENDAR_COLUMNS:
        if column in trips.columns:
            # Derived from the time where they agree with it; part of the content where they do not.
            content[column] = pd.to_numeric(trips[column], errors="coerce").where(~agrees, -1)
    hashed = pd.util.hash_pandas_object(content, index=False).to_numpy()
    return pd.factorize(hashed)[0].astype(np.int64)


@dataclass(frozen=True)
class _Draw:
    """What resampling decided, applicable to the sample read as values or as text: the source
    row of each output row, its new start time, and the rows whose calendar is re-derived."""

    rows: np.ndarray
    start: np.ndarray
    shift: np.ndarray  # new start minus old start, seconds (after wrapping)
    rederive_calendar: np.ndarray
    seed: int


def _draw(trips: pd.DataFrame, n: int, seed: int, jitter_days: float) -> _Draw:
    if n < 1:
        raise ResampleError(f"n must be at least 1, got {n}")
    if trips.empty:
        raise ResampleError("cannot resample an empty frame of trips")
    stamps = _start_stamps(trips)
    if END_TIMESTAMP in trips.columns:
        ends = pd.to_numeric(trips[END_TIMESTAMP], errors="coerce")
        if (ends.isna() & trips[END_TIMESTAMP].notna()).any():
            bad = trips.loc[ends.isna() & trips[END_TIMESTAMP].notna(), END_TIMESTAMP].head(3).tolist()
            raise ResampleError(f"{END_TIMESTAMP} holds non-numeric values (e.g. {bad}); expected epoch seconds like {schema.TIMESTAMP}")
    steps = int(jitter_days * 86400 // GRID_SECONDS)
    first, last = int(stamps.min()), int(stamps.max())
    # A period of whole grid steps keeps every time's position within its 15 minutes, so the
    # sample's on-grid times stay on the grid, and wrapping never lands past the last start.
    period = (last - first) // GRID_SECONDS * GRID_SECONDS + GRID_SECONDS
    if period <= 2 * steps * GRID_SECONDS:
        raise ResampleError(f"the sample spans {period / 86400:.1f} days, less than the +-{jitter_days} days of jitter")
    agrees = _calendar_agrees(trips, stamps)
    content = _content_ids(trips, agrees)

    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(trips), size=n)
    offsets = rng.integers(-steps, steps + 1, size=n)
    # Copies of the same content may not share a time: redraw the offsets of later duplicates
    # until none is left (a few rounds; each round redraws only the colliding rows).
    for _ in range(_MAX_REDRAW_ROUNDS):
        start = first + (stamps[rows] + offsets * GRID_SECONDS - first) % period
        _, firsts = np.unique(content[rows] * period + (start - first), return_index=True)
        collided = np.ones(n, dtype=bool)
        collided[firsts] = False
        if not collided.any():
            break
        offsets[collided] = rng.integers(-steps, steps + 1, size=int(collided.sum()))
    else:
        most = int(np.bincount(content[rows]).max())
        raise ResampleError(
            f"cannot give {most} copies of one trip distinct times within +-{jitter_days} days "
            f"({2 * steps + 1} slots); draw fewer than {n} rows or widen the jitter"
        )
    return _Draw(rows, start, start - stamps[rows], agrees[rows], seed)


def _assemble(frame: pd.DataFrame, draw: _Draw, as_text: bool) -> pd.DataFrame:
    """The drawn rows of `frame` (the sample as values, or as its CSV text) with the new times."""

    def put(column: str, new: np.ndarray, where: np.ndarray | None = None) -> None:
        old = out[column].to_numpy()
        if as_text:
            new = new.astype(np.int64).astype(str) if new.dtype.kind == "f" else new.astype(str)
        elif pd.api.types.is_numeric_dtype(frame[column]):
            new = new.astype(frame[column].dtype)
        out[column] = new if where is None else np.where(where, new, old)

    out = frame.iloc[draw.rows].reset_index(drop=True)
    put(schema.TIMESTAMP, draw.start)
    if END_TIMESTAMP in out.columns:
        # The same shift as the start, so every duration stays what it was.
        end = pd.to_numeric(out[END_TIMESTAMP], errors="coerce").to_numpy(dtype=float)
        put(END_TIMESTAMP, np.nan_to_num(end + draw.shift), where=~np.isnan(end))
    for column, values in calendar_of(draw.start).items():
        if column in out.columns:
            put(column, values, where=draw.rederive_calendar)
    for column in ID_COLUMNS:
        if column in out.columns:
            out[column] = np.char.add(f"r{draw.seed}-", np.arange(len(out)).astype(str))
    return out


def resample_trips(trips: pd.DataFrame, n: int, seed: int, jitter_days: float = DEFAULT_JITTER_DAYS) -> pd.DataFrame:
    """`n` trips drawn with replacement from `trips`, each moved by a random 15-minute multiple
    within +-`jitter_days` and wrapped into the sample's first..last start (module docstring)."""
    return _assemble(trips, _draw(trips, n, seed, jitter_days), as_text=False)


def _write_csv(text: pd.DataFrame, path: Path) -> None:
    """CSV of text cells exactly as given: Arrow's writer (seconds for millions of rows) when no
    cell needs quoting, as in the sample; pandas' otherwise."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    table = pa.Table.from_pandas(text, preserve_index=False)
    try:
        with open(path, "wb") as handle:
            handle.write((",".join(text.columns) + "\n").encode())
            pa_csv.write_csv(table, handle, pa_csv.WriteOptions(include_header=False, quoting_style="none"))
    except pa.ArrowInvalid:  # a cell holds a comma, quote or line break
        text.to_csv(path, index=False)


def _source_digest(source: Path) -> str:
    digest = hashlib.sha256(f"method-v{METHOD_VERSION}".encode())
    with open(source, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def resampled_path(n: int, seed: int, source: Path, cache_dir: Path | None = None) -> Path:
    """Where `write_resampled` caches `n` trips of `source` for `seed` (keyed by n, seed, the
    source's content and the method version)."""
    cache_dir = cache_dir or DEFAULT_CACHE_DIR
    return cache_dir / f"trips_n{n}_seed{seed}_{_source_digest(source)}.csv"


def write_resampled(
    n: int,
    out_path: Path | None = None,
    seed: int = 0,
    source: Path | None = None,
    jitter_days: float = DEFAULT_JITTER_DAYS,
    cache_dir: Path | None = None,
) -> Path:
    """`resample_trips` of `source` (default: the pipeline's TAXI_SOURCE_CSV) written as CSV with
    the sample's columns; with no `out_path` into the cache (`cache_dir`, default
    ~/.cache/chicago-taxi/resampled/), reused when already there."""
    source = Path(source or load_settings().source_csv)
    if out_path is None:
        if jitter_days != DEFAULT_JITTER_DAYS:
            raise ResampleError("the cache holds the default jitter only; pass out_path for another")
        out_path = resampled_path(n, seed, source, cache_dir)
        if out_path.exists():
            log.info("reusing %s", out_path)
            return out_path
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    draw = _draw(pd.read_csv(source), n, seed, jitter_days)
    # Every copied cell keeps the sample's own text ("0" stays "0", "0.0" stays "0.0").
    text = _assemble(pd.read_csv(source, dtype=str, keep_default_na=False), draw, as_text=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    _write_csv(text, tmp)
    tmp.replace(out_path)  # a reader never sees a half-written file
    log.info("wrote %d trips resampled from %s to %s", n, source, out_path)
    return out_path

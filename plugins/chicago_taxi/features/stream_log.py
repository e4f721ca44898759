"""The stream's memory of accepted trips, and each trip's statistics as of its start.

`company_half_hourly_stats` holds, for a company at a half-hour boundary B, the trips and mean
fare of its trips started in [B - 1 day, B) (`aggregates.compute_view`); training joins each
trip with the latest row at or before its start. For every streamed trip `stats_as_of` computes
exactly that row, with `compute_view` itself, over the union (by trip_id) of
- the batch history: `TAXI_STREAM_HISTORY` (default the raw source the taxi_features DAG
  aggregates into the offline store), filtered by the training gate's row expectations, each row
  with the replay's stable id `trip-<row>`; and
- every trip the stream has already accepted: the stream log kept beside the online store
  (Redis: `chicago_taxi:stream:*` keys; SQLite online store: `stream_log.db` next to it), keyed
  by trip_id, so a re-delivered message never counts twice, trimmed to
  `TAXI_STREAM_LOG_RETENTION_DAYS` (default 7, the raw topic's retention).

The same log remembers the content fingerprint (`messages.trip_fingerprint`) of every trip the
stream accepted, by trip_id (`contents` / `remember_contents`), so the stream can tell a
redelivery (same content: scored again, counted once) from another message sent under a known
trip_id (different content: dead-lettered). Fingerprints are kept for the same retention,
counted from when they were remembered (wall clock), since a trip's own start time is only
what the message says.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.core.config import Settings, StreamConfig
from chicago_taxi.core.jsonable import json_default
from chicago_taxi.core.process_cache import cached
from chicago_taxi.features.aggregates import EVENT_TIMESTAMP, compute_view, entity_keys
from chicago_taxi.ingest.messages import TRIP_ID
from chicago_taxi.quality.rows import failed_rows_pandas, quarantine_expectations

PUSH_LOCK_SECONDS = 120  # a push holds the lock well under a second per batch of 500
LOG_COLUMNS = (TRIP_ID, schema.TIMESTAMP, schema.LABEL, "trip_miles", "trip_seconds", *(e.column for e in schema.ENTITIES if e.column))


def stats_rows(trips: pd.DataFrame) -> pd.DataFrame:
    """The trips that can feed a statistic, with the columns compute_view reads: a usable fare is
    needed (the label's range: training quarantines a trip with any other, so its statistics
    never count one; the stream scores such a trip but counts it nowhere)."""
    frame = trips.reindex(columns=list(LOG_COLUMNS))
    label = schema.COLUMNS_BY_NAME[schema.LABEL]
    fares = pd.to_numeric(frame[schema.LABEL], errors="coerce")
    frame = frame[fares.between(label.min_value, label.max_value) & frame[schema.TIMESTAMP].notna()]
    return frame.reset_index(drop=True)


class RedisStreamLog:
    """Accepted trips in Redis, per view entity value: a sorted set of trip_ids scored by start
    time (range reads, retention) and a hash trip_id -> JSON record."""

    PREFIX = "chicago_taxi:stream"

    def __init__(self, settings: Settings):
        from redis import Redis

        host, port = settings.redis_address.rsplit(":", 1)
        self.address = settings.redis_address
        self.client = Redis(
            host=host, port=int(port), socket_connect_timeout=settings.redis_timeout_seconds, socket_timeout=settings.redis_timeout_seconds
        )

    def _keys(self, entity: str, value) -> tuple[str, str]:
        return redis_keys(self.PREFIX, entity, value)

    def lock(self):
        """Held around a batch's push (log, statistics, Feast push): scorers side by side push one
        at a time, each seeing every trip pushed before it. Expires after PUSH_LOCK_SECONDS if
        its holder dies; waiting longer than that raises redis' LockError (the batch is retried)."""
        return self.client.lock(f"{self.PREFIX}:push-lock", timeout=PUSH_LOCK_SECONDS, blocking_timeout=PUSH_LOCK_SECONDS)

    def add(self, rows: pd.DataFrame, entities: list[str], retention_seconds: float) -> None:
        keys = entity_keys(rows)
        pipe = self.client.pipeline(transaction=False)
        touched = set()
        for i, row in enumerate(rows.to_dict("records")):
            record = json.dumps(row, default=json_default)
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
        return pd.DataFrame(records, columns=list(LOG_COLUMNS))

    # Fingerprints: a hash trip_id -> fingerprint, and a sorted set trip_id -> when remembered
    # (retention). Their own prefix: no entity value's keys can take these names.
    CONTENTS, CONTENTS_SEEN = "chicago_taxi:stream_contents:fingerprints", "chicago_taxi:stream_contents:seen"

    def contents(self, trip_ids: list[str]) -> dict[str, str]:
        """The fingerprint of each of `trip_ids` the stream accepted before (unknown ids left out)."""
        if not trip_ids:
            return {}
        found = self.client.hmget(self.CONTENTS, trip_ids)
        return {t: f.decode() for t, f in zip(trip_ids, found) if f is not None}

    def remember_contents(self, fingerprints: dict[str, str], now: float, retention_seconds: float) -> None:
        if not fingerprints:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.CONTENTS, mapping=fingerprints)
        pipe.zadd(self.CONTENTS_SEEN, dict.fromkeys(fingerprints, now))
        pipe.execute()
        old = self.client.zrangebyscore(self.CONTENTS_SEEN, "-inf", f"({now - retention_seconds}", start=0, num=10_000)
        if old:
            self.client.zrem(self.CONTENTS_SEEN, *old)
            self.client.hdel(self.CONTENTS, *old)


class SqliteStreamLog:
    """The same log in a SQLite file beside the SQLite online store (embedded default)."""

    TABLE = "stream_trips_by_entity"
    CONTENTS = "stream_trip_contents"

    def __init__(self, settings: Settings):
        import sqlite3

        settings.feast_dir.mkdir(parents=True, exist_ok=True)
        self.address = str(settings.feast_dir / "stream_log.db")
        self.db = sqlite3.connect(self.address, timeout=30)
        # One key column per entity of schema.ENTITIES, typed as the entity's key.
        keys = ", ".join(f"{e.name} {'TEXT' if e.kind == 'string' else 'INTEGER'}" for e in schema.ENTITIES)
        self.db.execute(f"CREATE TABLE IF NOT EXISTS {self.TABLE} (trip_id TEXT PRIMARY KEY, ts REAL, {keys}, record TEXT)")
        self.db.execute(f"CREATE TABLE IF NOT EXISTS {self.CONTENTS} (trip_id TEXT PRIMARY KEY, fingerprint TEXT, seen REAL)")
        self.db.commit()

    @contextmanager
    def lock(self):
        """`RedisStreamLog.lock` for processes on this machine: an exclusive flock on a file beside
        the log (released by the kernel if its holder dies)."""
        import fcntl

        with open(f"{self.address}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def add(self, rows: pd.DataFrame, entities: list[str], retention_seconds: float) -> None:
        keys = entity_keys(rows)
        names = [e.name for e in schema.ENTITIES]
        marks = ", ".join("?" * (len(names) + 3))
        with self.db:
            self.db.executemany(
                f"INSERT OR REPLACE INTO {self.TABLE} (trip_id, ts, {', '.join(names)}, record) VALUES ({marks})",
                [
                    (
                        r[TRIP_ID],
                        float(r[schema.TIMESTAMP]),
                        *(schema.ENTITIES_BY_NAME[n].key_of(keys[n].iloc[i]) for n in names),
                        json.dumps(r, default=json_default),
                    )
                    for i, r in enumerate(rows.to_dict("records"))
                ],
            )
            newest = self.db.execute(f"SELECT MAX(ts) FROM {self.TABLE}").fetchone()[0]
            if newest is not None:
                self.db.execute(f"DELETE FROM {self.TABLE} WHERE ts < ?", (newest - retention_seconds,))

    def read(self, entity: str, values: Iterable, start: float, end: float) -> pd.DataFrame:
        spec = schema.ENTITIES_BY_NAME[entity]  # also guards the column name in the query
        values = [spec.key_of(v) for v in values]
        if not values:
            return pd.DataFrame(columns=list(LOG_COLUMNS))
        marks = ",".join("?" * len(values))
        cursor = self.db.execute(f"SELECT record FROM {self.TABLE} WHERE {spec.name} IN ({marks}) AND ts BETWEEN ? AND ?", (*values, start, end))
        return pd.DataFrame([json.loads(r) for (r,) in cursor], columns=list(LOG_COLUMNS))

    def contents(self, trip_ids: list[str]) -> dict[str, str]:
        found = {}
        for at in range(0, len(trip_ids), 500):  # SQLite caps the parameters of one statement
            chunk = trip_ids[at : at + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self.db.execute(f"SELECT trip_id, fingerprint FROM {self.CONTENTS} WHERE trip_id IN ({marks})", chunk).fetchall())
        return found

    def remember_contents(self, fingerprints: dict[str, str], now: float, retention_seconds: float) -> None:
        with self.db:
            self.db.executemany(
                f"INSERT OR REPLACE INTO {self.CONTENTS} (trip_id, fingerprint, seen) VALUES (?, ?, ?)",
                [(t, f, now) for t, f in fingerprints.items()],
            )
            self.db.execute(f"DELETE FROM {self.CONTENTS} WHERE seen < ?", (now - retention_seconds,))


def redis_keys(prefix: str, entity: str, value) -> tuple[str, str]:
    """The sorted-set and hash keys of one entity value. The value is percent-encoded, so no value
    (a company named "X:trips", say) can produce another value's key."""
    index = f"{prefix}:{entity}:{quote(str(value), safe='', errors='surrogatepass')}"
    return index, f"{index}:trips"


def open_stream_log(settings: Settings):
    if settings.online_store == "redis":
        return RedisStreamLog(settings)
    return SqliteStreamLog(settings)


def load_history(path: Path | str, expectations_dir: Path) -> pd.DataFrame:
    """Past trips as the offline store sees them: the rows of the raw source that pass the
    training gate's row-level expectations, with the producer's ids (`trip-<row>`)."""
    from chicago_taxi.ingest.messages import trip_id_for

    path = Path(path)
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if TRIP_ID not in frame:
        frame.insert(0, TRIP_ID, [trip_id_for(i) for i in range(len(frame))])
    failed = failed_rows_pandas(frame, quarantine_expectations(expectations_dir, streaming=False))
    keep = np.ones(len(frame), dtype=bool)
    keep[list(failed)] = False
    return stats_rows(frame[keep])


def history_for(settings: Settings, config: StreamConfig) -> pd.DataFrame:
    source = config.history or str(settings.source_csv)
    if source.lower() in ("none", "off", "0"):
        return pd.DataFrame(columns=list(LOG_COLUMNS))
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"TAXI_STREAM_HISTORY {path} does not exist (set it to 'none' to push statistics of streamed trips only)")
    stat = path.stat()
    return cached(("history", str(path.resolve()), stat.st_mtime_ns, stat.st_size), lambda: load_history(path, settings.expectations_dir))


def stats_as_of(trips: pd.DataFrame, known: pd.DataFrame, view: schema.StoreView) -> pd.DataFrame:
    """For each trip (row order kept), the view's row as of the trip's start: the `compute_view`
    row at the latest boundary B <= start with B >= start - window, over `known` trips (which
    must already contain the new ones). Columns: the entity, event_timestamp (NaT when the view
    has no live row as of the trip) and the view's features."""
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


def known_trips(batch: pd.DataFrame, eligible: pd.DataFrame, history: pd.DataFrame, stream_log, view: schema.StoreView) -> pd.DataFrame:
    """History + stream log + the batch's trips with a fare, for the batch's entities over the
    span the rows as of the batch's trips need."""
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
        return pd.DataFrame(columns=list(LOG_COLUMNS))
    known = pd.concat(parts, ignore_index=True)
    # The same trip from several places (a replayed sample row, a redelivered message): once.
    return known.drop_duplicates(TRIP_ID, keep="last").reset_index(drop=True)

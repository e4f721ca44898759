"""Push the statistics of streamed trips to the online store through Feast's push source.

Per entity, the newest row as of the batch's trips is pushed (`store.push`) only when it is newer
than the row the online store holds: Feast's Redis store ignores older or same-timestamp writes
and its SQLite store would overwrite newer ones, so this check makes both behave alike and keeps
materialized rows from being replaced by older ones. Because a pushed row covers trips *before*
the trip's half hour, a trip's own fare reaches the online store with the next push of its
company from a later half hour (or the next offline rebuild and materialization). Trips without
a fare are scored but feed no statistic. Known limits: a row already stored for boundary B is not
rewritten when a late trip of [B - 1 day, B) arrives (same timestamp); the next boundary's row
includes it. The half-hourly materialization writes rows computed from the offline store, which
holds only the batch history, so a materialized row does not count trips only the stream saw.

On Redis the rows are written straight into Feast's layout (`features.redis_layout`), the bytes
Feast's push would write, without importing feast (8 s of a stream scorer's cold start) and
without its per-push overhead; the SQLite online store, or a Feast store given, goes through
`store.push`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.core.config import Settings, StreamConfig
from chicago_taxi.core.process_cache import cached
from chicago_taxi.features.stream_log import LOG_COLUMNS, history_for, known_trips, open_stream_log, stats_as_of, stats_rows

PUSH_SOURCE = "company_stats_push"
# The views feature_repo/features.py feeds from PUSH_SOURCE: what the Redis path pushes without
# reading the registry (a test holds it equal to the applied registry's).
PUSHED_VIEW_NAMES = ("company_half_hourly_stats",)
PUSHED_VIEWS = tuple(v for v in schema.STORE_VIEWS if v.name in PUSHED_VIEW_NAMES)
if len(PUSHED_VIEWS) != len(PUSHED_VIEW_NAMES):
    raise ValueError(f"PUSHED_VIEW_NAMES {PUSHED_VIEW_NAMES} names views schema.STORE_VIEWS does not define")


def pushed_views(store) -> list[schema.StoreView]:
    """The schema views the push source feeds, read from the applied Feast registry."""
    by_name = {v.name: v for v in schema.STORE_VIEWS}
    names = [fv.name for fv in store.list_feature_views() if getattr(fv, "stream_source", None) is not None and fv.stream_source.name == PUSH_SOURCE]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"push source {PUSH_SOURCE} feeds {unknown}, which schema.STORE_VIEWS does not define")
    if not names:
        raise ValueError(f"no feature view in the Feast registry is fed by the push source {PUSH_SOURCE}: run `feast apply` (the taxi_features DAG)")
    return [by_name[n] for n in names]


def stored_timestamps(store, view: schema.StoreView, values: list) -> dict:
    feature = view.features[0]
    response = store.get_online_features(features=[f"{view.name}:{feature}"], entity_rows=[{view.entity: v} for v in values]).to_dict(
        include_event_timestamps=True
    )
    stamps = response.get(f"{feature}__ts", [None] * len(values))
    return {v: (None if s is None else pd.Timestamp(float(s), unit="s", tz="UTC")) for v, s in zip(values, stamps)}


class FeastPush:
    """The push through a Feast `FeatureStore` (the SQLite online store, or a store given)."""

    def __init__(self, store):
        self.store = store

    def views(self) -> list[schema.StoreView]:
        return pushed_views(self.store)

    def stored_timestamps(self, view: schema.StoreView, values: list) -> dict:
        return stored_timestamps(self.store, view, values)

    def write(self, view: schema.StoreView, frame: pd.DataFrame) -> None:
        self.store.push(PUSH_SOURCE, frame.reset_index(drop=True))


class RedisPush:
    """Feast's push into its Redis layout without the feast package (`features.redis_layout`)."""

    def __init__(self, writer, registry_path):
        self.writer = writer
        self.registry_path = registry_path

    def views(self) -> list[schema.StoreView]:
        if self.registry_path is not None and not self.registry_path.exists():
            raise FileNotFoundError(
                f"the Feast registry {self.registry_path} does not exist, so no view is fed by the push source {PUSH_SOURCE}: run `feast apply` (the taxi_features DAG)"
            )
        return list(PUSHED_VIEWS)

    def stored_timestamps(self, view: schema.StoreView, values: list) -> dict:
        return self.writer.stored_timestamps(view, values)

    def write(self, view: schema.StoreView, frame: pd.DataFrame) -> None:
        from chicago_taxi.features.aggregates import EVENT_TIMESTAMP

        self.writer.write(view, frame, EVENT_TIMESTAMP)


def push_target(settings: Settings, store=None) -> FeastPush | RedisPush:
    """Where `push_features` writes: Feast's Redis layout directly on Redis, else through Feast
    (a store given is always used). Built once per process and configuration."""
    from chicago_taxi.features.store import feature_store

    if store is not None:
        return FeastPush(store)
    if settings.online_store != "redis":
        return FeastPush(cached(("store", settings.online_store, settings.redis_address, str(settings.feast_dir)), lambda: feature_store(settings)))
    from chicago_taxi.features.redis_layout import RedisFeatureWriter, redis_client, redis_store_config

    config = redis_store_config(settings)

    def build() -> RedisPush:
        client = redis_client(config.connection_string)
        writer = RedisFeatureWriter(client, config.project, config.serialization_version, config.key_ttl_seconds, config.skip_dedup)
        return RedisPush(writer, config.registry_path)

    return cached(("redis push", config), build)


@dataclass
class PushOutcome:
    as_of: dict[str, pd.DataFrame]  # view name -> per-trip rows (stats_as_of)
    pushed_rows: int = 0
    skipped: int = 0
    pushed_keys: set = field(default_factory=set)  # (view, entity value, boundary) written


def push_features(trips: list[dict], settings: Settings, config: StreamConfig, store=None) -> PushOutcome:
    """Record the batch in the stream log, compute each trip's statistics as of its start, and
    push per entity the newest row when it is newer than the stored one."""
    import sqlite3

    from redis.exceptions import LockError, RedisError

    from chicago_taxi.features.aggregates import CREATED, EVENT_TIMESTAMP
    from chicago_taxi.features.store import OnlineStoreUnavailable

    target = push_target(settings, store)
    views = target.views()
    batch = pd.DataFrame.from_records(trips).reindex(columns=list(LOG_COLUMNS))
    eligible = stats_rows(batch)
    outcome = PushOutcome(as_of={})
    address = settings.redis_address if settings.online_store == "redis" else str(settings.feast_dir / "online.db")
    try:
        stream_log = open_stream_log(settings)
        history = history_for(settings, config)
        with stream_log.lock():  # scorers side by side push one at a time (batch.py: scale-out)
            if not eligible.empty:
                stream_log.add(eligible, [v.entity for v in views], config.log_retention_days * 86400)
            for view in views:
                known = known_trips(batch, eligible, history, stream_log, view)
                rows = stats_as_of(batch, known, view)
                outcome.as_of[view.name] = rows
                live = rows.dropna(subset=[EVENT_TIMESTAMP])
                if live.empty:
                    continue
                newest = live.sort_values(EVENT_TIMESTAMP).groupby(view.entity, sort=False).tail(1)
                stored = target.stored_timestamps(view, newest[view.entity].tolist())
                newer = newest[[stored[v] is None or t > stored[v] for v, t in zip(newest[view.entity], newest[EVENT_TIMESTAMP])]]
                outcome.skipped += len(newest) - len(newer)
                if newer.empty:
                    continue
                frame = newer[[view.entity, EVENT_TIMESTAMP, *view.features]].copy()
                for feature in view.features:
                    frame[feature] = frame[feature].astype(schema.FEATURE_SPECS[feature].dtype)
                frame[CREATED] = pd.Timestamp.now(tz="UTC")
                target.write(view, frame)
                outcome.pushed_rows += len(frame)
                outcome.pushed_keys.update((view.name, v, t) for v, t in zip(frame[view.entity], frame[EVENT_TIMESTAMP]))
    except (RedisError, LockError, sqlite3.Error) as exc:
        raise OnlineStoreUnavailable(
            f"online store at {address} failed while pushing streamed features "
            f"({type(exc).__name__}: {exc}); nothing published or committed, the messages stay pending"
        ) from exc
    return outcome

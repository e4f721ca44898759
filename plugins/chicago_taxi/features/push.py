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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.core.config import Settings, StreamConfig
from chicago_taxi.core.process_cache import cached
from chicago_taxi.features.stream_log import LOG_COLUMNS, history_for, known_trips, open_stream_log, stats_as_of, stats_rows

PUSH_SOURCE = "company_stats_push"


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
    from chicago_taxi.features.store import OnlineStoreUnavailable, feature_store

    store = (
        store
        if store is not None
        else cached(("store", settings.online_store, settings.redis_address, str(settings.feast_dir)), lambda: feature_store(settings))
    )
    views = pushed_views(store)
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
                stored = stored_timestamps(store, view, newest[view.entity].tolist())
                newer = newest[[stored[v] is None or t > stored[v] for v, t in zip(newest[view.entity], newest[EVENT_TIMESTAMP])]]
                outcome.skipped += len(newest) - len(newer)
                if newer.empty:
                    continue
                frame = newer[[view.entity, EVENT_TIMESTAMP, *view.features]].copy()
                for feature in view.features:
                    frame[feature] = frame[feature].astype(schema.FEATURE_SPECS[feature].dtype)
                frame[CREATED] = pd.Timestamp.now(tz="UTC")
                store.push(PUSH_SOURCE, frame.reset_index(drop=True))
                outcome.pushed_rows += len(frame)
                outcome.pushed_keys.update((view.name, v, t) for v, t in zip(frame[view.entity], frame[EVENT_TIMESTAMP]))
    except (RedisError, LockError, sqlite3.Error) as exc:
        raise OnlineStoreUnavailable(
            f"online store at {address} failed while pushing streamed features "
            f"({type(exc).__name__}: {exc}); nothing published or committed, the messages stay pending"
        ) from exc
    return outcome

"""The Feast feature store: `feast apply` of feature_repo/, windowed materialization by cadence, online lookups that honour TTL, and training joins.

Time: trip timestamps are Chicago wall-clock time stored as UTC and are never shifted. To
replay the 2013-2016 trips "now", the *clock* is shifted instead: data time = wall time minus
`TAXI_REPLAY_OFFSET_DAYS` (`Settings.data_time`). Materialization windows and TTL checks use
data time; reports show the offset.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.core.config import Settings, historical_join_engine, load_settings, offline_engine
from chicago_taxi.features.aggregates import EVENT_TIMESTAMP, entity_keys

log = logging.getLogger(__name__)


class FeatureDefinitionError(ValueError):
    """A Feast definition does not match the data it reads (e.g. names a missing column)."""


class OnlineStoreUnavailable(RuntimeError):
    """The online store (Redis) cannot be reached; the task fails and Airflow retries it."""


# ---------------------------------------------------------------- Feast repository
def configure_feast_env(settings: Settings) -> None:
    """feature_store.yaml reads these with ${VAR}; set them from the project's settings."""
    if settings.online_store == "redis":
        # Short socket timeouts: a down Redis must fail a lookup in about a second, not hang it.
        timeouts = f"socket_connect_timeout={settings.redis_timeout_seconds},socket_timeout={settings.redis_timeout_seconds}"
        os.environ["FEAST_ONLINE_STORE"] = f'{{type: redis, connection_string: "{settings.redis_address},{timeouts}"}}'
    elif settings.online_store == "sqlite":
        settings.feast_dir.mkdir(parents=True, exist_ok=True)
        os.environ["FEAST_ONLINE_STORE"] = f'{{type: sqlite, path: "{settings.feast_dir / "online.db"}"}}'
    else:
        raise ValueError(f"TAXI_ONLINE_STORE={settings.online_store!r}: expected 'redis' or 'sqlite'")
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    os.environ["FEAST_REGISTRY_PATH"] = str(settings.feast_dir / "registry.db")
    os.environ["TAXI_FEATURES_DIR"] = str(settings.features_dir)


@contextmanager
def registry_lock(settings: Settings):
    """Serialize the writers of the Feast registry (apply, materialize) across processes.

    Materialize reads the registry, writes the online store, then writes the registry back with
    its new interval: without the lock, two runs finishing together lose one's update (and
    Feast's stock file store even corrupted the file; see chicago_taxi.features.registry_store)."""
    import fcntl

    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.feast_dir / "registry.lock", "a") as handle:
        waited = time.perf_counter()
        fcntl.flock(handle, fcntl.LOCK_EX)
        if time.perf_counter() - waited > 1:
            log.info("waited %.1f s for the Feast registry lock", time.perf_counter() - waited)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_store_yaml(settings: Settings) -> dict:
    """feature_repo/feature_store.yaml as Feast reads it (`feast.repo_config.load_repo_config`:
    environment variables substituted, then YAML), without importing feast."""
    import yaml

    configure_feast_env(settings)
    return yaml.safe_load(os.path.expandvars((settings.feature_repo / "feature_store.yaml").read_text()))


def feature_store(settings: Settings | None = None):
    from feast import FeatureStore

    settings = settings or load_settings()
    configure_feast_env(settings)
    return FeatureStore(repo_path=str(settings.feature_repo))


def repo_objects(settings: Settings) -> list:
    """Every Feast object defined in feature_repo/ (entities, sources, views, services)."""
    import importlib

    configure_feast_env(settings)
    sys.path.insert(0, str(settings.feature_repo))
    try:
        objects = []
        for module_name in ("entities", "data_sources", "features", "feature_services"):
            module = importlib.reload(importlib.import_module(module_name)) if module_name in sys.modules else importlib.import_module(module_name)
            objects += [v for v in vars(module).values() if _is_feast_object(v)]
        return list({id(o): o for o in objects}.values())
    finally:
        sys.path.remove(str(settings.feature_repo))


def _is_feast_object(value) -> bool:
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    return isinstance(value, (Entity, FeatureView, FeatureService, DataSource))


def check_definitions(objects: list) -> None:
    """Feast's apply accepts a view naming a column its source lacks (it fails later, at
    materialize, with a bare KeyError); check here and name the view, column and file."""
    import pyarrow.parquet as pq
    from feast import FeatureView

    for view in (o for o in objects if isinstance(o, FeatureView)):
        source = view.batch_source
        path = getattr(source, "path", None)
        if not path or not Path(path).exists():
            raise FeatureDefinitionError(f"feature view {view.name}: source file {path} does not exist (run the taxi_features DAG first)")
        columns = set(pq.read_schema(path).names)
        wanted = [f.name for f in view.schema] + list(view.join_keys) + [source.timestamp_field]
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise FeatureDefinitionError(f"feature view {view.name} names column(s) {missing} missing from {path} (has {sorted(columns)})")


def apply_definitions(settings: Settings | None = None) -> dict:
    settings = settings or load_settings()
    objects = repo_objects(settings)
    check_definitions(objects)
    with registry_lock(settings):
        store = feature_store(settings)
        store.apply(objects)
    return {"applied": sorted(f"{type(o).__name__}:{o.name}" for o in objects), "registry": str(settings.feast_dir / "registry.db")}


# ---------------------------------------------------------------- materialization
@dataclass
class MaterializeResult:
    cadence: str
    views: list[str]
    data_start: str
    data_end: str
    replay_offset_days: float
    rows: int
    seconds: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def views_for_cadence(cadence: str) -> list[schema.StoreView]:
    views = [v for v in schema.STORE_VIEWS if v.cadence == cadence]
    if not views:
        raise ValueError(f"no feature view has cadence {cadence!r}; known: {sorted({v.cadence for v in schema.STORE_VIEWS})}")
    return views


def materialize_window(cadence: str, interval_start: datetime, interval_end: datetime, settings: Settings | None = None) -> dict:
    """Materialize only `cadence`'s views over [start - overlap, end] in data time. The same
    window always writes the same values, so reruns and backfills are idempotent."""
    from redis.exceptions import RedisError

    settings = settings or load_settings()
    views = views_for_cadence(cadence)
    start = settings.data_time(interval_start) - timedelta(minutes=settings.materialize_overlap_minutes)
    end = settings.data_time(interval_end)
    rows = 0
    for view in views:
        path = settings.features_dir / f"{view.name}.parquet"
        if not path.exists():
            raise FeatureDefinitionError(f"offline store {path} is missing: run the taxi_features DAG first")
        stamps = pd.read_parquet(path, columns=[EVENT_TIMESTAMP])[EVENT_TIMESTAMP]
        rows += int(((stamps >= start) & (stamps <= end)).sum())
    started = time.perf_counter()
    result = MaterializeResult(cadence, [v.name for v in views], start.isoformat(), end.isoformat(), settings.replay_offset_days, rows, 0.0)
    if rows == 0:
        log.info(
            "empty window %s .. %s (data time, replay offset %s days): nothing to materialize for %s",
            start,
            end,
            settings.replay_offset_days,
            result.views,
        )
        return result.as_dict()
    try:
        with registry_lock(settings):
            store = feature_store(settings)
            store.materialize(start, end, feature_views=result.views)
    except RedisError as exc:
        raise OnlineStoreUnavailable(f"Redis at {settings.redis_address} failed while materializing {result.views}: {exc}") from exc
    result.seconds = round(time.perf_counter() - started, 3)
    log.info(
        "materialized %d rows of %s for %s .. %s (data time; replay offset %s days)", rows, result.views, start, end, settings.replay_offset_days
    )
    return result.as_dict()


# ---------------------------------------------------------------- reads
def online_features(store, trips: pd.DataFrame, data_now: datetime) -> tuple[pd.DataFrame, list[list[str]]]:
    """Store features for each trip in one Feast call for the whole batch, TTL enforced against
    `data_now` (Feast's online read does not enforce TTL). Returns the features (NaN where absent
    or expired) and, per trip, the names of the features that were absent."""
    keys = entity_keys(trips).reset_index(drop=True)
    refs = [f"{view.name}:{f}" for view in schema.STORE_VIEWS for f in view.features]
    entity_columns = sorted({view.entity for view in schema.STORE_VIEWS})
    rows = keys[entity_columns].to_dict("records")
    response = store.get_online_features(features=refs, entity_rows=rows).to_dict(include_event_timestamps=True)
    out = pd.DataFrame(index=keys.index)
    for view in schema.STORE_VIEWS:
        for feature in view.features:
            values = pd.Series(response[feature], dtype="float64")
            # Event timestamps come back as epoch seconds.
            stamps = pd.to_datetime(pd.Series(response.get(f"{feature}__ts", [None] * len(rows)), dtype="float64"), unit="s", utc=True)
            expired = stamps.isna() | (stamps < pd.Timestamp(data_now) - timedelta(minutes=view.window_minutes))
            out[feature] = values.where(~expired)
    return out, defaulted_features({f: out[f].to_numpy(dtype=float) for f in schema.STORE_FEATURES})


def defaulted_features(values: dict[str, np.ndarray]) -> list[list[str]]:
    """Per trip, the store features it has no value for (NaN: the model fills the training default)."""
    names = list(schema.STORE_FEATURES)
    missing = np.isnan(np.stack([np.asarray(values[f], dtype=float) for f in names], axis=1))
    return [[name for name, absent in zip(names, row) if absent] for row in missing.tolist()]


def historical_features(trips: pd.DataFrame, settings: Settings | None = None, engine: str | None = None) -> pd.DataFrame:
    """Point-in-time join of the store features onto trips (as of each trip's start): each trip,
    in order, with the latest row of each view's entity at or before its start and within the
    view's TTL, NaN where there is none.

    `engine` (TAXI_HISTORICAL_JOIN): "asof" (default) joins the offline store's files itself, one
    sorted `merge_asof` per view: linear after the sort. "feast" asks Feast's file offline store,
    whose join grows with trips x rows per key (15k trips: 50 s; 150k did not finish in 25 min,
    `make bench-scaling`). A test holds both to the same values on the sample. With
    TAXI_OFFLINE_ENGINE=spark and no `engine` given, Spark joins (`features.spark_engine`)."""
    settings = settings or load_settings()
    if engine is None and offline_engine() == "spark":
        from chicago_taxi.features.spark_engine import historical_features_spark

        return historical_features_spark(trips, settings)
    engine = engine or historical_join_engine()
    if engine == "asof":
        return historical_features_asof(trips, settings)
    if engine != "feast":
        raise ValueError(f"historical join engine {engine!r} (TAXI_HISTORICAL_JOIN): expected asof or feast")
    return historical_features_feast(trips, settings)


def historical_features_asof(trips: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """`historical_features` by `pandas.merge_asof` over the offline store's Parquet files (the
    files the Feast views' sources name), as Feast's historical retrieval defines the join."""
    trips = trips.reset_index(drop=True)
    keys = entity_keys(trips)
    starts = pd.to_datetime(trips[schema.TIMESTAMP].astype("int64").to_numpy(), unit="s", utc=True)
    result = trips.copy()
    for view in schema.STORE_VIEWS:
        path = settings.features_dir / f"{view.name}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"offline store file {path} is missing: run the taxi_features DAG (build_offline_store) first")
        source = pd.read_parquet(path, columns=[view.entity, EVENT_TIMESTAMP, *view.features])
        source[view.entity] = source[view.entity].astype(keys[view.entity].dtype)
        source[EVENT_TIMESTAMP] = pd.to_datetime(source[EVENT_TIMESTAMP], utc=True).astype(starts.dtype)
        left = pd.DataFrame({"_row": np.arange(len(trips)), view.entity: keys[view.entity].to_numpy(), EVENT_TIMESTAMP: starts})
        joined = pd.merge_asof(
            left.sort_values(EVENT_TIMESTAMP, kind="stable"),
            source.sort_values(EVENT_TIMESTAMP, kind="stable"),
            on=EVENT_TIMESTAMP,
            by=view.entity,
            direction="backward",
            tolerance=pd.Timedelta(minutes=view.window_minutes),
        ).sort_values("_row")
        for feature in view.features:
            result[feature] = joined[feature].astype("float64").to_numpy()
    return result


def historical_features_feast(trips: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """`historical_features` through Feast's file offline store. It drops rows without a value
    inside the TTL, so the result is merged back onto every trip, in order, with NaN where the
    store had nothing."""
    store = feature_store(settings)
    keys = entity_keys(trips).reset_index(drop=True)
    entity_df = keys.assign(**{EVENT_TIMESTAMP: pd.to_datetime(trips[schema.TIMESTAMP].astype("int64").to_numpy(), unit="s", utc=True)})
    service = store.get_feature_service("fare_model_features")
    views = {v.name: v for v in schema.STORE_VIEWS}
    # Feast's file offline store merges every entity row with every source row of its key, then
    # filters by time, and Dask hashes each intermediate frame (xxhash, in requirements.txt, makes
    # it 2x faster than the sha1 fallback; with it and an integer city key the three views take
    # 50 s instead of 133). So: one view at a time (with several, Feast also
    # drops a trip when any view has no row in TTL); month by month (bounded memory); and each
    # distinct (key, start time) once (Feast keeps one row per pair, and trips start in
    # 15-minute buckets), the values mapped back to every trip that shares it.
    joined = pd.DataFrame(index=pd.RangeIndex(len(keys)))
    for projection in service.feature_view_projections:
        refs = [f"{projection.name}:{f.name}" for f in projection.features]
        columns = [views[projection.name].entity, EVENT_TIMESTAMP]
        key_row = entity_df.groupby(columns, sort=False).ngroup().to_numpy()
        unique = entity_df[columns].assign(_key_row=key_row).drop_duplicates("_key_row")
        months = unique[EVENT_TIMESTAMP].dt.strftime("%Y-%m")
        parts = [store.get_historical_features(entity_df=part, features=refs).to_df() for _, part in unique.groupby(months)]
        view_frame = pd.concat(parts, ignore_index=True).drop_duplicates("_key_row").set_index("_key_row")
        for f in projection.features:
            joined[f.name] = view_frame[f.name].reindex(key_row).to_numpy()
    result = trips.reset_index(drop=True).copy()
    for feature in schema.STORE_FEATURES:
        result[feature] = joined[feature].astype("float64").to_numpy()
    return result


def warm_online_store(settings: Settings | None = None, now: datetime | None = None) -> list[dict]:
    """Materialize every view over its own TTL window ending now (data time = now minus the
    replay offset): what a freshly started online store needs before serving."""
    settings = settings or load_settings()
    now = now or datetime.now(UTC)
    results = []
    for cadence in sorted({v.cadence for v in schema.STORE_VIEWS}):
        window = max(v.window_minutes for v in views_for_cadence(cadence))
        results.append(materialize_window(cadence, now - timedelta(minutes=window), now, settings))
    return results


if __name__ == "__main__":
    if sys.argv[1:] != ["warm"]:
        sys.exit("usage: python -m chicago_taxi.features.store warm   (materialize every view over its TTL window ending now)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for result in warm_online_store():
        print(
            f"{result['cadence']}: {result['rows']} rows of {', '.join(result['views'])} for {result['data_start']} .. {result['data_end']} (data time)"
        )

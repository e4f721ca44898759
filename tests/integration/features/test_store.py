"""The Feast feature store against a real Redis: materialized values equal an independent pandas
computation, windows are idempotent, cadences are separate, TTL is honoured, and the
materialization DAGs run through Airflow."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from chicago_taxi.core import schema
from chicago_taxi.core.config import load_settings
from chicago_taxi.features import aggregates
from chicago_taxi.features import store as feast_store
from fixtures.env import REPO_ROOT, free_port, project_env, redis_feature_store

# A data-time instant well inside the sample, and the wall-clock time that replays it.
DATA_NOW = datetime(2016, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def store_settings(redis_server, clean_trips, tmp_path_factory, trips):
    tmp = tmp_path_factory.mktemp("feast")
    with redis_feature_store(redis_server, trips, tmp) as (settings, valid, env):
        yield settings, valid, tmp, env


def wall_clock_for(settings, data_time: datetime) -> datetime:
    return data_time + timedelta(days=settings.replay_offset_days)


def flush(port):
    import redis

    redis.Redis(host="127.0.0.1", port=port).flushall()


def expected_area_stats(valid: pd.DataFrame, area: int, at: pd.Timestamp) -> dict:
    """Independent computation: trips of the area started in the 7 days before the last hour
    boundary at or before `at`."""
    boundary = int(at.timestamp()) // 3600 * 3600
    ts = valid.trip_start_timestamp
    area_trips = valid[(valid.pickup_community_area.fillna(0) == area) & (ts < boundary) & (ts >= boundary - 7 * 86400)]
    miles = area_trips[area_trips.trip_miles > 0]
    return {
        "area_trips_7d": len(area_trips),
        "area_fare_per_mile_7d": miles.fare.sum() / miles.trip_miles.sum() if len(miles) else np.nan,
        "area_trip_seconds_7d": area_trips.trip_seconds.mean(),
    }


def expected_fare_index(valid: pd.DataFrame, at: pd.Timestamp) -> float:
    """Independent computation: median fare / meter fare ($3.25 + $1.80/mile + $0.20 per 36 s)
    of the city's trips with miles and seconds, started in the 14 days before `at`'s hour."""
    boundary = int(at.timestamp()) // 3600 * 3600
    ts = valid.trip_start_timestamp
    window = valid[(ts < boundary) & (ts >= boundary - 14 * 86400) & (valid.trip_miles > 0) & (valid.trip_seconds > 0)]
    return float((window.fare / (3.25 + 1.80 * window.trip_miles + 0.20 * window.trip_seconds / 36)).median())


def test_online_values_equal_an_independent_pandas_computation(store_settings, redis_server):
    settings, valid, _, _ = store_settings
    flush(redis_server)
    wall = wall_clock_for(settings, DATA_NOW)
    result = feast_store.materialize_window("hourly", wall - timedelta(days=7), wall, settings)
    assert result["rows"] > 0 and result["replay_offset_days"] == settings.replay_offset_days
    store = feast_store.feature_store(settings)
    # The latest area rows written before DATA_NOW: recompute each from raw trips.
    area_rows = pd.read_parquet(settings.features_dir / "area_hourly_stats.parquet")
    latest = area_rows[area_rows.event_timestamp <= DATA_NOW].sort_values("event_timestamp").groupby("pickup_community_area").tail(1)
    latest = latest[latest.event_timestamp >= DATA_NOW - timedelta(days=7)]
    assert len(latest) >= 3
    trips = pd.DataFrame({"pickup_community_area": latest.pickup_community_area.to_numpy(), "company": "nobody"})
    online, defaulted = feast_store.online_features(store, trips, DATA_NOW)
    for i, (_, row) in enumerate(latest.iterrows()):
        expected = expected_area_stats(valid, row.pickup_community_area, row.event_timestamp)
        for name, value in expected.items():
            assert online[name][i] == pytest.approx(value, rel=1e-5, nan_ok=True), (row.pickup_community_area, name)
        assert {"company_trips_1d", "company_fare_1d"} <= set(defaulted[i])  # company "nobody" is unknown
    # The city-wide fare index: one row per hour, the latest before DATA_NOW.
    city_rows = pd.read_parquet(settings.features_dir / "city_hourly_fare_index.parquet")
    city_latest = city_rows[city_rows.event_timestamp <= DATA_NOW].sort_values("event_timestamp").iloc[-1]
    index = expected_fare_index(valid, city_latest.event_timestamp)
    assert 0.5 < index < 2
    assert online["city_fare_index_14d"].tolist() == pytest.approx([index] * len(latest), rel=1e-5)


def test_same_window_twice_and_a_backfill_leave_identical_values(store_settings, redis_server):
    import redis

    settings, _, _, _ = store_settings
    client = redis.Redis(host="127.0.0.1", port=redis_server)
    flush(redis_server)
    wall = wall_clock_for(settings, DATA_NOW)

    def snapshot():
        return {k: client.hgetall(k) for k in sorted(client.scan_iter())}

    feast_store.materialize_window("hourly", wall - timedelta(days=2), wall, settings)
    first = snapshot()
    feast_store.materialize_window("hourly", wall - timedelta(days=2), wall, settings)
    assert snapshot() == first
    flush(redis_server)
    # A backfill: the same span, hour by hour.
    for hour in range(48, 0, -1):
        feast_store.materialize_window("hourly", wall - timedelta(hours=hour), wall - timedelta(hours=hour - 1), settings)
    assert snapshot() == first


def test_hourly_never_touches_half_hourly_views_and_the_reverse(store_settings, redis_server):
    settings, valid, _, _ = store_settings
    store = feast_store.feature_store(settings)
    wall = wall_clock_for(settings, DATA_NOW)
    trips = valid[(valid.trip_start_timestamp < DATA_NOW.timestamp()) & (valid.trip_start_timestamp > DATA_NOW.timestamp() - 86400 * 3)]
    for cadence, own, other in (("hourly", "area_trips_7d", "company_trips_1d"), ("half_hourly", "company_trips_1d", "area_trips_7d")):
        flush(redis_server)
        feast_store.materialize_window(cadence, wall - timedelta(days=7), wall, settings)
        online, _ = feast_store.online_features(store, trips, DATA_NOW)
        assert online[own].notna().any(), cadence
        assert online[other].isna().all(), cadence


def test_values_past_their_ttl_are_not_served(store_settings, redis_server):
    settings, valid, _, _ = store_settings
    store = feast_store.feature_store(settings)
    flush(redis_server)
    wall = wall_clock_for(settings, DATA_NOW)
    feast_store.materialize_window("half_hourly", wall - timedelta(days=1), wall, settings)
    trips = valid[(valid.trip_start_timestamp < DATA_NOW.timestamp()) & (valid.trip_start_timestamp > DATA_NOW.timestamp() - 86400)]
    fresh, _ = feast_store.online_features(store, trips, DATA_NOW)
    assert fresh.company_trips_1d.notna().any()
    stale, defaulted = feast_store.online_features(store, trips, DATA_NOW + timedelta(days=2))  # TTL is 1 day
    assert stale.company_trips_1d.isna().all()
    assert all("company_trips_1d" in d for d in defaulted)


def test_the_serving_redis_reader_reads_what_feast_reads(store_settings, redis_server):
    """`features.redis_reader` reads Feast's Redis layout itself (the prediction service's fast
    path): the same values, and the same absences, as `get_online_features`, fresh and past TTL."""
    import redis

    from chicago_taxi.features.redis_reader import RedisFeatureReader

    settings, valid, _, _ = store_settings
    store = feast_store.feature_store(settings)
    flush(redis_server)
    wall = wall_clock_for(settings, DATA_NOW)
    for cadence in ("hourly", "half_hourly"):
        feast_store.materialize_window(cadence, wall - timedelta(days=7), wall, settings)
    recent = valid[(valid.trip_start_timestamp < DATA_NOW.timestamp()) & (valid.trip_start_timestamp > DATA_NOW.timestamp() - 86400 * 3)]
    odd = pd.DataFrame({"pickup_community_area": [np.nan, 77, 99], "company": [None, "  ", "A company nobody knows"]})
    trips = pd.concat([recent, odd], ignore_index=True)
    records = [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in trips[["pickup_community_area", "company"]].to_dict("records")]
    keys = aggregates.record_entity_keys(records)
    frame_keys = aggregates.entity_keys(trips)
    assert all(keys[e] == frame_keys[e].tolist() for e in keys)  # the same keys as the frame path
    reader = RedisFeatureReader(redis.Redis(host="127.0.0.1", port=redis_server), store.config.project, store.config.entity_key_serialization_version)
    for data_now in (DATA_NOW, DATA_NOW + timedelta(days=1, hours=12)):  # the second: company values past their 1-day TTL
        expected, _ = feast_store.online_features(store, trips, data_now)
        got = reader.read(keys, data_now)
        assert set(got) == set(expected.columns)
        for feature, values in got.items():
            np.testing.assert_allclose(values, expected[feature].to_numpy(dtype=float), rtol=1e-6, equal_nan=True, err_msg=f"{feature} at {data_now}")
        assert np.isnan(got["company_trips_1d"][-3:]).sum() >= 1 and (~np.isnan(got["area_trips_7d"])).any()
    assert np.isnan(reader.read(keys, DATA_NOW + timedelta(days=1, hours=12))["company_trips_1d"]).all()


def test_empty_window_materializes_nothing_and_says_so(store_settings):
    settings = store_settings[0]
    wall = wall_clock_for(settings, datetime(2012, 1, 1, tzinfo=UTC))
    assert feast_store.materialize_window("hourly", wall - timedelta(hours=1), wall, settings)["rows"] == 0


def test_redis_down_fails_with_a_clear_message(store_settings, monkeypatch):
    monkeypatch.setenv("REDIS_PORT", str(free_port()))  # nothing listens there
    down = load_settings()
    wall = wall_clock_for(down, DATA_NOW)
    with pytest.raises(feast_store.OnlineStoreUnavailable, match=r"Redis at 127\.0\.0\.1:\d+ failed while materializing"):
        feast_store.materialize_window("hourly", wall - timedelta(days=1), wall, down)


def test_view_naming_a_missing_column_fails_apply_with_its_name(store_settings, tmp_path):
    from feast import FeatureView, Field, FileSource
    from feast.types import Float32

    settings = store_settings[0]
    objects = feast_store.repo_objects(settings)
    bad_view = FeatureView(
        name="bad_view",
        entities=[o for o in objects if getattr(o, "name", "") == "company" and hasattr(o, "join_key")][:1],
        schema=[Field(name="no_such_column", dtype=Float32)],
        source=FileSource(path=str(settings.features_dir / "company_half_hourly_stats.parquet"), timestamp_field="event_timestamp"),
    )
    with pytest.raises(feast_store.FeatureDefinitionError, match="bad_view.*no_such_column"):
        feast_store.check_definitions(objects + [bad_view])


def test_the_asof_join_equals_feasts_historical_retrieval(store_settings):
    """The training join's default engine (one merge_asof per view, linear) against Feast's file
    offline store (`TAXI_HISTORICAL_JOIN=feast`): the same value, or the same absence, for every
    trip and feature, unknown keys and trips before any row included."""
    settings, valid, _, _ = store_settings
    shared = valid[valid.duplicated(["pickup_community_area", "trip_start_timestamp"], keep=False)].head(60)
    odd = valid.head(5).assign(pickup_community_area=[np.nan, 99, 77, np.nan, 1], company=[None, "Nobody Cab", "  ", None, "Flash Cab"])
    sample = pd.concat([valid.sample(1500, random_state=7), shared, odd, valid.nsmallest(20, "trip_start_timestamp")], ignore_index=True)
    asof = feast_store.historical_features(sample, settings, engine="asof")
    feast = feast_store.historical_features(sample, settings, engine="feast")
    assert list(asof.columns) == list(feast.columns) and len(asof) == len(sample)
    for feature in schema.STORE_FEATURES:
        np.testing.assert_array_equal(asof[feature].to_numpy(float), feast[feature].to_numpy(float), err_msg=feature)
    assert asof["area_trips_7d"].notna().sum() > 500 and asof["area_trips_7d"].isna().any()
    with pytest.raises(ValueError, match="TAXI_HISTORICAL_JOIN"):
        feast_store.historical_features(sample.head(3), settings, engine="spark?")


def test_historical_join_matches_the_offline_rows_point_in_time(store_settings):
    settings, valid, _, _ = store_settings
    # Trips sharing an area and a start time (15-minute buckets) each get the value, too.
    shared = valid[valid.duplicated(["pickup_community_area", "trip_start_timestamp"], keep=False)].head(40)
    sample = pd.concat([shared, valid.sample(300, random_state=1)])
    joined = feast_store.historical_features(sample, settings)
    assert len(joined) == len(sample)
    after_first_fortnight = joined.trip_start_timestamp >= joined.trip_start_timestamp.min() + 14 * 86400
    assert joined.city_fare_index_14d[after_first_fortnight].notna().all()
    area_rows = pd.read_parquet(settings.features_dir / "area_hourly_stats.parquet")
    for _, trip in joined.head(80).iterrows():
        at = pd.Timestamp(int(trip.trip_start_timestamp), unit="s", tz="UTC")
        key = 0 if pd.isna(trip.pickup_community_area) else int(trip.pickup_community_area)
        rows = area_rows[
            (area_rows.pickup_community_area == key) & (area_rows.event_timestamp <= at) & (area_rows.event_timestamp >= at - timedelta(days=7))
        ]
        expected = rows.sort_values("event_timestamp").area_trips_7d.iloc[-1] if len(rows) else np.nan
        assert trip.area_trips_7d == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize("cadence", ["hourly", "half_hourly"])
def test_materialization_dag_runs_through_airflow(store_settings, redis_server, cadence, tmp_path):
    settings, _, tmp, env = store_settings
    flush(redis_server)
    run_env = project_env(tmp / "airflow_stack", **env)
    migrate = subprocess.run(["airflow", "db", "migrate"], env=run_env, capture_output=True, text=True, cwd=REPO_ROOT)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    # A run whose data interval ends at a boundary that has feature rows (10 minutes after it).
    view = feast_store.views_for_cadence(cadence)[0]
    rows = pd.read_parquet(settings.features_dir / f"{view.name}.parquet")
    boundary = rows[rows.event_timestamp <= DATA_NOW].event_timestamp.max()
    logical = wall_clock_for(settings, boundary.to_pydatetime() + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    proc = subprocess.run(
        ["airflow", "dags", "test", f"feast_materialize_{cadence}", logical], env=run_env, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    import redis

    assert redis.Redis(host="127.0.0.1", port=redis_server).dbsize() > 0

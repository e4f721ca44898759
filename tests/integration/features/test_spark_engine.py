"""The Spark engine (TAXI_OFFLINE_ENGINE=spark) against the pandas path, on a Spark session with
two separate executor JVMs (local-cluster[2,1,1024]): the offline store's Parquet files and the
training join are the same, on the whole sample and on dirty trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest

from chicago_taxi.core import schema
from chicago_taxi.core.config import load_settings
from chicago_taxi.features import aggregates, spark_engine
from chicago_taxi.features import store as feast_store

MASTER = "local-cluster[2,1,1024]"
EXECUTORS = 2
RTOL = 1e-9


@pytest.fixture(scope="module")
def spark_env(tmp_path_factory):
    """The run directories (local-cluster's executor logs) and offline stores in a temp dir."""
    tmp = tmp_path_factory.mktemp("spark")
    mp = pytest.MonkeyPatch()
    mp.setenv("TAXI_WORK_DIR", str(tmp / "var"))
    mp.setenv("TAXI_FEATURES_DIR", str(tmp / "features"))
    mp.delenv("TAXI_HISTORICAL_JOIN", raising=False)
    yield tmp
    mp.undo()


@pytest.fixture(scope="module")
def spark(spark_env):
    """One session for the module (a Spark start costs seconds); Java is required, never skipped."""
    try:
        spark_engine.java_home()
    except spark_engine.SparkUnavailable as exc:
        pytest.fail(f"the Spark engine's tests need Java: {exc}")
    with spark_engine.spark_session(MASTER, app_name="test-spark-engine") as session:
        yield session


def use_engine(monkeypatch, engine: str) -> None:
    monkeypatch.setenv("TAXI_OFFLINE_ENGINE", engine)


def assert_frames_equal(expected: pd.DataFrame, actual: pd.DataFrame, what: str) -> None:
    """Same columns, dtypes and length; keys, counts and times exact; floats to RTOL, NaN where NaN."""
    assert list(actual.columns) == list(expected.columns), what
    assert actual.dtypes.astype(str).to_dict() == expected.dtypes.astype(str).to_dict(), what
    assert len(actual) == len(expected), what
    for column in expected.columns:
        if column == aggregates.CREATED:
            continue  # the time the file was written
        want, got = expected[column].to_numpy(), actual[column].to_numpy()
        if want.dtype.kind == "f":
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN in {column}")
            np.testing.assert_allclose(got, want, rtol=RTOL, equal_nan=True, err_msg=f"{what}: {column}")
        else:  # keys, counts, times, and the trips' own columns (missing values included)
            pd.testing.assert_series_equal(actual[column], expected[column], check_exact=True, check_index=False, obj=f"{what}: {column}")


def dirty_trips(trips: pd.DataFrame) -> pd.DataFrame:
    """Sample trips made dirty the ways real ones are: no company (missing or blank), no pickup
    area (missing, or outside Chicago's 77), no miles, no seconds (zero or missing)."""
    dirty = trips.sort_values(schema.TIMESTAMP).iloc[2000:3200].reset_index(drop=True)
    every = np.arange(len(dirty))
    dirty.loc[every % 5 == 0, "company"] = None
    dirty.loc[every % 11 == 0, "company"] = "  "
    dirty.loc[every % 7 == 0, "pickup_community_area"] = np.nan
    dirty.loc[every % 13 == 0, "pickup_community_area"] = 99
    dirty.loc[every % 3 == 0, "trip_miles"] = 0.0
    dirty.loc[every % 4 == 0, "trip_seconds"] = 0.0
    dirty.loc[every % 97 == 0, "trip_seconds"] = np.nan
    return dirty


def test_the_session_has_two_executor_jvms(spark):
    assert spark.sparkContext.master == MASTER
    assert len(spark_engine.executor_ids(spark)) == EXECUTORS, spark_engine.executor_ids(spark)
    assert len(executor_processes()) == EXECUTORS, executor_processes()


def executor_processes() -> list[int]:
    """The pids of this process's descendants that run a Spark executor."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if any(arg.endswith(".CoarseGrainedExecutorBackend") for arg in process.cmdline()):
                found.append(process.pid)
        except psutil.Error:  # a zombie, or gone meanwhile
            continue
    return found


def test_spark_writes_the_same_offline_store_files_as_pandas(spark, spark_env, trips, monkeypatch):
    """The whole sample (its dirt included) through `write_offline_store` with each engine."""
    pandas_dir, spark_dir = spark_env / "store-pandas", spark_env / "store-spark"
    use_engine(monkeypatch, "pandas")
    aggregates.write_offline_store(trips, pandas_dir)
    use_engine(monkeypatch, "spark")
    written = aggregates.write_offline_store(trips, spark_dir)
    assert sorted(written) == sorted(view.name for view in schema.STORE_VIEWS)
    for view in schema.STORE_VIEWS:
        name = f"{view.name}.parquet"
        assert pq.read_schema(spark_dir / name).remove_metadata() == pq.read_schema(pandas_dir / name).remove_metadata(), name
        expected, actual = pd.read_parquet(pandas_dir / name), pd.read_parquet(spark_dir / name)
        assert written[view.name]["rows"] == len(expected) > 1000
        assert_frames_equal(expected, actual, view.name)
    # The sample's trips without trip_seconds are left out of the mean duration: it is NaN only
    # where no trip of the window has one (it was NaN for every later window of their area).
    area = pd.read_parquet(spark_dir / "area_hourly_stats.parquet")
    assert area["area_trip_seconds_7d"].isna().mean() < 0.01, area["area_trip_seconds_7d"].isna().mean()


def test_spark_join_equals_the_asof_join_for_every_trip(spark, spark_env, trips, monkeypatch):
    settings = load_settings()
    use_engine(monkeypatch, "pandas")
    aggregates.write_offline_store(trips, settings.features_dir)
    shuffled = trips.sample(frac=1.0, random_state=11)  # order and index as a caller may pass them
    expected = feast_store.historical_features_asof(shuffled, settings)
    use_engine(monkeypatch, "spark")
    actual = feast_store.historical_features(shuffled, settings)
    assert actual.shape == expected.shape == (len(trips), len(trips.columns) + len(schema.STORE_FEATURES))
    assert_frames_equal(expected, actual, "historical features")
    assert expected["area_trips_7d"].isna().any() and expected["area_trips_7d"].notna().sum() > 10_000


def test_dirty_trips_stay_equal(spark, spark_env, trips, monkeypatch):
    """Missing and blank keys share their entity's missing key, zero miles and seconds leave the
    ratio statistics, a missing duration makes later means NaN: the same in both engines."""
    dirty = dirty_trips(trips)
    for view in schema.STORE_VIEWS:
        actual = spark_engine.compute_view_spark(dirty, view, spark)
        assert_frames_equal(aggregates.compute_view(dirty, view), actual, f"{view.name} on dirty trips")
        missing = schema.ENTITIES_BY_NAME[view.entity].missing_key
        assert missing in set(actual[view.entity]), f"{view.name}: no row for the missing key {missing!r}"
    settings = load_settings()
    use_engine(monkeypatch, "pandas")
    aggregates.write_offline_store(dirty, settings.features_dir)
    expected = feast_store.historical_features_asof(dirty, settings)
    use_engine(monkeypatch, "spark")
    assert_frames_equal(expected, feast_store.historical_features(dirty, settings), "historical features of dirty trips")

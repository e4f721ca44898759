"""The offline store's aggregates and the training set's point-in-time join on Apache Spark
(TAXI_OFFLINE_ENGINE=spark, on the master TAXI_SPARK_MASTER): the same Parquet files as
`features.aggregates.write_offline_store` and the same frame as
`features.store.historical_features_asof`, computed by Spark SQL on the executors (no Python
runs there, so executors need only Java and Spark).

Equal values, not merely close ones: the windowed sums are differences of running sums taken in
the pandas path's order (trip start, then row), as `numpy.cumsum` takes them, so the float32
values come out bit for bit the same (a trip without `trip_seconds` is left out of both the sum
and the count of the mean duration, in both). Views, windows, cadences, features and their aggregations come from
`core.schema`; the trips' entity keys from `aggregates.entity_keys`.

Feast's Spark offline store (`feast.infra.offline_stores.contrib.spark_offline_store`) is not
used for the join: measured on the 15k sample it took 130 s against 13 s here (same values), as
its SQL joins each trip to every source row of its key inside the TTL before keeping the latest
(2.2M pairs on the sample, up to 552 per trip once every hour has trips: 830M at 1.5M); and it
reads only SparkSource views (feature_repo/ declares FileSources) with micro-, not nanosecond
timestamps. `historical_features_spark` sorts each key's trips and rows together once instead.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.core.config import Settings, load_settings, spark_master
from chicago_taxi.features.aggregates import CREATED, EVENT_TIMESTAMP, compute_view, entity_keys, write_view_file

log = logging.getLogger(__name__)
MIN_JAVA = 17  # Spark 4 runs on Java 17 or 21
EXECUTOR_WAIT_SECONDS = 180.0  # local-cluster executors are separate JVMs; on a busy 2-core box they take a while
ROW, KEY, TS = "_row", "_key", "_ts"


class SparkUnavailable(RuntimeError):
    """Spark cannot start here (no suitable Java, executors that never registered)."""


# ---------------------------------------------------------------- the session
def java_home() -> Path:
    """JAVA_HOME, or the installation of the `java` on PATH; Java 17 or later."""
    given = os.environ.get("JAVA_HOME", "").strip()
    java = Path(given) / "bin" / "java" if given else None
    if java is None or not java.exists():
        found = shutil.which("java")
        if not found:
            raise SparkUnavailable(
                f"TAXI_OFFLINE_ENGINE=spark needs Java {MIN_JAVA}+: JAVA_HOME={given or '(unset)'} has no bin/java and there is no `java` on PATH "
                "(Debian: apt-get install openjdk-17-jre-headless)"
            )
        java = Path(found).resolve()
    version = subprocess.run([str(java), "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version)
    major = int(match.group(1)) if match else 0
    major = int(match.group(2)) if major == 1 and match.group(2) else major  # "1.8.0" is Java 8
    if major < MIN_JAVA:
        raise SparkUnavailable(f"Spark 4 needs Java {MIN_JAVA}+, {java} is {version.strip().splitlines()[0] if version.strip() else 'unreadable'}")
    return java.parents[1]


def is_local(master: str) -> bool:
    return master.startswith("local")


def local_cluster_size(master: str) -> int | None:
    """N of local-cluster[N,cores,MB] (N separate executor JVMs on this machine), else None."""
    match = re.fullmatch(r"local-cluster\[\s*(\d+)\s*,\s*\d+\s*,\s*\d+\s*\]", master)
    return int(match.group(1)) if match else None


def _local_cluster_home() -> Path:
    """A SPARK_HOME for local-cluster mode, which starts executors with $SPARK_HOME/bin/spark-class
    and writes their logs under $SPARK_HOME/work: pip's pyspark has bin/ and jars/, linked here so
    the logs land in var/spark/work, not inside the venv."""
    import pyspark

    package = Path(pyspark.__file__).resolve().parent
    home = load_settings().work_dir / "spark"
    (home / "work").mkdir(parents=True, exist_ok=True)
    for name in ("bin", "jars"):
        link = home / name
        if link.resolve() != package / name:
            link.unlink(missing_ok=True)
            try:
                link.symlink_to(package / name, target_is_directory=True)
            except FileExistsError:  # another process linked it meanwhile
                pass
    return home


def executor_ids(spark) -> list[str]:
    """The session's executors apart from the driver (none in local[N] mode, where the driver
    JVM runs the tasks itself)."""
    ids = spark.sparkContext._jsc.sc().getExecutorIds().mkString(",")  # a Scala Seq
    return sorted(ids.split(",")) if ids else []


@contextmanager
def spark_session(master: str | None = None, app_name: str = "chicago-taxi-offline") -> Iterator:
    """A Spark session on `master` (default TAXI_SPARK_MASTER), stopped at the end. A session
    already active in this process (a test's, a caller's) is used as it is and left running.

    Local masters bind every service to 127.0.0.1 and run without the web UI; a cluster master
    leaves the driver's address to Spark's own settings (its executors must reach the driver)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    master = master or spark_master()
    os.environ["JAVA_HOME"] = str(java_home())
    builder = SparkSession.builder.master(master).appName(app_name)
    if is_local(master):
        os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"  # local-cluster's master, workers and executors too
        builder = builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
        if "SPARK_DRIVER_MEMORY" not in os.environ:
            builder = builder.config("spark.driver.memory", "2g")  # local[N] runs every task in it (default 1g)
    if local_cluster_size(master):
        os.environ["SPARK_HOME"] = str(_local_cluster_home())
    settings = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # pandas writes the store's timestamps in nanoseconds, which Spark reads only as longs.
        "spark.sql.legacy.parquet.nanosAsLong": "true",
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    started = time.perf_counter()
    spark = builder.getOrCreate()
    try:
        expected = local_cluster_size(master)
        deadline = time.monotonic() + EXECUTOR_WAIT_SECONDS
        while expected and len(executor_ids(spark)) < expected:
            if time.monotonic() > deadline:
                raise SparkUnavailable(
                    f"{master}: {len(executor_ids(spark))} of {expected} executors registered after {EXECUTOR_WAIT_SECONDS:.0f} s "
                    f"(their logs: {os.environ['SPARK_HOME']}/work)"
                )
            time.sleep(0.25)
        ids = executor_ids(spark)
        if is_local(master):  # a few partitions per core: Spark's 200 cost more in task overhead here than they save
            spark.conf.set("spark.sql.shuffle.partitions", str(2 * spark.sparkContext.defaultParallelism))
        log.info(
            "Spark %s on %s: %s, started in %.1f s",
            spark.version,
            master,
            f"{len(ids)} executors ({', '.join(ids)})" if ids else "tasks run in the driver JVM",
            time.perf_counter() - started,
        )
        yield spark
    finally:
        spark.stop()


# ---------------------------------------------------------------- trips into Spark
def _trips_frame(spark, trips: pd.DataFrame, values: bool):
    """The trips' position, entity keys (`aggregates.entity_keys`) and start, and with `values`
    the fare, miles and seconds, sent to Spark as Arrow (NaN stays NaN: numpy's semantics)."""
    import pyarrow as pa

    keys = entity_keys(trips)
    columns = {ROW: pa.array(np.arange(len(trips), dtype="int64"))}
    for entity in schema.ENTITIES:
        column = keys[entity.name].to_numpy()
        columns[entity.name] = pa.array(column, type=pa.string() if entity.kind == "string" else pa.int64())
    columns[TS] = pa.array(trips[schema.TIMESTAMP].astype("int64").to_numpy())
    if values:
        for name, column in (("fare", schema.LABEL), ("miles", "trip_miles"), ("seconds", "trip_seconds")):
            columns[name] = pa.array(trips[column].astype(float).to_numpy())
    return spark.createDataFrame(pa.table(columns))


@contextmanager
def _trips_in_spark(trips: pd.DataFrame, spark, values: bool):
    """`_trips_frame` on `spark` (or a session of its own), kept by the executors while in use
    (each view reads the trips several times); None, and no Spark, for no trips."""
    if trips.empty:
        yield None
        return
    with nullcontext(spark) if spark is not None else spark_session() as session:
        frame = _trips_frame(session, trips, values).persist()
        try:
            yield frame
        finally:
            frame.unpersist()


# ---------------------------------------------------------------- aggregates
def _is_positive(column):
    # Spark orders NaN above every number (NaN > 0 is true there); numpy's comparison is false.
    from pyspark.sql import functions as F

    return ~F.isnan(column) & (column > 0)


def _sum_inputs(kind: str) -> dict:
    """The per-trip values whose windowed sums an aggregation needs (as `_Windows.aggregate` sums them)."""
    from pyspark.sql import functions as F

    miles = F.col("miles")
    if kind == "fare_per_mile":
        return {
            "sum_miles": F.when(_is_positive(miles), miles).otherwise(F.lit(0.0)),
            "sum_fare_with_miles": F.when(_is_positive(miles), F.col("fare")).otherwise(F.lit(0.0)),
        }
    if kind == "mean_seconds":  # over the trips with a duration, as pandas
        timed = F.col("seconds").isNotNull() & ~F.isnan("seconds")
        return {
            "sum_seconds": F.when(timed, F.col("seconds")).otherwise(F.lit(0.0)),
            "timed_trips": F.when(timed, F.lit(1.0)).otherwise(F.lit(0.0)),
        }
    if kind == "mean_fare":
        return {"sum_fare": F.col("fare")}
    return {}


def _aggregate(kind: str, windows):
    """One branch per schema.AGGREGATIONS entry, over `windows` (count, sum_* and median columns)."""
    from pyspark.sql import functions as F

    nan = F.lit(float("nan"))
    if kind == "count":
        return F.col("count")
    if kind == "fare_per_mile":
        return F.when(F.col("sum_miles") > 0, F.col("sum_fare_with_miles") / F.col("sum_miles")).otherwise(nan)
    if kind == "mean_seconds":
        return F.when(F.col("timed_trips") > 0, F.col("sum_seconds") / F.col("timed_trips")).otherwise(nan)
    if kind == "mean_fare":
        return F.col("sum_fare") / F.col("count")
    if kind == "median_fare_index":
        return F.coalesce(F.col("median"), nan)
    raise ValueError(f"unknown aggregation {kind!r}; known: {sorted(schema.AGGREGATIONS)}")


def _boundaries(trips, cadence: int):
    """Each key's cadence boundaries that follow one of its trips (B = the trip's slot end)."""
    from pyspark.sql import functions as F

    return trips.select(KEY, (F.col(TS) - F.pmod(F.col(TS), F.lit(cadence)) + cadence).alias("B")).distinct()


def _window_sums(trips, boundaries, sums: dict, window: int):
    """Per (key, B): the count of the key's trips started in [B - window, B) and the sums of
    `sums` over them, as running sum at B minus running sum at B - window. The running sums go
    trip by trip in (start, row) order, the order `numpy.cumsum` takes them in the pandas path;
    each boundary picks the running sums of the last trip before B and before B - window (a
    trip's running count numbers it, so the max of (count, sums...) is the last one)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    running = Window.partitionBy(KEY).orderBy(TS, ROW).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    fields = [F.count(F.lit(1)).over(running).alias("count")] + [F.sum(value).over(running).alias(name) for name, value in sums.items()]
    trip_rows = trips.select(KEY, F.col(TS).alias("x"), F.struct(*fields).alias("upto"), F.lit(False).alias("is_boundary"))
    boundary_rows = boundaries.select(
        KEY, F.col("B").alias("x"), F.lit(None).cast(trip_rows.schema["upto"].dataType).alias("upto"), F.lit(True).alias("is_boundary")
    )
    by_time = Window.partitionBy(KEY).orderBy("x")
    looked_up = trip_rows.unionByName(boundary_rows).select(
        KEY,
        "x",
        "is_boundary",
        F.max("upto").over(by_time.rangeBetween(Window.unboundedPreceding, -1)).alias("hi"),
        F.max("upto").over(by_time.rangeBetween(Window.unboundedPreceding, -window - 1)).alias("lo"),
    )
    columns = [F.col(KEY), F.col("x").alias("B"), (F.col("hi.count") - F.coalesce(F.col("lo.count"), F.lit(0))).alias("count")]
    columns += [(F.col(f"hi.{name}") - F.coalesce(F.col(f"lo.{name}"), F.lit(0.0))).alias(name) for name in sums]
    return looked_up.where("is_boundary").select(*columns)


def _window_median(trips, boundaries, window: int):
    """Per (key, B): the exact median (numpy's: the mean of the two middle values for an even
    count) of fare / meter fare at REFERENCE_TARIFF over the key's trips with miles and seconds
    started in [B - window, B), NULL where there is none.

    Not Spark's `percentile` aggregate over (boundary, trip) pairs: that shuffles and sorts every
    pair (boundaries x trips per window), and at 150k trips on 2 cores took 153 s for the city's
    median alone against 59 s for its whole view this way. Here the trips go into time chunks of
    a quarter window, each chunk's values sorted once with the trips of the window before it
    (every trip is copied to the 5 chunks that need it); a boundary filters its chunk's sorted
    array to its own window, which keeps the order, and reads the middle."""
    from pyspark.sql import functions as F

    chunk = max(window // 4, 1)
    fare, miles, seconds = F.col("fare"), F.col("miles"), F.col("seconds")
    ratio = fare / schema.REFERENCE_TARIFF.fare(miles, seconds)
    values = trips.where(_is_positive(miles) & _is_positive(seconds)).select(KEY, TS, ratio.alias("r")).where(~F.isnan("r"))
    copies = values.select(KEY, TS, "r", F.explode(F.sequence(F.floor(F.col(TS) / chunk), F.floor((F.col(TS) + window) / chunk))).alias("chunk"))
    chunks = copies.groupBy(KEY, "chunk").agg(F.sort_array(F.collect_list(F.struct("r", TS))).alias("sorted"))
    wanted = boundaries.select(KEY, "B", F.floor(F.col("B") / chunk).alias("chunk"))
    joined = wanted.join(chunks, [KEY, "chunk"], "left")
    inside = F.filter("sorted", lambda v: (v[TS] >= F.col("B") - window) & (v[TS] < F.col("B")))
    counted = joined.select(KEY, "B", inside.alias("inside")).select(KEY, "B", "inside", F.size("inside").alias("n"))
    middle = F.get(F.col("inside"), F.floor(F.col("n") / 2).cast("int"))["r"]
    below = F.get(F.col("inside"), (F.floor(F.col("n") / 2) - 1).cast("int"))["r"]
    median = F.when(F.col("n") <= 0, F.lit(None)).when(F.col("n") % 2 == 1, middle).otherwise((below + middle) / 2)
    return counted.select(KEY, "B", median.cast("double").alias("median"))


def view_rows(trips, view: schema.StoreView):
    """`aggregates.compute_view` as a Spark DataFrame over `_trips_frame(values=True)`: one row per
    key and boundary, the key column named after the view's entity, `EVENT_TIMESTAMP` in epoch
    seconds, and each feature as Spark computes it (before the store's dtypes)."""
    from pyspark.sql import functions as F

    cadence, window = view.cadence_minutes * 60, view.window_minutes * 60
    keyed = trips.select(F.col(view.entity).alias(KEY), ROW, TS, "fare", "miles", "seconds")
    boundaries = _boundaries(keyed, cadence)
    kinds = [spec.aggregation for spec in view.specs]
    sums = {name: value for kind in kinds for name, value in _sum_inputs(kind).items()}
    windows = _window_sums(keyed, boundaries, sums, window)
    if "median_fare_index" in kinds:
        windows = windows.join(_window_median(keyed, boundaries, window), [KEY, "B"], "left")
    return windows.select(
        F.col(KEY).alias(view.entity),
        F.col("B").alias(EVENT_TIMESTAMP),
        *[_aggregate(spec.aggregation, windows).alias(spec.name) for spec in view.specs],
    )


def compute_view_spark(trips: pd.DataFrame, view: schema.StoreView, spark=None) -> pd.DataFrame:
    """`aggregates.compute_view` computed by Spark: the same rows, columns and dtypes."""
    with _trips_in_spark(trips, spark, values=True) as trip_rows:
        # No trips: nothing to distribute, and the empty frame's dtypes are pandas'.
        return compute_view(trips, view) if trip_rows is None else _store_frame(view_rows(trip_rows, view), view)


def _store_frame(rows, view: schema.StoreView) -> pd.DataFrame:
    """Spark's rows of a view collected (as Arrow) and typed as `compute_view` types them."""
    out = rows.toArrow().to_pandas().sort_values([view.entity, EVENT_TIMESTAMP], kind="stable", ignore_index=True)
    out[EVENT_TIMESTAMP] = pd.to_datetime(out[EVENT_TIMESTAMP].astype("int64"), unit="s", utc=True)
    out[CREATED] = pd.Timestamp.now(tz="UTC")
    for spec in view.specs:
        out[spec.name] = out[spec.name].astype(spec.dtype)
    return out


def write_offline_store_spark(trips: pd.DataFrame, features_dir: Path, spark=None) -> dict[str, dict]:
    """`aggregates.write_offline_store` on Spark: each view's aggregates computed by the executors,
    collected by the driver (at most one row per trip) and written as the one Parquet file its
    Feast FileSource names, replaced whole."""
    features_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    with _trips_in_spark(trips, spark, values=True) as trip_rows:
        for view in schema.STORE_VIEWS:
            started = time.perf_counter()
            frame = compute_view(trips, view) if trip_rows is None else _store_frame(view_rows(trip_rows, view), view)
            written[view.name] = write_view_file(frame, view, features_dir, started, "pandas" if trip_rows is None else "Spark")
    return written


# ---------------------------------------------------------------- the point-in-time join
def _epoch_seconds(frame, column: str):
    """A Parquet timestamp column as epoch seconds: pandas' nanoseconds arrive as longs
    (spark.sql.legacy.parquet.nanosAsLong), micro- or milliseconds as timestamps."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType

    if isinstance(frame.schema[column].dataType, LongType):
        return F.floor(F.col(column) / 1_000_000_000)
    return F.floor(F.unix_micros(F.col(column)) / 1_000_000)


def _view_join(left, view: schema.StoreView, path: Path):
    """Per trip (`_row`): the view's features from its latest row at or before the trip's start
    (merge_asof's backward direction), NULL where that row is more than the view's window
    (its TTL) older or there is none. Each key's trips and rows are sorted together once."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    window = view.window_minutes * 60
    source = left.sparkSession.read.parquet(str(path))
    key_type = left.schema[view.entity].dataType
    feature = F.struct(F.col("x").alias("at"), *[F.col(name).cast("double").alias(name) for name in view.features])
    rows = source.select(F.col(view.entity).cast(key_type).alias(KEY), _epoch_seconds(source, EVENT_TIMESTAMP).alias("x"), *view.features).select(
        KEY, "x", F.lit(None).cast("long").alias(ROW), feature.alias("latest")
    )
    trip_rows = left.select(
        F.col(view.entity).alias(KEY), F.col(TS).alias("x"), ROW, F.lit(None).cast(rows.schema["latest"].dataType).alias("latest")
    )
    by_time = Window.partitionBy(KEY).orderBy("x").rangeBetween(Window.unboundedPreceding, 0)
    joined = trip_rows.unionByName(rows).select(ROW, "x", F.max("latest").over(by_time).alias("latest")).where(F.col(ROW).isNotNull())
    fresh = F.col("x") - F.col("latest.at") <= window
    return joined.select(ROW, *[F.when(fresh, F.col(f"latest.{name}")).alias(name) for name in view.features])


def historical_features_spark(trips: pd.DataFrame, settings: Settings | None = None, spark=None) -> pd.DataFrame:
    """`store.historical_features_asof` on Spark: each trip, in order, with each view's latest row
    of its entity at or before its start and within the view's window (TTL), NaN where there is
    none. The executors read the offline store's Parquet files themselves (on a cluster,
    TAXI_FEATURES_DIR must be a path every executor sees)."""
    settings = settings or load_settings()
    trips = trips.reset_index(drop=True)
    result = trips.copy()
    paths = {view.name: settings.features_dir / f"{view.name}.parquet" for view in schema.STORE_VIEWS}
    for path in paths.values():
        if not path.exists():
            raise FileNotFoundError(f"offline store file {path} is missing: run the taxi_features DAG (build_offline_store) first")
    with _trips_in_spark(trips, spark, values=False) as left:
        for view in schema.STORE_VIEWS:
            joined = _view_join(left, view, paths[view.name]).toArrow() if left is not None else None
            for feature in view.features:
                values = np.full(len(trips), np.nan)
                if joined is not None:
                    values[joined.column(ROW).to_numpy()] = joined.column(feature).to_numpy(zero_copy_only=False)
                result[feature] = values
    return result

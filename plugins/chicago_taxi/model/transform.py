"""The TFX Transform step: tf.Transform's `preprocessing_fn` run on Beam (the DirectRunner unless
TAXI_BEAM_OPTIONS names another runner).

The analysis (means, quantiles, vocabularies) runs on the training split only; the resulting
transform graph is saved and used again, unchanged, by the pyfunc at serving time, so training
and serving cannot skew. `raw_frame_to_features` is the one place where a pandas frame of raw
trips becomes the graph's input, for training and serving alike.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from chicago_taxi.core import config, schema

log = logging.getLogger(__name__)

# Raw inputs the graph reads: every model input column; numbers travel as float32 with NaN
# for "missing" (ints with nulls included), strings as bytes with "" for missing.
STRING_INPUTS = _STRING_INPUTS = schema.VOCAB_FEATURES
_NUMERIC_INPUTS = tuple(c for c in schema.MODEL_INPUTS_WITH_STORE if c not in _STRING_INPUTS)
EARTH_RADIUS_MILES = 3958.8
MISSING_TOKEN = "__missing__"


class MissingColumnError(ValueError):
    """A scoring or training frame lacks a column the model cannot do without."""


def raw_feature_spec() -> dict:
    import tensorflow as tf

    spec = {name: tf.io.FixedLenFeature([], tf.float32) for name in _NUMERIC_INPUTS}
    spec.update({name: tf.io.FixedLenFeature([], tf.string) for name in _STRING_INPUTS})
    return spec


def raw_frame_to_features(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Columns of raw trips as the transform graph's input arrays.

    Extra columns are ignored. Required request-time columns must be present; optional ones
    that are absent are passed as missing (NaN / ""), and the graph fills them exactly as it
    filled missing values in training.
    """
    missing_required = [c for c in schema.required_scoring_columns() if c not in frame.columns]
    if missing_required:
        raise MissingColumnError(f"trips lack required column(s): {', '.join(missing_required)}")
    n = len(frame)
    features: dict[str, np.ndarray] = {}
    for name in _NUMERIC_INPUTS:
        if name in frame.columns:
            values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)
        else:
            values = np.full(n, np.nan, dtype=np.float32)
        features[name] = values
    for name in _STRING_INPUTS:
        if name in frame.columns:
            column = frame[name].astype(object).where(frame[name].notna(), "")
            features[name] = np.array([str(v).encode("utf-8") for v in column], dtype=object)
        else:
            features[name] = np.array([b""] * n, dtype=object)
    return features


def raw_records_to_features(trips: list[dict], extra: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """`raw_frame_to_features` for trips as dicts (the request path: no DataFrame), with the same
    values (a field no trip has is a missing column, as in a frame made of the trips): numbers as float32 (NaN when missing or not a number), strings as UTF-8 bytes ("" when
    missing). `extra` supplies whole columns (the store features) instead of the trips' fields."""
    missing_required = [c for c in schema.required_scoring_columns() if trips and not any(c in trip for trip in trips)]
    if missing_required:
        raise MissingColumnError(f"trips lack required column(s): {', '.join(missing_required)}")
    extra = extra or {}
    features: dict[str, np.ndarray] = {}
    for name in _NUMERIC_INPUTS:
        if name in extra:
            features[name] = np.asarray(extra[name], dtype=np.float32)
        else:
            features[name] = np.array([schema.to_number(trip.get(name)) for trip in trips], dtype=np.float32)
    for name in _STRING_INPUTS:
        features[name] = np.array([_text(trip.get(name)) for trip in trips], dtype=object)
    return features


def _text(value) -> bytes:
    if value is None or (isinstance(value, float) and value != value):
        return b""
    return str(value).encode("utf-8")


# The transform's parameters (analyzer results) travel in the saved graph as extra outputs with
# this prefix, one value per trip: the numpy scorer (`model.fast_path`) reads them once at load.
# They are dropped before the transformed splits are written.
PARAM_PREFIX = "__param__"


def preprocessing_fn(inputs: dict) -> dict:
    """tf.Transform callback: raw trip tensors in, model-ready `_xf` tensors out (see
    `transform_trips`, which holds the transform itself)."""
    analyzers = TFTAnalyzers()
    outputs = transform_trips(inputs, TFOps(), analyzers)
    outputs.update(analyzers.param_outputs(inputs["trip_miles"]))
    return outputs


def transform_trips(inputs: dict, ops, analyzers) -> dict:
    """Raw trip columns in, model-ready `_xf` columns out: the one definition of the transform.

    Written once over two backends: `TFOps` + `TFTAnalyzers` (the tf.Transform graph: analyzers
    fitted on the training split, saved, served) and `model.fast_path`'s numpy ops + the saved
    graph's analyzer values (the fast scoring path, held to the graph's outputs by tests and by
    a check at load). Real trips are dirty; every repair in `schema.REPAIRS` happens here, once,
    so training and serving repair alike, and `schema.REPAIRS_OUTPUT` says which repairs changed
    each trip."""
    outputs = {}
    repair_bits = {r.code: bit for bit, r in enumerate(schema.REPAIRS)}
    repairs = ops.zeros_int(inputs["trip_miles"])

    def flag(condition, code):
        return ops.to_int(condition) * (1 << repair_bits[code])

    # Distance and duration. 0 or missing means "not recorded" (NaN > 0 is false); a distance
    # implying more than MAX_SPEED_MPH is an odometer glitch, so it is not trusted either. Both
    # are then priced like the 27% of trips whose meter recorded no miles, which the model knows.
    miles_raw, seconds_raw = inputs["trip_miles"], inputs["trip_seconds"]
    miles_known, seconds_known = miles_raw > 0, seconds_raw > 0
    implausible = miles_known & seconds_known & (miles_raw * 3600.0 > schema.MAX_SPEED_MPH * seconds_raw)
    miles_trusted = miles_known & ~implausible
    repairs += flag(~seconds_known, "seconds_not_recorded")
    repairs += flag(~miles_known, "miles_not_recorded")
    repairs += flag(implausible, "implausible_speed")
    usable = {
        "trip_miles": (ops.where(miles_trusted, miles_raw, 0.0), miles_trusted, "miles_clipped"),
        "trip_seconds": (ops.where(seconds_known, seconds_raw, 0.0), seconds_known, "seconds_clipped"),
    }
    for key in schema.DENSE_FLOAT_FEATURES:
        value, trusted, code = usable[key]
        # Beyond the training trips' CLIP_QUANTILE the network would extrapolate: clip there.
        bound = analyzers.upper_quantile(value, trusted, schema.CLIP_QUANTILE, name=key)
        repairs += flag(trusted & (value > bound), code)
        x = ops.minimum(value, bound)
        outputs[schema.transformed_name(key)] = analyzers.z_score(x, name=key)
        outputs[schema.transformed_name(f"log_{key}")] = analyzers.z_score(ops.log1p(x), name=f"log_{key}")
    outputs[schema.transformed_name("miles_not_recorded")] = ops.to_float(~miles_trusted)
    outputs[schema.transformed_name("seconds_not_recorded")] = ops.to_float(~seconds_known)

    # Coordinates outside Chicago are GPS faults: the point is treated as missing.
    coords = {}
    for end in ("pickup", "dropoff"):
        lat, lon = inputs[f"{end}_latitude"], inputs[f"{end}_longitude"]
        outside = ~(_inside(lat, f"{end}_latitude") & _inside(lon, f"{end}_longitude"))
        outside &= ~(ops.is_nan(lat) | ops.is_nan(lon))
        repairs += flag(outside, f"{end}_outside_chicago")
        coords[f"{end}_latitude"], coords[f"{end}_longitude"] = ops.where(outside, float("nan"), lat), ops.where(outside, float("nan"), lon)

    # Straight-line distance from the coordinates: the trip length when the meter recorded none.
    points = [coords[k] for k in ("pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude")]
    coordinates_missing = ops.is_nan(points[0]) | ops.is_nan(points[1]) | ops.is_nan(points[2]) | ops.is_nan(points[3])
    lat1, lon1, lat2, lon2 = [ops.fill_nan(c, 0.0) * (math.pi / 180.0) for c in points]
    a = ops.sin((lat2 - lat1) / 2) ** 2 + ops.cos(lat1) * ops.cos(lat2) * ops.sin((lon2 - lon1) / 2) ** 2
    straight = 2 * EARTH_RADIUS_MILES * ops.asin(ops.sqrt(ops.clip(a, 0.0, 1.0)))
    straight = ops.where(coordinates_missing, 0.0, straight)
    outputs[schema.transformed_name("straight_line_miles")] = analyzers.z_score(straight, name="straight_line_miles")
    outputs[schema.transformed_name("coordinates_missing")] = ops.to_float(coordinates_missing)

    for key in schema.BUCKET_FEATURES:
        x = coords[key]
        # Quantiles are computed over present values only (the fill value is the median-ish
        # city centre, so it lands in a middle bucket); a missing coordinate gets its own bucket.
        buckets = analyzers.bucketize(ops.fill_nan(x, schema.range_midpoint(key)), schema.BUCKET_COUNT, name=key)
        outputs[schema.transformed_name(key)] = ops.where(ops.is_nan(x), schema.BUCKET_COUNT, buckets)

    for key in schema.VOCAB_FEATURES:
        # tf.Transform leaves "" out of vocabularies; a missing value is a token of its own.
        text = ops.strip_or(inputs[key], MISSING_TOKEN)
        outputs[schema.transformed_name(key)] = analyzers.vocabulary_ids(text, top_k=schema.VOCAB_SIZE, num_oov_buckets=schema.OOV_BUCKETS, name=key)

    for key, size in schema.CATEGORICAL_ID_FEATURES.items():
        x = inputs[key]
        column = schema.COLUMNS_BY_NAME[key]
        if column.out_of_range == "repair":
            # An area that is not one of Chicago's is unknown: id 0, like a missing one.
            bad = ~ops.is_nan(x) & ~_inside(x, key)
            repairs += flag(bad, key.replace("_community_area", "_area_unknown"))
            x = ops.where(bad, 0.0, x)
        outputs[schema.transformed_name(key)] = ops.clip(ops.to_int(ops.fill_nan(x, 0.0)), 0, size - 1)

    # Store features: absent (no recent trips, or past TTL) -> 0 plus a per-view "missing" flag.
    for view in schema.STORE_VIEWS:
        missing = ops.is_nan(inputs[view.features[0]])
        outputs[schema.transformed_name(f"{view.name}_missing")] = ops.to_float(missing)
        for spec in view.specs:
            if spec.transform == "scale":
                outputs[schema.transformed_name(spec.name)] = relative_to_training_mean(inputs[spec.name], ops, analyzers, name=spec.name)
                continue
            value = ops.fill_nan(inputs[spec.name], spec.default)
            if spec.transform == "log_z_score":
                value = ops.log1p(ops.maximum(value, 0.0))
            outputs[schema.transformed_name(spec.name)] = analyzers.z_score(value, name=spec.name)
    outputs[schema.REPAIRS_OUTPUT] = repairs
    return outputs


def _inside(x, column_name: str):
    """x within its column's declared range (NaN is not)."""
    column = schema.COLUMNS_BY_NAME[column_name]
    return (x >= column.min_value) & (x <= column.max_value)


def relative_to_training_mean(x, ops, analyzers, name: str):
    """A price index as a multiplier: x over its mean in the training data (present values only),
    clipped to schema.FARE_SCALE_RANGE; 1.0 (no change) when the value is missing."""
    present = ~ops.is_nan(x)
    mean = analyzers.present_mean(ops.fill_nan(x, 0.0), present, name=name)
    return ops.clip(ops.where(present, ops.fill_nan(x, 0.0) / mean, 1.0), *schema.FARE_SCALE_RANGE)


def z_score(x, mean, var, ops):
    """tf.Transform's `scale_to_z_score` given its mean and variance (a zero variance leaves x - mean)."""
    numerator = x - mean
    denominator = ops.sqrt(var)
    return ops.where(denominator != 0, numerator / ops.where(denominator != 0, denominator, 1.0), numerator)


class TFOps:
    """The array operations `transform_trips` uses, on TensorFlow tensors (float32 numbers)."""

    def __init__(self):
        import tensorflow as tf

        self.tf = tf

    def where(self, condition, a, b):
        tf = self.tf
        dtype = next((v.dtype for v in (a, b) if isinstance(v, tf.Tensor)), tf.float32)
        return tf.where(condition, tf.cast(a, dtype), tf.cast(b, dtype))

    def zeros_int(self, like):
        return self.tf.zeros_like(like, dtype=self.tf.int64)

    def to_int(self, x):
        return self.tf.cast(x, self.tf.int64)

    def to_float(self, x):
        return self.tf.cast(x, self.tf.float32)

    def is_nan(self, x):
        return self.tf.math.is_nan(x)

    def fill_nan(self, x, value):
        # NaN marks a missing number in the raw input.
        return self.tf.where(self.tf.math.is_nan(x), self.tf.constant(value, dtype=x.dtype), x)

    def minimum(self, x, y):
        return self.tf.minimum(x, y)

    def maximum(self, x, y):
        return self.tf.maximum(x, self.tf.cast(y, x.dtype))

    def clip(self, x, low, high):
        return self.tf.clip_by_value(x, self.tf.cast(low, x.dtype), self.tf.cast(high, x.dtype))

    def log1p(self, x):
        return self.tf.math.log1p(x)

    def sin(self, x):
        return self.tf.sin(x)

    def cos(self, x):
        return self.tf.cos(x)

    def asin(self, x):
        return self.tf.asin(x)

    def sqrt(self, x):
        return self.tf.sqrt(x)

    def strip_or(self, text, token: str):
        stripped = self.tf.strings.strip(text)
        return self.tf.where(self.tf.equal(stripped, ""), self.tf.constant(token), stripped)


class TFTAnalyzers:
    """The analyzers `transform_trips` uses, as tf.Transform analyzers; each records its result
    (a constant of the saved graph) for `param_outputs`."""

    def __init__(self):
        self.params: dict[str, object] = {}

    def upper_quantile(self, x, trusted, quantile: float, name: str):
        """The `quantile` of the trusted training values of x."""
        import tensorflow as tf
        import tensorflow_transform as tft

        buckets = int(round(1 / (1 - quantile)))
        boundaries = tft.quantiles(x, num_buckets=buckets, epsilon=0.1 / buckets, weights=tf.cast(trusted, tf.float32))
        bound = tf.reshape(boundaries, [-1])[-1]
        self.params[f"{name}.upper_bound"] = bound
        return bound

    def z_score(self, x, name: str):
        import tensorflow as tf
        import tensorflow_transform as tft

        mean, var = tf.cast(tft.mean(x), x.dtype), tf.cast(tft.var(x), x.dtype)
        self.params[f"{name}.mean"], self.params[f"{name}.var"] = mean, var
        return z_score(x, mean, var, TFOps())

    def bucketize(self, x, num_buckets: int, name: str):
        """tft.bucketize, its boundaries recorded (the same quantiles and epsilon it uses)."""
        import tensorflow_transform as tft

        boundaries = tft.quantiles(x, num_buckets, epsilon=min(1.0 / num_buckets, 0.01))
        self.params[f"{name}.boundaries"] = boundaries
        return tft.apply_buckets(x, boundaries)

    def vocabulary_ids(self, text, top_k: int, num_oov_buckets: int, name: str):
        """Ids from a vocabulary saved under `name` (the numpy path reads the file itself)."""
        import tensorflow_transform as tft

        return tft.compute_and_apply_vocabulary(text, top_k=top_k, num_oov_buckets=num_oov_buckets, vocab_filename=name)

    def present_mean(self, filled, present, name: str):
        """The mean of x over the training rows where it is present (1.0 when it never is)."""
        import tensorflow as tf
        import tensorflow_transform as tft

        count = tft.sum(tf.cast(present, tf.float32))
        mean = tf.where(count > 0, tft.sum(filled) / tf.maximum(count, 1.0), 1.0)
        self.params[f"{name}.mean"] = mean
        return mean

    def param_outputs(self, like) -> dict:
        """Each recorded parameter as an output of the graph: float32, one row per trip."""
        import tensorflow as tf

        rows = tf.shape(like)[0]
        outputs = {}
        for name, value in self.params.items():
            width = value.shape.num_elements()
            if width is None:
                raise ValueError(f"transform parameter {name} has no static size: {value.shape}")
            outputs[f"{PARAM_PREFIX}{name}"] = tf.tile(tf.reshape(tf.cast(value, tf.float32), [1, width]), [rows, 1])
        return outputs


@dataclass
class TransformResult:
    transform_dir: str
    train_path: str
    holdout_path: str
    train_rows: int
    holdout_rows: int
    seconds: float
    rows_per_second: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def split_by_time(frame: pd.DataFrame, holdout_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The latest `holdout_fraction` of trips by start time is the holdout; ties stay together."""
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout fraction must be between 0 and 1, got {holdout_fraction}")
    ordered = frame.sort_values(schema.TIMESTAMP, kind="mergesort").reset_index(drop=True)
    cut_time = ordered[schema.TIMESTAMP].iloc[int(len(ordered) * (1 - holdout_fraction))]
    train = ordered[ordered[schema.TIMESTAMP] < cut_time]
    holdout = ordered[ordered[schema.TIMESTAMP] >= cut_time]
    if train.empty or holdout.empty:
        raise ValueError(f"time split of {len(frame)} trips left an empty side (train {len(train)}, holdout {len(holdout)})")
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def _instances(frame: pd.DataFrame) -> list[dict]:
    features = raw_frame_to_features(frame)
    names = list(features)
    return [dict(zip(names, row)) for row in zip(*(features[n] for n in names))]


def _read_instances(path: str) -> list[dict]:
    return _instances(pd.read_parquet(path))


class _WriteRecordBatches:
    """Beam sink: each transformed Arrow record batch becomes one Parquet part file."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir

    def __call__(self, batch_and_index):
        import pyarrow.parquet as pq

        index, (record_batch, _) = batch_and_index
        pq.write_table(pa_table_from_batch(record_batch), self.out_dir / f"part-{index:05d}.parquet")


def pa_table_from_batch(record_batch):
    import pyarrow as pa

    # Scalar features come out as one-element lists: flatten them to plain columns.
    columns = {}
    for name, column in zip(record_batch.schema.names, record_batch.columns):
        if name.startswith(PARAM_PREFIX):  # the graph's parameters, not features
            continue
        columns[name] = column.flatten() if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) else column
    return pa.table(columns)


def analyze_and_transform(train_raw_path: Path, holdout_raw_path: Path, out_dir: Path) -> TransformResult:
    """Fit the transform on `train`, apply it to both splits, save the graph and the outputs.

    One Beam pipeline: analyse + transform the training split, transform the holdout with the
    same transform_fn, write both as Parquet and the graph as a SavedModel. The pipeline options
    come from `config.beam_pipeline_args()` (TAXI_BEAM_OPTIONS; unset: the in-process
    DirectRunner with one worker); docs/distributed-transform.md gives the Flink, Spark and
    Dataflow option strings. On a runner whose workers are other machines, every path given
    here must be on storage that all of them share: the workers read the raw Parquet inputs and
    write the Parquet parts (`_WriteRecordBatches`) and the graph to these paths themselves, as
    local files (no GCS or S3 support); so must tf.Transform's temporary directory (today a
    local `tempfile` directory), and the worker environment must have this package installed.
    """
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    started = time.perf_counter()
    train_rows, holdout_rows = (pd.read_parquet(p, columns=[schema.TIMESTAMP]).shape[0] for p in (train_raw_path, holdout_raw_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    transform_dir = out_dir / "transform_graph"
    train_dir, holdout_dir = out_dir / "train", out_dir / "holdout"
    for d in (train_dir, holdout_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_feature_spec()))
    log.info("tf.Transform: analysing %d training trips, then transforming them and %d holdout trips", train_rows, holdout_rows)
    args = config.beam_pipeline_args()
    options = beam.options.pipeline_options.PipelineOptions(args)
    runner = options.view_as(beam.options.pipeline_options.StandardOptions).runner or "DirectRunner"
    log.info("tf.Transform on Beam's %s (options: %s)", runner, " ".join(args))
    with tempfile.TemporaryDirectory() as tmp, beam.Pipeline(options=options) as pipeline:
        with tft_beam.Context(temp_dir=tmp, force_tf_compat_v1=False):
            # Rows enter through a reader step rather than beam.Create(rows): Create would pickle
            # and bz2-compress every row into the pipeline graph (18 s of 55 s for 15k trips).
            train_raw = pipeline | "TrainPath" >> beam.Create([str(train_raw_path)]) | "ReadTrain" >> beam.FlatMap(_read_instances)
            holdout_raw = pipeline | "HoldoutPath" >> beam.Create([str(holdout_raw_path)]) | "ReadHoldout" >> beam.FlatMap(_read_instances)
            (train_out, _), transform_fn = (train_raw, metadata) | "AnalyzeAndTransform" >> tft_beam.AnalyzeAndTransformDataset(
                preprocessing_fn, output_record_batches=True
            )
            holdout_out, _ = ((holdout_raw, metadata), transform_fn) | "TransformHoldout" >> tft_beam.TransformDataset(output_record_batches=True)
            _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(str(transform_dir))
            for label, batches, target in (("Train", train_out, train_dir), ("Holdout", holdout_out, holdout_dir)):
                _ = (
                    batches
                    | f"Index{label}" >> beam.combiners.ToList()
                    | f"Enumerate{label}" >> beam.FlatMap(lambda items: list(enumerate(items)))
                    | f"Write{label}" >> beam.Map(_WriteRecordBatches(target))
                )
    # The raw schema beside the graph: serving passes the graph exactly the inputs it was built with.
    from tensorflow_transform.tf_metadata import metadata_io

    metadata_io.write_metadata(metadata, str(transform_dir / "metadata"))
    seconds = time.perf_counter() - started
    rows = train_rows + holdout_rows
    log.info("tf.Transform done in %.1f s (%.0f rows/s)", seconds, rows / seconds)
    return TransformResult(
        transform_dir=str(transform_dir),
        train_path=str(train_dir),
        holdout_path=str(holdout_dir),
        train_rows=train_rows,
        holdout_rows=holdout_rows,
        seconds=round(seconds, 2),
        rows_per_second=round(rows / seconds, 1),
    )


class TransformGraph:
    """The saved transform graph, applied eagerly to pandas frames of raw trips (serving path)."""

    def __init__(self, transform_dir: str | Path):
        import tensorflow_transform as tft

        self.output = tft.TFTransformOutput(str(transform_dir))
        try:
            # A graph made by the TFX pipeline's Transform keeps the label in its raw schema (the
            # curated schema names it); the label is never an input, and the graph does not read it.
            self.input_names = set(self.output.raw_feature_spec()) - schema.FORBIDDEN_INPUTS
        except OSError:  # graphs saved before the raw schema was stored beside them
            self.input_names = set(schema.MODEL_INPUT_COLUMNS)

    def transform(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        import tensorflow as tf

        features = {k: v for k, v in raw_frame_to_features(frame).items() if k in self.input_names}
        tensors = {k: tf.constant(v, dtype=tf.string if v.dtype == object else tf.float32) for k, v in features.items()}
        transformed = self.output.transform_raw_features(tensors)
        return {k: v.numpy() for k, v in transformed.items() if not k.startswith(PARAM_PREFIX)}

    def params(self) -> dict[str, np.ndarray]:
        """The analyzer values the graph was fitted with (`PARAM_PREFIX` outputs), by name; empty
        for graphs saved before they were recorded."""
        import tensorflow as tf

        one_trip = raw_frame_to_features(pd.DataFrame({c: [np.nan] for c in schema.required_scoring_columns()}))
        tensors = {k: tf.constant(v) for k, v in one_trip.items() if k in self.input_names}
        transformed = self.output.transform_raw_features(tensors)
        return {k.removeprefix(PARAM_PREFIX): v.numpy()[0] for k, v in transformed.items() if k.startswith(PARAM_PREFIX)}

"""The TFX Transform step: tf.Transform's `preprocessing_fn` run on Beam's DirectRunner.

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

from chicago_taxi.core import schema

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


def preprocessing_fn(inputs: dict) -> dict:
    """tf.Transform callback: raw trip tensors in, model-ready `_xf` tensors out.

    Real trips are dirty; every repair in `schema.REPAIRS` happens here, once, so training and
    serving repair alike, and `schema.REPAIRS_OUTPUT` says which repairs changed each trip."""
    import tensorflow as tf
    import tensorflow_transform as tft

    outputs = {}
    repair_bits = {r.code: bit for bit, r in enumerate(schema.REPAIRS)}
    repairs = tf.zeros_like(inputs["trip_miles"], dtype=tf.int64)

    def flag(condition, code):
        return tf.cast(condition, tf.int64) * (1 << repair_bits[code])

    def fill_missing(x, value):
        # The explicit fill-in-missing helper: NaN marks a missing number in the raw input.
        return tf.where(tf.math.is_nan(x), tf.constant(value, dtype=x.dtype), x)

    # Distance and duration. 0 or missing means "not recorded" (NaN > 0 is false); a distance
    # implying more than MAX_SPEED_MPH is an odometer glitch, so it is not trusted either. Both
    # are then priced like the 27% of trips whose meter recorded no miles, which the model knows.
    miles_raw, seconds_raw = inputs["trip_miles"], inputs["trip_seconds"]
    miles_known, seconds_known = miles_raw > 0, seconds_raw > 0
    implausible = miles_known & seconds_known & (miles_raw * 3600.0 > schema.MAX_SPEED_MPH * seconds_raw)
    miles_trusted = miles_known & tf.logical_not(implausible)
    repairs += flag(tf.logical_not(seconds_known), "seconds_not_recorded")
    repairs += flag(tf.logical_not(miles_known), "miles_not_recorded")
    repairs += flag(implausible, "implausible_speed")
    usable = {
        "trip_miles": (tf.where(miles_trusted, miles_raw, tf.zeros_like(miles_raw)), miles_trusted, "miles_clipped"),
        "trip_seconds": (tf.where(seconds_known, seconds_raw, tf.zeros_like(seconds_raw)), seconds_known, "seconds_clipped"),
    }
    for key in schema.DENSE_FLOAT_FEATURES:
        value, trusted, code = usable[key]
        # Beyond the training trips' CLIP_QUANTILE the network would extrapolate: clip there.
        bound = upper_quantile(value, trusted, schema.CLIP_QUANTILE)
        repairs += flag(trusted & (value > bound), code)
        x = tf.minimum(value, bound)
        outputs[schema.transformed_name(key)] = tft.scale_to_z_score(x)
        outputs[schema.transformed_name(f"log_{key}")] = tft.scale_to_z_score(tf.math.log1p(x))
    outputs[schema.transformed_name("miles_not_recorded")] = tf.cast(tf.logical_not(miles_trusted), tf.float32)
    outputs[schema.transformed_name("seconds_not_recorded")] = tf.cast(tf.logical_not(seconds_known), tf.float32)

    # Coordinates outside Chicago are GPS faults: the point is treated as missing.
    coords = {}
    for end in ("pickup", "dropoff"):
        lat, lon = inputs[f"{end}_latitude"], inputs[f"{end}_longitude"]
        outside = tf.logical_not(_inside(lat, f"{end}_latitude") & _inside(lon, f"{end}_longitude"))
        outside &= tf.logical_not(tf.math.is_nan(lat) | tf.math.is_nan(lon))
        repairs += flag(outside, f"{end}_outside_chicago")
        nan = tf.fill(tf.shape(lat), float("nan"))
        coords[f"{end}_latitude"], coords[f"{end}_longitude"] = tf.where(outside, nan, lat), tf.where(outside, nan, lon)

    # Straight-line distance from the coordinates: the trip length when the meter recorded none.
    points = [coords[k] for k in ("pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude")]
    coordinates_missing = tf.reduce_any(tf.stack([tf.math.is_nan(c) for c in points], axis=1), axis=1)
    lat1, lon1, lat2, lon2 = [fill_missing(c, 0.0) * (math.pi / 180.0) for c in points]
    a = tf.sin((lat2 - lat1) / 2) ** 2 + tf.cos(lat1) * tf.cos(lat2) * tf.sin((lon2 - lon1) / 2) ** 2
    straight = 2 * EARTH_RADIUS_MILES * tf.asin(tf.sqrt(tf.clip_by_value(a, 0.0, 1.0)))
    straight = tf.where(coordinates_missing, tf.zeros_like(straight), straight)
    outputs[schema.transformed_name("straight_line_miles")] = tft.scale_to_z_score(straight)
    outputs[schema.transformed_name("coordinates_missing")] = tf.cast(coordinates_missing, tf.float32)

    for key in schema.BUCKET_FEATURES:
        x = coords[key]
        missing = tf.math.is_nan(x)
        # Quantiles are computed over present values only (the fill value is the median-ish
        # city centre, so it lands in a middle bucket); a missing coordinate gets its own bucket.
        filled = fill_missing(x, schema.range_midpoint(key))
        buckets = tft.bucketize(filled, num_buckets=schema.BUCKET_COUNT)
        outputs[schema.transformed_name(key)] = tf.where(missing, tf.constant(schema.BUCKET_COUNT, tf.int64), buckets)

    for key in schema.VOCAB_FEATURES:
        # tf.Transform leaves "" out of vocabularies; a missing value is a token of its own.
        text = tf.strings.strip(inputs[key])
        text = tf.where(tf.equal(text, ""), tf.constant(MISSING_TOKEN), text)
        outputs[schema.transformed_name(key)] = tft.compute_and_apply_vocabulary(
            text, top_k=schema.VOCAB_SIZE, num_oov_buckets=schema.OOV_BUCKETS, vocab_filename=key
        )

    for key, size in schema.CATEGORICAL_ID_FEATURES.items():
        x = inputs[key]
        column = schema.COLUMNS_BY_NAME[key]
        if column.out_of_range == "repair":
            # An area that is not one of Chicago's is unknown: id 0, like a missing one.
            bad = tf.logical_not(tf.math.is_nan(x)) & tf.logical_not(_inside(x, key))
            repairs += flag(bad, key.replace("_community_area", "_area_unknown"))
            x = tf.where(bad, tf.zeros_like(x), x)
        ids = tf.cast(fill_missing(x, 0.0), tf.int64)
        outputs[schema.transformed_name(key)] = tf.clip_by_value(ids, 0, size - 1)

    # Store features: absent (no recent trips, or past TTL) -> 0 plus a per-view "missing" flag.
    for view in schema.STORE_VIEWS:
        missing = tf.math.is_nan(inputs[view.features[0]])
        outputs[schema.transformed_name(f"{view.name}_missing")] = tf.cast(missing, tf.float32)
        for spec in view.specs:
            if spec.transform == "scale":
                outputs[schema.transformed_name(spec.name)] = relative_to_training_mean(inputs[spec.name])
                continue
            value = fill_missing(inputs[spec.name], spec.default)
            if spec.transform == "log_z_score":
                value = tf.math.log1p(tf.maximum(value, 0.0))
            outputs[schema.transformed_name(spec.name)] = tft.scale_to_z_score(value)
    outputs[schema.REPAIRS_OUTPUT] = repairs
    return outputs


def _inside(x, column_name: str):
    """x within its column's declared range (NaN is not)."""
    column = schema.COLUMNS_BY_NAME[column_name]
    return (x >= column.min_value) & (x <= column.max_value)


def upper_quantile(x, trusted, quantile: float):
    """The `quantile` of the trusted training values of x (an analyzer: a constant at serving)."""
    import tensorflow as tf
    import tensorflow_transform as tft

    buckets = int(round(1 / (1 - quantile)))
    boundaries = tft.quantiles(x, num_buckets=buckets, epsilon=0.1 / buckets, weights=tf.cast(trusted, tf.float32))
    return tf.reshape(boundaries, [-1])[-1]


def relative_to_training_mean(x):
    """A price index as a multiplier: x over its mean in the training data (present values only),
    clipped to schema.FARE_SCALE_RANGE; 1.0 (no change) when the value is missing."""
    import tensorflow as tf
    import tensorflow_transform as tft

    present = tf.logical_not(tf.math.is_nan(x))
    filled = tf.where(present, x, tf.zeros_like(x))
    count = tft.sum(tf.cast(present, tf.float32))
    mean = tf.where(count > 0, tft.sum(filled) / tf.maximum(count, 1.0), 1.0)
    scale = tf.where(present, filled / mean, tf.ones_like(x))
    return tf.clip_by_value(scale, *schema.FARE_SCALE_RANGE)


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
        columns[name] = column.flatten() if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) else column
    return pa.table(columns)


def analyze_and_transform(train_raw_path: Path, holdout_raw_path: Path, out_dir: Path) -> TransformResult:
    """Fit the transform on `train`, apply it to both splits, save the graph and the outputs.

    One Beam pipeline on the DirectRunner: analyse + transform the training split, transform
    the holdout with the same transform_fn, write both as Parquet and the graph as a SavedModel.
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
    options = beam.options.pipeline_options.PipelineOptions(["--direct_num_workers=1", "--direct_running_mode=in_memory"])
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
            self.input_names = set(self.output.raw_feature_spec())
        except OSError:  # graphs saved before the raw schema was stored beside them
            self.input_names = set(schema.MODEL_INPUT_COLUMNS)

    def transform(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        import tensorflow as tf

        features = {k: v for k, v in raw_frame_to_features(frame).items() if k in self.input_names}
        tensors = {k: tf.constant(v, dtype=tf.string if v.dtype == object else tf.float32) for k, v in features.items()}
        transformed = self.output.transform_raw_features(tensors)
        return {k: v.numpy() for k, v in transformed.items()}

"""Host side: the TFX pipeline's inputs, from the project's own definitions.

- `write_examples`: the rows the raw GX gate passed (with their point-in-time store features),
  split by time exactly as the native path splits them, as tf.Example TFRecords that
  ImportExampleGen reads: every raw model input as `raw_frame_to_features` encodes it for the
  transform graph (numbers float32 with NaN for missing, strings UTF-8 with "" for missing), plus
  the label. The same encoding as training and serving, so the two paths see the same values.
- `curated_schema`: the schema ExampleValidator and Transform use, derived from `core.schema`
  (one source of truth) and committed as expectations/tfx/schema.pbtxt (`make suites`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.model.transform import raw_feature_spec, raw_frame_to_features


def example_features(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The columns one tf.Example per trip carries: the transform graph's raw inputs and the label."""
    features = raw_frame_to_features(frame)
    features[schema.LABEL] = pd.to_numeric(frame[schema.LABEL], errors="coerce").to_numpy(dtype=np.float32)
    return features


def write_split(frame: pd.DataFrame, path: Path) -> int:
    """One TFRecord file of tf.Examples (uncompressed), one per trip, in the frame's order."""
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    columns = example_features(frame)
    names = list(columns)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in zip(*(columns[n] for n in names)):
            feature = {}
            for name, value in zip(names, row):
                if isinstance(value, bytes):
                    feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
                else:
                    feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return len(frame)


def write_examples(train: pd.DataFrame, holdout: pd.DataFrame, out_dir: Path) -> dict[str, int]:
    """train/ and eval/ TFRecords under `out_dir` (ImportExampleGen's input_base)."""
    return {
        "train": write_split(train, out_dir / "train" / "trips.tfrecord"),
        "eval": write_split(holdout, out_dir / "eval" / "trips.tfrecord"),
    }


def curated_schema():
    """The raw schema the pipeline holds the examples to: every transform input and the label,
    present in every example, one value each (what the transform graph's input spec says), and the
    label inside the fares the raw gate accepts."""
    import tensorflow as tf
    from tensorflow_transform.tf_metadata import schema_utils

    spec = raw_feature_spec() | {schema.LABEL: tf.io.FixedLenFeature([], tf.float32)}
    curated = schema_utils.schema_from_feature_spec(spec)
    for feature in curated.feature:
        if feature.name == schema.LABEL:
            feature.float_domain.min = schema.MIN_FARE
            feature.float_domain.max = schema.MAX_FARE
    return curated


SCHEMA_HEADER = (
    "# The TFX pipeline's curated raw schema: generated from chicago_taxi.core.schema by\n"
    "# chicago_taxi.tfx_pipeline.examples.curated_schema (make suites); do not edit by hand.\n"
)


def schema_text() -> str:
    from google.protobuf import text_format

    return SCHEMA_HEADER + text_format.MessageToString(curated_schema())


def write_schema(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text())
    return path


if __name__ == "__main__":
    import sys

    from chicago_taxi.core.config import load_settings
    from chicago_taxi.tfx_pipeline.layout import SCHEMA_RELATIVE

    if sys.argv[1:] != ["write-schema"]:
        sys.exit("usage: python -m chicago_taxi.tfx_pipeline.examples write-schema")
    print(f"wrote {write_schema(load_settings().repo_root / SCHEMA_RELATIVE)}")

"""Runtime side: the TFX Trainer's run_fn, which trains the project's own Keras model.

The raw training examples go through the Transform component's graph (as serving will send
them) and into `model.network.train_model`, the native path's training, unchanged. Two things
are written to the serving model directory:
- `saved_model.pb`: a `serving_default` signature from serialized raw tf.Examples to `fare`
  (parse, transform graph, network) for TFMA's Evaluator;
- `keras/fare_model.keras`: the network itself, which the host registers in MLflow with the
  transform graph, exactly as the native path registers its model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.model.network import feature_set, model_filename, train_model
from chicago_taxi.model.transform import PARAM_PREFIX

log = logging.getLogger(__name__)
KERAS_DIR = "keras"


def read_raw(file_patterns: list[str], raw_spec: dict) -> dict[str, np.ndarray]:
    """Every example of the split (ExampleGen writes GZIP TFRecords), parsed with the raw spec + label."""
    import tensorflow as tf

    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no examples match {file_patterns}")
    spec = dict(raw_spec) | {schema.LABEL: tf.io.FixedLenFeature([], tf.float32)}
    columns: dict[str, list[np.ndarray]] = {name: [] for name in spec}
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096).map(lambda s: tf.io.parse_example(s, spec)):
        for name, tensor in batch.items():
            columns[name].append(tensor.numpy())
    return {name: np.concatenate(parts) for name, parts in columns.items()}


def transformed_frame(tft_output, raw: dict[str, np.ndarray]) -> pd.DataFrame:
    import tensorflow as tf

    inputs = {name: tf.constant(values) for name, values in raw.items() if name != schema.LABEL}
    transformed = tft_output.transform_raw_features(inputs)
    return pd.DataFrame({name: tensor.numpy() for name, tensor in transformed.items() if not name.startswith(PARAM_PREFIX)})


def serving_module(model, tft_output, kinds: dict[str, tuple[str, int]]):
    """Serialized raw tf.Examples -> {"fare": [n]}: the transform graph, then the network."""
    import tensorflow as tf

    raw_spec = tft_output.raw_feature_spec()
    dense = [name for name, (kind, _) in kinds.items() if kind == "dense"]

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.transform_layer = tft_output.transform_features_layer()

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, serialized):
            transformed = self.transform_layer(tf.io.parse_example(serialized, raw_spec))
            inputs = {"dense_features": tf.stack([tf.cast(transformed[n], tf.float32) for n in dense], axis=1)}
            for name, (kind, _) in kinds.items():
                if kind == "categorical":
                    inputs[name] = tf.cast(transformed[name], tf.int32)
                elif kind == "scale":
                    inputs[name] = tf.cast(transformed[name], tf.float32)
            return {schema.LABEL: tf.reshape(self.model(inputs), [-1])}

    return Serving()


def run_fn(fn_args) -> None:
    import keras
    import tensorflow as tf
    import tensorflow_transform as tft

    config = fn_args.custom_config or {}
    epochs, seed = int(config.get("epochs", 40)), int(config.get("seed", 42))
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    raw = read_raw(fn_args.train_files, tft_output.raw_feature_spec())
    labels = raw[schema.LABEL]
    frame = transformed_frame(tft_output, raw)
    log.info("Trainer: %d training trips through the Transform graph; %d epochs (seed %d)", len(frame), epochs, seed)
    keras_dir = Path(fn_args.serving_model_dir) / KERAS_DIR
    result = train_model(frame, labels, keras_dir, epochs, seed, with_store=True)
    log.info("Trainer: final training RMSE %.3f in %.1f s; %s", result.final_train_rmse, result.seconds, result.model_path)
    model = keras.saving.load_model(keras_dir / model_filename(True))
    module = serving_module(model, tft_output, feature_set(True))
    tf.saved_model.save(module, fn_args.serving_model_dir, signatures={"serving_default": module.serve})

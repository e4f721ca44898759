"""Train the Keras fare model on tf.Transform's output.

Inputs are the `_xf` features declared by `schema.transformed_feature_kinds()`: dense
features go through as they are, categorical ids through small embeddings. The label is `fare`,
taken from the raw split (never an input).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.core.schema import store_transformed_features, transformed_feature_kinds

log = logging.getLogger(__name__)
EMBEDDING_DIM = 8
HIDDEN_UNITS = (128, 64, 32)
BATCH_SIZE = 256
LEARNING_RATE = 2e-3


def model_filename(with_store: bool) -> str:
    return "fare_model.keras" if with_store else "fare_model_without_store.keras"


# Dense features added after models were registered with the older set: a registered champion
# trained before them still loads, scores and is compared with (its graph lacks them too).
ADDED_LATER = (schema.transformed_name("seconds_not_recorded"),)


def kinds_of_model(model) -> dict[str, tuple[str, int]]:
    """The feature set a trained model was built with, told apart by its dense input width."""
    width = next(t.shape[-1] for t in model.inputs if t.name == "dense_features")
    for legacy in (False, True):
        for with_store in (True, False):
            kinds = feature_set(with_store)
            if legacy:
                kinds = {k: v for k, v in kinds.items() if k not in ADDED_LATER}
            if sum(kind == "dense" for kind, _ in kinds.values()) == width:
                return kinds
    raise ValueError(f"model's dense input has {width} features, matching no known feature set")


@dataclass
class TrainResult:
    model_path: str
    epochs_run: int
    train_rows: int
    final_train_rmse: float
    seconds: float
    fare_cap: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def feature_set(with_store: bool) -> dict[str, tuple[str, int]]:
    """The transformed features a model variant reads: all, or all but the feature store's."""
    kinds = transformed_feature_kinds()
    if not with_store:
        kinds = {k: v for k, v in kinds.items() if k not in store_transformed_features()}
    return kinds


def model_inputs(transformed, kinds: dict[str, tuple[str, int]] | None = None) -> dict[str, np.ndarray]:
    """The Keras input dict: dense features stacked into one float matrix, ids one input each."""
    kinds = kinds if kinds is not None else transformed_feature_kinds()
    dense = [name for name, (kind, _) in kinds.items() if kind == "dense"]
    missing = [name for name in kinds if name not in transformed]
    if missing:
        raise KeyError(f"transformed features missing: {', '.join(missing)}")
    inputs = {"dense_features": np.stack([np.asarray(transformed[n], dtype=np.float32) for n in dense], axis=1)}
    for name, (kind, _) in kinds.items():
        if kind == "categorical":
            inputs[name] = np.asarray(transformed[name], dtype=np.int32)
        elif kind == "scale":
            inputs[name] = np.asarray(transformed[name], dtype=np.float32)
    return inputs


def build_model(kinds: dict[str, tuple[str, int]], learning_rate=LEARNING_RATE):
    import keras

    n_dense = sum(1 for kind, _ in kinds.values() if kind == "dense")
    inputs = {"dense_features": keras.Input(shape=(n_dense,), name="dense_features")}
    parts = [inputs["dense_features"]]
    scales = []
    for name, (kind, size) in kinds.items():
        if kind == "categorical":
            inputs[name] = keras.Input(shape=(), dtype="int32", name=name)
            parts.append(keras.layers.Embedding(size, EMBEDDING_DIM, name=f"{name}_embedding")(inputs[name]))
        elif kind == "scale":
            inputs[name] = keras.Input(shape=(), dtype="float32", name=name)
            scales.append(keras.layers.Reshape((1,), name=f"{name}_column")(inputs[name]))
    x = keras.layers.Concatenate()(parts)
    for units in HIDDEN_UNITS:
        x = keras.layers.Dense(units, activation="relu")(x)
    output = keras.layers.Dense(1, name="fare" if not scales else "fare_at_reference_prices")(x)
    if scales:
        # The network prices a trip at the training period's fare level; the fare index (its
        # recent value over its training mean) carries that to today's prices. A price change
        # the training data never saw then moves predictions without retraining.
        output = keras.layers.Multiply(name="fare")([output, *scales])
    model = keras.Model(inputs, output)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse", metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])
    return model


class _ProgressLog:
    """Keras callback that logs one line every few epochs (Airflow task logs, not a progress bar)."""

    def __new__(cls, every: int, total: int):
        import keras

        class Callback(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if (epoch + 1) % every == 0 or epoch == 0:
                    logs = logs or {}
                    log.info("epoch %d/%d: training RMSE %.3f", epoch + 1, total, logs.get("rmse", float("nan")))

        return Callback()


def train_model(transformed_train: pd.DataFrame, labels: np.ndarray, out_dir: Path, epochs: int, seed: int, with_store: bool = True) -> TrainResult:
    """Fit on the whole training split for a fixed number of epochs with a cosine-decayed
    learning rate. (Early stopping on a time-ordered validation slice made the holdout RMSE
    swing by +-5% between seeds; the fixed schedule is steadier and as good.)"""
    import keras

    if schema.LABEL in transformed_train.columns:
        raise ValueError(f"the label {schema.LABEL!r} must not be among the model inputs")
    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    steps = int(np.ceil(len(labels) / BATCH_SIZE)) * epochs
    kinds = feature_set(with_store)
    model = build_model(kinds, keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps))
    history = model.fit(
        model_inputs(transformed_train, kinds),
        np.asarray(labels, dtype=np.float32),
        epochs=epochs,
        batch_size=BATCH_SIZE,
        verbose=0,
        callbacks=[_ProgressLog(every=10, total=epochs)],
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / model_filename(with_store)
    fare_cap = float(np.max(labels))
    with_fare_range(model, fare_cap).save(model_path)
    return TrainResult(
        model_path=str(model_path),
        epochs_run=len(history.history["loss"]),
        train_rows=len(labels),
        final_train_rmse=float(history.history["rmse"][-1]),
        seconds=round(time.perf_counter() - started, 2),
        fare_cap=round(fare_cap, 2),
    )


def with_fare_range(model, fare_cap: float):
    """The trained network with its output held inside the fares it learnt from: never below 0,
    never above the largest training fare (a saved Keras ReLU layer, so every copy of the model,
    MLflow's included, carries the bound). Trained without it: a clipped output has no gradient."""
    import keras

    capped = keras.layers.ReLU(max_value=fare_cap, name="fare_in_training_range")(model.output)
    return keras.Model(model.inputs, capped, name="fare_model")

"""Train the Keras fare model on tf.Transform's output.

Inputs are the `_xf` features declared by `transform.transformed_feature_kinds()`: dense
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

from chicago_taxi import schema
from chicago_taxi.transform import transformed_feature_kinds

log = logging.getLogger(__name__)
EMBEDDING_DIM = 8
HIDDEN_UNITS = (128, 64, 32)


@dataclass
class TrainResult:
    model_path: str
    epochs_run: int
    train_rows: int
    final_val_loss: float
    seconds: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def model_inputs(transformed: pd.DataFrame) -> dict[str, np.ndarray]:
    """The Keras input dict: dense features stacked into one float matrix, ids one input each."""
    kinds = transformed_feature_kinds()
    dense = [name for name, (kind, _) in kinds.items() if kind == "dense"]
    missing = [name for name in kinds if name not in transformed]
    if missing:
        raise KeyError(f"transformed features missing: {', '.join(missing)}")
    inputs = {"dense_features": np.stack([np.asarray(transformed[n], dtype=np.float32) for n in dense], axis=1)}
    for name, (kind, _) in kinds.items():
        if kind == "categorical":
            inputs[name] = np.asarray(transformed[name], dtype=np.int32)
    return inputs


def build_model(learning_rate: float = 1e-3):
    import keras

    kinds = transformed_feature_kinds()
    n_dense = sum(1 for kind, _ in kinds.values() if kind == "dense")
    inputs = {"dense_features": keras.Input(shape=(n_dense,), name="dense_features")}
    parts = [inputs["dense_features"]]
    for name, (kind, size) in kinds.items():
        if kind == "categorical":
            inputs[name] = keras.Input(shape=(), dtype="int32", name=name)
            parts.append(keras.layers.Embedding(size, EMBEDDING_DIM, name=f"{name}_embedding")(inputs[name]))
    x = keras.layers.Concatenate()(parts)
    for units in HIDDEN_UNITS:
        x = keras.layers.Dense(units, activation="relu")(x)
    output = keras.layers.Dense(1, name="fare")(x)
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
                    log.info("epoch %d/%d loss %.3f val_rmse %.3f", epoch + 1, total, logs.get("loss", float("nan")), logs.get("val_rmse", float("nan")))

        return Callback()


def train_model(transformed_train: pd.DataFrame, labels: np.ndarray, out_dir: Path, epochs: int, seed: int) -> TrainResult:
    """Fit on the training split; the last 10% (by time) is the early-stopping validation set."""
    import keras

    if schema.LABEL in transformed_train.columns:
        raise ValueError(f"the label {schema.LABEL!r} must not be among the model inputs")
    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    model = build_model()
    inputs = model_inputs(transformed_train)
    history = model.fit(
        inputs,
        np.asarray(labels, dtype=np.float32),
        epochs=epochs,
        batch_size=128,
        validation_split=0.1,
        verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=4),
            _ProgressLog(every=10, total=epochs),
        ],
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / "fare_model.keras"
    model.save(model_path)
    return TrainResult(
        model_path=str(model_path),
        epochs_run=len(history.history["loss"]),
        train_rows=len(labels),
        final_val_loss=float(min(history.history["val_loss"])),
        seconds=round(time.perf_counter() - started, 2),
    )

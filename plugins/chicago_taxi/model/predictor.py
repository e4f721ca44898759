"""Raw trips in, fares out: the saved transform graph followed by the Keras model.

Evaluation, the MLflow pyfunc and the BentoML service all predict through `FarePredictor`, so
what is measured on the holdout is exactly what is served.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from chicago_taxi.core.config import scorer_choice
from chicago_taxi.core.schema import MIN_FARE, REPAIRS_OUTPUT

log = logging.getLogger(__name__)

TRANSFORM_ARTIFACT = "transform_graph"
MODEL_ARTIFACT = "keras_model"


class FarePredictor:
    def __init__(self, transform_dir: str | Path, model_path: str | Path):
        import keras

        from chicago_taxi.model.transform import TransformGraph

        self.transform_dir, self.model_path = Path(transform_dir), Path(model_path)
        self.graph = TransformGraph(transform_dir)
        self.model = keras.models.load_model(model_path)
        self._fused = None
        self.fast, self.scorer_note = self._build_fast() if scorer_choice() == "auto" else (None, "TAXI_SCORER=graph")

    def _build_fast(self):
        """The numpy scoring path (`model.fast_path`), checked against the graph on probe trips;
        (None, why) when this model cannot use it."""
        from chicago_taxi.model import fast_path
        from chicago_taxi.model.network import kinds_of_model
        from chicago_taxi.model.transform import raw_frame_to_features

        try:
            fast = fast_path.FastScorer(self.graph, self.model, kinds_of_model(self.model))
            probes = raw_frame_to_features(fast_path.probe_trips())
            ours, graph = fast(probes), self._graph_scores(probes)
        except fast_path.Unavailable as exc:
            log.info("scoring through the TensorFlow graph: %s", exc)
            return None, str(exc)
        worst = max(fast_path.max_difference(ours[0], graph[0]), float(np.any(ours[1] != graph[1])))
        if worst > 0:
            note = f"the numpy path differs from the graph on probe trips (excess {worst:.3g}); scoring through the graph"
            log.warning(note)
            return None, note
        return fast, "numpy (checked against the graph at load)"

    def _build_fused(self):
        """Transform graph and model traced into one `tf.function` over raw feature tensors.

        Keras' `model.predict` costs ~150 ms per call here whatever the batch size (it builds a
        dataset and a step function each time); the traced function answers one trip in a few
        milliseconds with the same numbers, which is what a request path needs."""
        import tensorflow as tf

        from chicago_taxi.model.network import kinds_of_model
        from chicago_taxi.model.transform import STRING_INPUTS

        kinds = kinds_of_model(self.model)
        dense = [name for name, (kind, _) in kinds.items() if kind == "dense"]
        categorical = [name for name, (kind, _) in kinds.items() if kind == "categorical"]
        scales = [name for name, (kind, _) in kinds.items() if kind == "scale"]
        layer = self.graph.output.transform_features_layer()
        model = self.model
        spec = {n: tf.TensorSpec([None], tf.string if n in STRING_INPUTS else tf.float32, name=n) for n in sorted(self.graph.input_names)}

        @tf.function(input_signature=[spec])
        def fused(raw):
            transformed = layer(raw)
            inputs = {"dense_features": tf.stack([tf.cast(transformed[n], tf.float32) for n in dense], axis=1)}
            inputs.update({n: tf.cast(transformed[n], tf.int32) for n in categorical})
            inputs.update({n: tf.cast(transformed[n], tf.float32) for n in scales})
            fare = tf.reshape(model(inputs, training=False), [-1])
            # Graphs saved before the repairs existed have no mask: nothing was repaired.
            repairs = transformed.get(REPAIRS_OUTPUT, tf.zeros_like(fare, dtype=tf.int64))
            return fare, tf.reshape(repairs, [-1])

        self._fused = fused
        return fused

    def predict(self, trips: pd.DataFrame) -> np.ndarray:
        """Fares of raw trips, in row order."""
        return self.predict_with_repairs(trips)[0]

    def predict_with_repairs(self, trips: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Fares of raw trips and, per trip, the bit mask of the repairs the transform graph made
        to its inputs (`schema.repairs_of(mask)` names them; 0: the trip was clean)."""
        from chicago_taxi.model.transform import raw_frame_to_features

        if trips.empty:
            return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
        return self.predict_features(raw_frame_to_features(trips))

    def predict_features(self, features: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """`predict_with_repairs` for the graph's raw input arrays (`raw_frame_to_features`)."""
        fares, repairs = self.fast(features) if self.fast is not None else self._graph_scores(features)
        # A fare below the flag pull is impossible; the model may undershoot on tiny trips. (The
        # model itself caps fares at the largest fare of its training trips.)
        return np.maximum(fares.astype(np.float64), MIN_FARE), repairs.astype(np.int64)

    def _graph_scores(self, features: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Fares (unfloored) and repair masks from the traced TensorFlow graph."""
        import tensorflow as tf

        fused = self._fused or self._build_fused()
        fares, repairs = fused({n: tf.constant(features[n]) for n in self.graph.input_names})
        return fares.numpy(), repairs.numpy()


try:  # the pyfunc wrapper needs mlflow; the predictor itself does not
    import mlflow.pyfunc

    class FarePyfunc(mlflow.pyfunc.PythonModel):
        """MLflow pyfunc: a pandas DataFrame of raw trip columns (Chicago names) -> predicted fares."""

        def load_context(self, context):
            self.predictor = FarePredictor(context.artifacts[TRANSFORM_ARTIFACT], context.artifacts[MODEL_ARTIFACT])

        def predict(self, context, model_input, params=None):
            frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
            return self.predictor.predict(frame)

except ImportError:  # pragma: no cover
    FarePyfunc = None

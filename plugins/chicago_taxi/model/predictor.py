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
# The numpy scorer bundle (`FarePredictor.export_numpy_scorer`); models logged before it have none.
NUMPY_SCORER_ARTIFACT = "numpy_scorer"


class FarePredictor:
    """`scorer_dir`: the model's numpy scorer bundle (`fast_path.FastScorer.save`), when it has
    one. With it the predictor loads without TensorFlow (the transform graph and the Keras model
    load only if something asks for them); without it, or when the bundle fails its check, the
    numpy path is built from the graph and the model and checked against the graph at load."""

    def __init__(self, transform_dir: str | Path, model_path: str | Path, scorer_dir: str | Path | None = None):
        self.transform_dir, self.model_path = Path(transform_dir), Path(model_path)
        self._graph = self._model = self._fused = None
        if scorer_choice() != "auto":
            self.fast, self.scorer_note = None, "TAXI_SCORER=graph"
            _ = self.graph, self.model  # loaded now, not on the first request
            return
        loaded = self._load_bundle(Path(scorer_dir)) if scorer_dir is not None else None
        self.fast, self.scorer_note = loaded or self._build_fast()

    @property
    def graph(self):
        """The saved transform graph (`transform.TransformGraph`), loaded on first use."""
        if self._graph is None:
            from chicago_taxi.model.transform import TransformGraph

            self._graph = TransformGraph(self.transform_dir)
        return self._graph

    @property
    def model(self):
        """The Keras model, loaded on first use."""
        if self._model is None:
            import keras

            self._model = keras.models.load_model(self.model_path)
        return self._model

    @staticmethod
    def _load_bundle(scorer_dir: Path):
        from chicago_taxi.model import fast_path

        try:
            fast = fast_path.FastScorer.load(scorer_dir)
        except fast_path.Unavailable as exc:
            log.warning("numpy scorer bundle not used (%s); building the numpy path from the graph", exc)
            return None
        return fast, "numpy (bundle, checked against the graph's outputs on probe trips at load)"

    def _build_fast(self):
        """The numpy scoring path (`model.fast_path`), checked against the graph on probe trips;
        (None, why) when this model cannot use it."""
        from chicago_taxi.model import fast_path
        from chicago_taxi.model.network import kinds_of_model
        from chicago_taxi.model.transform import raw_frame_to_features

        try:
            fast = fast_path.FastScorer.from_graph(self.graph, self.model, kinds_of_model(self.model))
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

    def export_numpy_scorer(self, directory: str | Path) -> Path | None:
        """Save the checked numpy path as a bundle (with the graph's outputs on the probe trips)
        that `FarePredictor(..., scorer_dir=directory)` loads without TensorFlow; None when this
        model is scored by the graph."""
        from chicago_taxi.model import fast_path
        from chicago_taxi.model.transform import raw_frame_to_features

        if self.fast is None:
            return None
        fares, repairs = self._graph_scores(raw_frame_to_features(fast_path.probe_trips()))
        try:
            return self.fast.save(Path(directory), fares, repairs)
        except fast_path.Unavailable as exc:
            log.warning("no numpy scorer bundle: %s", exc)
            return None

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
            self.predictor = FarePredictor(
                context.artifacts[TRANSFORM_ARTIFACT], context.artifacts[MODEL_ARTIFACT], context.artifacts.get(NUMPY_SCORER_ARTIFACT)
            )

        def predict(self, context, model_input, params=None):
            frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
            return self.predictor.predict(frame)

except ImportError:  # pragma: no cover
    FarePyfunc = None

"""Raw trips in, fares out: the saved transform graph followed by the Keras model.

Evaluation, the MLflow pyfunc and the BentoML service all predict through `FarePredictor`, so
what is measured on the holdout is exactly what is served.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TRANSFORM_ARTIFACT = "transform_graph"
MODEL_ARTIFACT = "keras_model"


class FarePredictor:
    def __init__(self, transform_dir: str | Path, model_path: str | Path):
        import keras

        from chicago_taxi.transform import TransformGraph

        self.graph = TransformGraph(transform_dir)
        self.model = keras.models.load_model(model_path)

    def predict(self, trips: pd.DataFrame) -> np.ndarray:
        from chicago_taxi.train import kinds_of_model, model_inputs

        if trips.empty:
            return np.zeros(0, dtype=np.float64)
        transformed = self.graph.transform(trips)
        raw = self.model.predict(model_inputs(transformed, kinds_of_model(self.model)), verbose=0, batch_size=4096).reshape(-1)
        # A fare below the flag pull is impossible; the model may undershoot on tiny trips.
        from chicago_taxi.schema import MIN_FARE

        return np.maximum(raw.astype(np.float64), MIN_FARE)


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

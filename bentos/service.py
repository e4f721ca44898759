"""BentoML service for fare predictions from a registered model version.

The model is the MLflow pyfunc imported into BentoML's store by the training DAG
(`TAXI_BENTO_MODEL_TAG`, resolved and packed into the Bento at build time).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import bentoml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from chicago_taxi.serving import TripRequest  # noqa: E402

MODEL_TAG = os.environ.get("TAXI_BENTO_MODEL_TAG", "chicago_taxi_fare:latest")


@bentoml.service(traffic={"timeout": 10}, workers=1)
class TaxiFareService:
    model_ref = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        import bentoml.mlflow

        self.model = bentoml.mlflow.load_model(self.model_ref)
        self.model_version = self.model_ref.info.labels.get("mlflow_version")

    @bentoml.api
    def predict(self, trip: TripRequest) -> dict:
        import pandas as pd

        fare = float(self.model.predict(pd.DataFrame([trip.model_dump()]))[0])
        return {"fare": round(fare, 2), "model_version": self.model_version}

    @bentoml.api
    def predict_batch(self, trips: list[TripRequest]) -> list[dict]:
        import pandas as pd

        fares = self.model.predict(pd.DataFrame([t.model_dump() for t in trips]))
        return [{"fare": round(float(f), 2), "model_version": self.model_version} for f in fares]

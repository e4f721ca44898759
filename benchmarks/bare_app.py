"""The serving benchmark's floor: a bare FastAPI app on uvicorn doing exactly the prediction
service's work (same `FareService`, same request models, same routes, the same publishing of
every scored trip to the prediction log), without BentoML.

Run: `python benchmarks/bare_app.py PORT` (environment as for `make serve`).
"""

from __future__ import annotations

import gc
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import uvicorn  # noqa: E402
from fastapi import Body, FastAPI  # noqa: E402
from pydantic import Field  # noqa: E402

from chicago_taxi.core.config import ServeConfig  # noqa: E402
from chicago_taxi.core.jsonable import now_ms  # noqa: E402
from chicago_taxi.serving.contract import BatchAnswer, BatchTrip, PredictionResponse, TripRequest  # noqa: E402
from chicago_taxi.serving.fare_service import FareService  # noqa: E402
from chicago_taxi.serving.prediction_log import PredictionLogPublisher  # noqa: E402

service = FareService(publisher=PredictionLogPublisher())


@asynccontextmanager
async def lifespan(_app: FastAPI):
    yield
    service.close()  # flush the prediction log, as the service's shutdown hook does


app = FastAPI(title="bare fare app", lifespan=lifespan)


@app.post("/predict")
def predict(trip: Annotated[TripRequest, Body(embed=True)]) -> PredictionResponse:
    received = now_ms()
    trips = [trip.model_dump()]
    answers = service.predict(trips)
    service.log_predictions(trips, answers, "/predict", received_ms=received)
    return PredictionResponse(**answers[0])


@app.post("/predict_batch")
def predict_batch(trips: Annotated[list[BatchTrip], Body(embed=True), Field(max_length=ServeConfig.from_env().max_batch_trips)]) -> list[BatchAnswer]:
    # As the service: each trip checked on its own, an error entry for one that cannot be read.
    return [BatchAnswer.of(entry) for entry in service.predict_each(trips, log_endpoint="/predict_batch")]


@app.get("/readyz")
def readyz() -> dict:
    return {"ready": True}


if __name__ == "__main__":
    service.predict([{"trip_miles": 1.0, "trip_seconds": 300.0, "trip_start_hour": 12, "trip_start_day": 3, "trip_start_month": 6}])
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)

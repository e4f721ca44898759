"""BentoML service: fare predictions from the MLflow champion plus Redis features through Feast.

All logic lives in `chicago_taxi.serving.fare_service.FareService` (shared with the benchmark's bare
uvicorn app); this file only wires it into BentoML:

- POST /predict         {"trip": {...}}       -> {"fare", "model_version", "features_defaulted", "input_warnings", "degraded", "trip_id"}
- POST /predict_batch   {"trips": [{...}, ...]} -> one entry per trip, in input order: that answer, or
                        {"index", "trip_id", "errors"} for a trip that cannot be interpreted
- GET  /ops/health      model version, online store reachability, last reload error, the A/B
                        state (mode, challenger, why inactive) and the prediction log's counts
                        (published, lost, pending, last error)
- POST /ops/reload      re-resolve `models:/chicago_taxi_fare@champion` (and `@challenger` when A/B
                        is on) now; both are also polled every TAXI_CHAMPION_POLL_SECONDS, default 30.
                        With TAXI_RELOAD_TOKEN set it needs `Authorization: Bearer <token>` (else 401)
- GET  /readyz, /livez, /metrics, /docs.json (OpenAPI), / (Swagger UI): BentoML's own.

Trips use the Chicago column names or the legacy upstream shape (SPEC); what can be interpreted is
scored, repairs named in `input_warnings` (see serving.contract). A single trip that cannot be
interpreted gets a 400 naming each bad field; a batch gets a 400 only for its envelope (not JSON,
`trips` not a list of objects, more than TAXI_SERVE_MAX_BATCH_TRIPS trips). A body over
TAXI_SERVE_MAX_BODY_BYTES gets a 413, a body that is not JSON by its Content-Type a 415. Redis
down: answers stay 200 and carry `"degraded": true` (see fare_service).

Every scored trip is also published to Kafka `taxi-predictions` for monitoring
(`monitoring.prediction_log`: model, variant, inputs, store features used, times; source kind
"http"), after it is answered and without waiting for the broker: a broker that is down costs
monitoring records (counted and logged, see /ops/health), never an answer.
TAXI_PREDICTION_LOG=0 turns that off. A/B (config/monitoring.yaml, TAXI_AB_MODE): see fare_service.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import bentoml
from fastapi import FastAPI, Header, HTTPException
from pydantic import Field

# The repository root (for `bentos.*`) and plugins/ (the library), in a checkout and in a built Bento alike.
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "plugins")]

from bentos.middleware import BodySizeLimit, JsonBodiesOnly  # noqa: E402
from chicago_taxi.core.config import ServeConfig  # noqa: E402
from chicago_taxi.core.jsonable import now_ms  # noqa: E402
from chicago_taxi.serving.access import reload_refusal  # noqa: E402
from chicago_taxi.serving.contract import BatchAnswer, BatchTrip, PredictionResponse, TripRequest  # noqa: E402

# Set when the training DAG builds the Bento: the registered version is packed into it and used
# only when the registry cannot be reached at start.
SERVE = ServeConfig.from_env()
MODEL_TAG = SERVE.model_tag
ops = FastAPI(title="operations")


@bentoml.service(
    name="chicago_taxi_fare_service",
    # BentoML's per-request timeout timer is never cancelled: a short timeout keeps the heap
    # small (see README "Serving performance").
    traffic={"timeout": SERVE.timeout_seconds},
    workers=SERVE.workers,
    threads=SERVE.threads,
    http={"host": "127.0.0.1", "port": 3000},
    logging={"access": {"enabled": SERVE.access_log}},
    metrics={"enabled": SERVE.metrics},
    tracing={} if SERVE.tracing else {"excluded_urls": ["/predict", "/predict_batch"]},
)
@bentoml.asgi_app(ops, path="/ops")
class TaxiFareService:
    if MODEL_TAG:
        packed_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        from chicago_taxi.core.config import load_settings
        from chicago_taxi.serving.fare_service import FareService, LoadedModel, load_champion, predictor_from_model_dir
        from chicago_taxi.serving.prediction_log import PredictionLogPublisher

        settings = load_settings()
        try:
            model = load_champion(settings)
        except Exception:
            if not MODEL_TAG:
                raise
            # bentoml.mlflow keeps the logged pyfunc under <model>/mlflow_model.
            model = LoadedModel(
                predictor_from_model_dir(Path(self.packed_model.path) / "mlflow_model"),
                settings.model_name,
                self.packed_model.info.labels.get("mlflow_version", "?"),
                "bento",
            )
        self.service = FareService(settings, model=model, publisher=PredictionLogPublisher())
        # Warm the traced graph so the first request does not pay for tracing (not logged: no trip).
        self.service.predict([{"trip_miles": 1.0, "trip_seconds": 300.0, "trip_start_hour": 12, "trip_start_day": 3, "trip_start_month": 6}])
        self.service.start_polling()
        # Long-lived objects out of the collector's way: full collections were the 200 ms tail.
        gc.collect()
        gc.freeze()

    def __is_ready__(self) -> bool:
        return self.service.model is not None

    @bentoml.on_shutdown
    def close_prediction_log(self) -> None:
        self.service.close()

    # The response models drop what the answers carry for the prediction log (store_features, shadow, ...).
    @bentoml.api
    def predict(self, trip: TripRequest) -> PredictionResponse:
        received = now_ms()
        trips = [trip.model_dump()]
        answers = self.service.predict(trips)
        self.service.log_predictions(trips, answers, "/predict", received_ms=received)
        return PredictionResponse(**answers[0])

    @bentoml.api
    def predict_batch(self, trips: list[BatchTrip] = Field(max_length=SERVE.max_batch_trips)) -> list[BatchAnswer]:
        return [BatchAnswer.of(entry) for entry in self.service.predict_each(trips, log_endpoint="/predict_batch")]

    @ops.get("/health")
    def health(self) -> dict:
        return self.service.health()

    @ops.post("/reload")
    def reload(self, authorization: str | None = Header(default=None)) -> dict:
        refusal = reload_refusal(SERVE.reload_token, authorization)
        if refusal:
            raise HTTPException(status_code=401, detail=refusal, headers={"WWW-Authenticate": "Bearer"})
        return self.service.reload()


TaxiFareService.add_asgi_middleware(JsonBodiesOnly)
TaxiFareService.add_asgi_middleware(BodySizeLimit, max_bytes=SERVE.max_body_bytes)

"""The BentoML service (bentos/service.py) in process, with a stand-in model, online store and
prediction log: the HTTP shapes of its answers, the batch's per-trip entries, what it publishes,
the 400/413 envelope errors and the OpenAPI spec. The real model, Redis and `bentoml serve`: tests/integration/bentos."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from chicago_taxi.core import schema
from fixtures.env import REPO_ROOT

STAMP = 1420074000
TRIP = {"trip_start_timestamp": STAMP, "trip_miles": 2.1, "trip_seconds": 540, "pickup_community_area": 8, "payment_type": "Cash"}


class ZeroSecondsPredictor:
    def predict_features(self, features: dict[str, np.ndarray]):
        seconds = features["trip_seconds"].astype(float)
        return np.full(len(seconds), 9.5), np.where(seconds <= 0, 1 << schema.REPAIRS.index(schema.REPAIRS_BY_CODE["seconds_not_recorded"]), 0)


class StoreWithNothing:
    address, last_error = "nowhere", None

    def lookup(self, trips):
        return {f: np.full(len(trips), np.nan) for f in schema.STORE_FEATURES}, [[]] * len(trips)

    def ping(self):
        return True


class RecordingPublisher:
    """Stands in for the prediction log's Kafka publisher."""

    enabled = True

    def __init__(self):
        self.records, self.closed = [], False

    def publish(self, records):
        self.records += records
        return len(records)

    def record_lost(self, count, reason):
        raise AssertionError(f"{count} record(s) lost: {reason}")

    def stats(self):
        return {"enabled": True, "published": len(self.records), "lost": 0}

    def close(self, timeout=5.0):
        self.closed = True


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from starlette.testclient import TestClient

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TAXI_CHAMPION_POLL_SECONDS", "0")
        # BentoML's request metrics: when an earlier test of the session imported prometheus_client
        # in multiprocess mode, its values need this directory (else a TypeError on every request).
        patch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path_factory.mktemp("prometheus")))
        patch.syspath_prepend(str(REPO_ROOT))
        from chicago_taxi.serving import fare_service, prediction_log

        patch.setattr(fare_service, "load_champion", lambda settings: fare_service.LoadedModel(ZeroSecondsPredictor(), "fare", "5", "registry"))
        patch.setattr(fare_service, "OnlineStoreClient", lambda settings: StoreWithNothing())
        publisher = RecordingPublisher()
        patch.setattr(prediction_log, "PredictionLogPublisher", lambda: publisher)
        from bentos.service import SERVE, TaxiFareService

        with TestClient(TaxiFareService.to_asgi()) as client:
            client.serve, client.publisher = SERVE, publisher
            yield client
        assert publisher.closed, "the shutdown hook did not close the prediction log"
    sys.modules.pop("bentos.service", None)


def test_predict_answers_with_input_warnings(client):
    response = client.post("/predict", json={"trip": {**TRIP, "trip_seconds": 0}})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"fare", "model_version", "features_defaulted", "input_warnings", "degraded", "trip_id"}
    assert [w["code"] for w in answer["input_warnings"]] == ["seconds_not_recorded"]
    assert client.post("/predict", json={"trip": TRIP}).json()["input_warnings"] == []


def test_every_scored_trip_is_published_and_only_the_answer_is_returned(client):
    client.publisher.records.clear()
    answer = client.post("/predict", json={"trip": {**TRIP, "trip_id": "p1"}}).json()
    assert "store_features" not in answer and "shadow" not in answer and "model_name" not in answer
    batch = client.post("/predict_batch", json={"trips": [{**TRIP, "trip_id": "b1"}, {"trip_id": "b2", "trip_miles": -1}]}).json()
    assert "errors" in batch[1] and "store_features" not in batch[0]
    records = client.publisher.records
    assert [(r["trip_id"], r["source"]) for r in records] == [
        ("p1", {"kind": "http", "endpoint": "/predict"}),
        ("b1", {"kind": "http", "endpoint": "/predict_batch"}),  # the trip that could not be read is not a prediction
    ]
    assert all(r["variant"] == "champion" and r["served"] and r["model_version"] == "5" and r["fare"] == 9.5 for r in records)
    assert records[0]["inputs"]["trip_miles"] == TRIP["trip_miles"] and records[0]["produced_at_ms"] <= records[0]["scored_at_ms"]
    health = client.get("/ops/health").json()
    assert health["prediction_log"]["published"] == 2 and health["ab"]["mode"] in ("off", "shadow", "split")


def test_predict_refuses_an_uninterpretable_trip_with_a_400_naming_the_field(client):
    response = client.post("/predict", json={"trip": {**TRIP, "trip_miles": -1}})
    assert response.status_code == 400 and response.json()["detail"][0]["loc"] == ["trip", "trip_miles"]


def test_predict_batch_answers_every_trip_in_order_and_stays_200(client):
    trips = [{**TRIP, "trip_id": f"t{i}"} for i in range(6)]
    trips[1] = {**trips[1], "trip_seconds": -5}
    trips[4] = {"trip_id": "t4", "trip_miles": "far"}
    response = client.post("/predict_batch", json={"trips": trips})
    assert response.status_code == 200, response.text
    answers = response.json()
    assert [a["trip_id"] for a in answers] == [f"t{i}" for i in range(6)]
    assert [i for i, a in enumerate(answers) if "errors" in a] == [1, 4]
    assert answers[1] == {"index": 1, "trip_id": "t1", "errors": [{"field": "trip_seconds", "problem": "Input should be greater than or equal to 0"}]}
    assert all(a["fare"] == 9.5 for i, a in enumerate(answers) if i not in (1, 4))


@pytest.mark.parametrize(
    "body",
    [
        b'{"trips": [{"trip_miles": ',  # not JSON
        b'{"trips": {"trip_miles": 1}}',  # not a list
        b'{"trips": [1, {"trip_miles": 1}]}',  # not a list of objects
        b'{"trip": {"trip_miles": 1}}',  # no trips
        b"[]",
    ],
)
def test_only_a_malformed_envelope_refuses_the_batch(client, body):
    response = client.post("/predict_batch", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text


def test_more_trips_than_the_limit_get_a_400_naming_it(client):
    response = client.post("/predict_batch", json={"trips": [TRIP] * (client.serve.max_batch_trips + 1)})
    assert response.status_code == 400 and str(client.serve.max_batch_trips) in response.text


def test_a_body_over_the_size_limit_gets_a_413_with_a_json_reason(client):
    big = json.dumps({"trips": [{**TRIP, "company": "C" * 200}] * 6000}).encode()
    assert len(big) > client.serve.max_body_bytes
    response = client.post("/predict_batch", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {
        "error": f"a body of {len(big)} bytes is over the limit of {client.serve.max_body_bytes} bytes for /predict_batch: split the batch",
        "max_body_bytes": client.serve.max_body_bytes,
    }


def test_the_openapi_spec_documents_both_kinds_of_batch_entries(client):
    spec = client.get("/docs.json").json()
    answer = spec["paths"]["/predict_batch"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["type"] == "array" and answer["items"] == {"$ref": "#/components/schemas/BatchAnswer"}
    schemas = spec["components"]["schemas"]
    assert [ref["$ref"].rsplit("/", 1)[1] for ref in schemas["BatchAnswer"]["anyOf"]] == ["PredictionResponse", "TripError"]
    assert {"index", "trip_id", "errors"} == set(schemas["TripError"]["properties"])
    assert "input_warnings" in schemas["PredictionResponse"]["required"]
    trip_schema = spec["paths"]["/predict_batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]["trips"]["items"]
    assert set(schema.MODEL_INPUT_COLUMNS) <= set(trip_schema["properties"])

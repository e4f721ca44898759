"""The prediction service as users meet it: `bentoml serve` in a subprocess, the champion trained
in this session (fixtures.training), a real Redis of its own (so it can be stopped), online
features materialized through Feast, and the session's Kafka broker for its prediction log."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC

import numpy as np
import pandas as pd
import pytest

from chicago_taxi.core import schema
from chicago_taxi.ingest import topics
from fixtures.env import DATA_CSV, REPO_ROOT, free_port
from fixtures.streams import end_offsets, read_since
from fixtures.training import MODEL, mlflow_client

REQUEST_COLUMNS = list(schema.MODEL_INPUT_COLUMNS)  # the request fields: every model input
REDIS = REPO_ROOT / "scripts" / "redis.sh"


RELOAD_TOKEN = "test-reload-token"  # a test fixture's value, not a deployment secret


def _redis(action: str, port: int) -> None:
    proc = subprocess.run([str(REDIS), action, str(port)], capture_output=True, text=True)
    assert proc.returncode == 0, f"redis.sh {action} {port}: {proc.stdout}{proc.stderr}"


@pytest.fixture(scope="module")
def serving_env(stack, first_run, kafka_broker):
    """The training stack's env with a Redis online store of this module's own, warmed, and the
    session's broker for the prediction log."""
    tmp, env = stack
    port = free_port()
    _redis("start", port)
    env = {
        **env,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
        "TAXI_ONLINE_STORE": "redis",
        "REDIS_PORT": str(port),
        "TAXI_CHAMPION_POLL_SECONDS": "2",
        "TAXI_ONLINE_STORE_RETRY_SECONDS": "1",
        "TAXI_REDIS_TIMEOUT_SECONDS": "0.5",
        "TAXI_RELOAD_TOKEN": RELOAD_TOKEN,
    }
    proc = subprocess.run(["python", "-m", "chicago_taxi.features.store", "warm"], env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield env, port
    _redis("stop", port)


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _post(url: str, body, raw: bytes | None = None, content_type: str = "application/json", headers: dict | None = None) -> tuple[int, object]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


class Service:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}"

    def predict(self, trip):
        return _post(f"{self.url}/predict", {"trip": trip})

    def predict_batch(self, trips):
        return _post(f"{self.url}/predict_batch", {"trips": trips})

    def health(self) -> dict:
        status, body = _get(f"{self.url}/ops/health")
        assert status == 200, body
        return body


@pytest.fixture(scope="module")
def service(serving_env, stack):
    env, _ = serving_env
    tmp, _ = stack
    port = free_port()
    log = tmp / "serve.log"
    server = subprocess.Popen(
        ["bentoml", "serve", "bentos/service.py:TaxiFareService", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),
        start_new_session=True,
    )
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
            break
        except OSError:
            assert server.poll() is None, f"bentoml serve exited {server.returncode}: {log.read_text()[-3000:]}"
            assert time.time() < deadline, f"service not ready after 180 s: {log.read_text()[-3000:]}"
            time.sleep(0.5)
    yield Service(port)
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts; missing values travel as null."""
    return [{k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in frame.to_dict("records")]


@pytest.fixture(scope="module")
def valid_trips() -> pd.DataFrame:
    trips = pd.read_csv(DATA_CSV)
    # Trips without the sample's known dirt (the dirty ones have tests of their own), some without
    # company or coordinates, from the last week of the data so the online store has values for many.
    trips = trips[(trips.trip_seconds >= 1) & (trips.trip_miles <= 100)]
    return trips.sort_values("trip_start_timestamp").tail(100)[REQUEST_COLUMNS].reset_index(drop=True)


def test_answers_equal_the_pyfunc_given_the_same_online_features(service, serving_env, valid_trips, stack):
    from chicago_taxi.core.config import load_settings
    from chicago_taxi.features import store as feast_store

    env, _ = serving_env
    trips = valid_trips.head(40)
    status, answers = service.predict_batch(_records(trips))
    assert status == 200 and len(answers) == len(trips)
    # Independently: the same online features read in this process, then the registered pyfunc.
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        settings = load_settings()
        store = feast_store.feature_store(settings)
        from datetime import datetime

        import mlflow  # its own block: ruff ranks mlflow first-party when ./mlflow (the local store) exists

        online, defaulted = feast_store.online_features(store, trips, settings.data_time(datetime.now(UTC)))
        mlflow_client(stack)
        version = service.health()["model"]["version"]
        expected = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}").predict(pd.concat([trips, online], axis=1))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert [a["fare"] for a in answers] == pytest.approx(list(np.round(expected, 2)), abs=0.011)
    assert [a["features_defaulted"] for a in answers] == defaulted
    assert any(not d for d in defaulted), "no trip found its features in Redis: the warm-up did not materialize"
    assert all(a["model_version"] == version and a["degraded"] is False for a in answers)


def test_a_batch_of_100_equals_100_single_answers_in_order(service, valid_trips):
    records = [{**r, "trip_id": f"trip-{i}"} for i, r in enumerate(_records(valid_trips))]
    status, batch = service.predict_batch(records)
    assert status == 200 and len(batch) == 100
    singles = []
    for record in records:
        status, single = service.predict(record)
        assert status == 200, single
        singles.append(single)
    assert batch == singles
    assert [a["trip_id"] for a in batch] == [r["trip_id"] for r in records]


def test_unknown_entities_are_answered_with_defaults_and_named(service, valid_trips):
    trip = {**_records(valid_trips.head(1))[0], "company": "No Such Cab Co", "pickup_community_area": None}
    status, answer = service.predict(trip)
    assert status == 200
    assert {"company_trips_1d", "company_fare_1d"} <= set(answer["features_defaulted"])
    assert answer["degraded"] is False and answer["fare"] >= 3.25


def readme_curl_requests() -> list[tuple[str, str]]:
    """(path, JSON body) of every `curl ... -X POST http://127.0.0.1:3000/<path> ... -d '<body>'`
    in README.md, the body exactly as printed (it may span lines)."""
    text = (REPO_ROOT / "README.md").read_text()
    found = re.findall(r"curl [^\n]*?-X POST http://127\.0\.0\.1:3000(/\S+)[^\n]*?-d '(.*?)'", text, flags=re.S)
    assert found, "README.md has no curl request example"
    return found


def test_every_request_example_in_the_readme_is_answered_as_documented(service):
    for path, body in readme_curl_requests():
        status, answer = _post(f"{service.url}{path}", None, raw=body.encode())
        assert status == 200, (path, body, answer)
        # README: -> {"fare": <dollars>, "model_version": "1", "features_defaulted": [...], "input_warnings": [], "degraded": false, "trip_id": null}
        assert set(answer) == {"fare", "model_version", "features_defaulted", "input_warnings", "degraded", "trip_id"}, answer
        assert answer["fare"] >= 3.25 and answer["degraded"] is False and answer["trip_id"] is None, answer
        assert answer["input_warnings"] == [], answer  # the example is a clean trip


def test_legacy_message_shape_is_mapped_onto_the_chicago_columns(service):
    legacy = {
        "trip_id": "trip_001",
        "pickup_datetime": "2024-01-01T10:00:00Z",
        "dropoff_datetime": "2024-01-01T10:30:00Z",
        "pickup_latitude": 41.88,
        "pickup_longitude": -87.63,
        "dropoff_latitude": 41.89,
        "dropoff_longitude": -87.62,
        "passenger_count": 2,
        "trip_distance": 3.5,
        "fare_amount": 12.50,
    }
    status, answer = service.predict(legacy)
    assert status == 200, answer
    chicago = {
        "trip_id": "trip_001",
        "trip_miles": 3.5,
        "trip_seconds": 1800,
        "trip_start_hour": 10,
        "trip_start_day": 2,
        "trip_start_month": 1,
        "pickup_latitude": 41.88,
        "pickup_longitude": -87.63,
        "dropoff_latitude": 41.89,
        "dropoff_longitude": -87.62,
    }
    assert service.predict(chicago) == (200, answer)


@pytest.mark.parametrize(
    "body, fields",
    [
        (
            {"trip": {"trip_miles": -1, "trip_seconds": 600, "trip_start_hour": 25, "trip_start_day": 3, "trip_start_month": 5}},
            ["trip_miles", "trip_start_hour"],
        ),
        ({"trip": {"trip_miles": "abc", "trip_seconds": 600, "trip_start_hour": 10, "trip_start_day": 3, "trip_start_month": 5}}, ["trip_miles"]),
        ({"trip": {"trip_miles": 2.0, "trip_start_hour": 10}}, ["trip_seconds", "trip_start_day", "trip_start_month"]),
        (
            {"trip": {"trip_miles": 2.0, "trip_seconds": 600, "trip_start_hour": 10, "trip_start_day": 9, "trip_start_month": 13}},
            ["trip_start_day", "trip_start_month"],
        ),
        ({"trip": "not an object"}, ["trip"]),
        ({}, ["trip"]),
    ],
)
def test_bad_trips_get_a_400_naming_each_bad_field(service, body, fields):
    status, error = _post(f"{service.url}/predict", body)
    assert status == 400, error
    text = json.dumps(error)
    for field in fields:
        assert field in text, (field, error)


def test_invalid_json_and_bad_batch_envelopes_are_4xx_not_500(service, valid_trips):
    status, error = _post(f"{service.url}/predict", None, raw=b'{"trip": {"trip_miles": ')
    assert status == 400 and "json" in json.dumps(error).lower()
    good = _records(valid_trips.head(3))
    assert service.predict_batch([]) == (200, [])
    status, error = service.predict_batch(good * 400)
    assert status == 400 and "1000" in json.dumps(error)
    for envelope in ({"trips": {"a": 1}}, {"trips": [good[0], 7]}, {"trip": good[0]}, [good[0]]):
        status, error = _post(f"{service.url}/predict_batch", envelope)
        assert status == 400, (envelope, error)
    # BentoML alone answered a multipart body without a boundary with a 500 (found by schemathesis)
    for content_type in ("multipart/form-data", "text/plain", "application/x-www-form-urlencoded"):
        status, error = _post(f"{service.url}/predict_batch", {"trips": good}, content_type=content_type)
        assert status == 415 and content_type in error["error"], (content_type, status, error)


def test_a_zero_second_trip_is_scored_with_a_warning_naming_trip_seconds(service):
    # 3.6% of real trips: the meter was not run properly, the fare is real.
    trip = {"trip_start_timestamp": 1420074000, "trip_miles": 2.1, "trip_seconds": 0, "pickup_community_area": 8, "payment_type": "Cash"}
    status, answer = service.predict(trip)
    assert status == 200, answer
    assert answer["fare"] >= schema.MIN_FARE
    assert "seconds_not_recorded" in [w["code"] for w in answer["input_warnings"]], answer
    assert all(set(w) == {"code", "fields", "reason"} and w["reason"] for w in answer["input_warnings"])
    assert next(w for w in answer["input_warnings"] if w["code"] == "seconds_not_recorded")["fields"] == ["trip_seconds"]


@pytest.mark.parametrize("miles, seconds", [(115.0, 1260), (178.7, 1570), (1710.0, 2100)])
def test_an_odometer_glitch_gets_a_plausible_fare_and_a_warning(service, miles, seconds):
    # 100+ miles in about 20 minutes (trips of the real data): the distance is not trusted.
    trip = {"trip_start_timestamp": 1420074000, "trip_miles": miles, "trip_seconds": seconds, "pickup_community_area": 8, "payment_type": "Cash"}
    status, answer = service.predict(trip)
    assert status == 200, answer
    assert "implausible_speed" in [w["code"] for w in answer["input_warnings"]], answer
    assert schema.MIN_FARE <= answer["fare"] < 80, answer


@pytest.mark.parametrize(
    "extreme",
    [
        {"trip_miles": 1e300, "trip_seconds": 600},  # beyond float32: +inf in the graph's inputs
        {"trip_miles": 1e300, "trip_seconds": 1e300},
        {"trip_miles": 2.0, "trip_seconds": 600, "pickup_latitude": -1e300, "pickup_longitude": 1e300, "pickup_community_area": -(2**31)},
    ],
)
def test_extreme_but_finite_numbers_are_scored_with_a_plausible_fare(service, extreme):
    status, answer = service.predict({"trip_start_timestamp": 1420074000, **extreme})
    assert status == 200, answer
    assert schema.MIN_FARE <= answer["fare"] <= schema.MAX_FARE and answer["input_warnings"], answer


def test_the_real_sample_s_dirty_trips_are_all_scored(service):
    trips = pd.read_csv(DATA_CSV)
    speed = trips.trip_miles * 3600 / trips.trip_seconds.where(trips.trip_seconds > 0)
    outside = ~trips.pickup_latitude.between(*schema.CHICAGO_LAT) & trips.pickup_latitude.notna()
    kinds = {
        "zero seconds": trips.trip_seconds == 0,
        "zero miles": trips.trip_miles == 0,
        "implausible speed": speed > schema.MAX_SPEED_MPH,
        "pickup outside Chicago": outside,
        "no company": trips.company.isna(),
        "no dropoff area": trips.dropoff_community_area.isna(),
    }
    # Up to 60 trips of each kind (all of the rarer ones); trip_seconds is required by the schema
    # (required_for_scoring), so the 6 trips without it are left out: they get error entries.
    picked = pd.concat([trips[mask & trips.trip_seconds.notna()].head(60) for mask in kinds.values()])
    dirty = picked[~picked.index.duplicated()]
    records = _records(dirty[REQUEST_COLUMNS])
    for start in range(0, len(records), 100):
        status, answers = service.predict_batch(records[start : start + 100])
        assert status == 200 and len(answers) == len(records[start : start + 100])
        refused = [a for a in answers if "fare" not in a]
        assert not refused, refused[:3]
        assert all(schema.MIN_FARE <= a["fare"] <= schema.MAX_FARE for a in answers), [a["fare"] for a in answers]
        for record, answer in zip(records[start : start + 100], answers, strict=True):
            codes = [w["code"] for w in answer["input_warnings"]]
            assert (record["trip_seconds"] == 0) == ("seconds_not_recorded" in codes), (record, answer)
            if record["trip_seconds"] > 0 and record["trip_miles"] * 3600 > 1.01 * schema.MAX_SPEED_MPH * record["trip_seconds"]:
                assert "implausible_speed" in codes, (record, answer)


def test_a_batch_with_uninterpretable_trips_answers_every_trip_in_order(service, valid_trips):
    records = [{**r, "trip_id": f"trip-{i}"} for i, r in enumerate(_records(valid_trips))]
    bad = {0: {"trip_miles": -1.0}, 37: {"trip_seconds": "ten minutes"}, 64: {"trip_start_hour": 24}, 99: {"trip_miles": None}}
    for i, change in bad.items():
        records[i] = {**records[i], **change}
    status, answers = service.predict_batch(records)
    assert status == 200 and len(answers) == 100
    assert [a["trip_id"] for a in answers] == [r["trip_id"] for r in records]
    errors = {i: a for i, a in enumerate(answers) if "errors" in a}
    assert sorted(errors) == sorted(bad)
    for i, change in bad.items():
        assert errors[i]["index"] == i and [e["field"] for e in errors[i]["errors"]] == list(change), errors[i]
        assert all(e["problem"] for e in errors[i]["errors"])
    assert all(a["fare"] >= schema.MIN_FARE for i, a in enumerate(answers) if i not in bad)


def test_a_body_over_the_size_limit_gets_a_413_with_a_json_reason(service, valid_trips):
    # 600 trips (under the count limit) padded with an ignored field past 1 MiB.
    trip = {**_records(valid_trips.head(1))[0], "note": "x" * 2000}
    body = json.dumps({"trips": [trip] * 600}).encode()
    assert len(body) > 1024 * 1024
    status, error = _post(f"{service.url}/predict_batch", None, raw=body)
    assert status == 413, error
    assert error == {
        "error": f"a body of {len(body)} bytes is over the limit of 1048576 bytes for /predict_batch: split the batch",
        "max_body_bytes": 1048576,
    }


def test_health_and_openapi(service):
    health = service.health()
    assert health["status"] == "ok" and health["online_store"]["ok"] and health["model"]["source"] == "registry"
    status, spec = _get(f"{service.url}/docs.json")
    assert status == 200 and {"/predict", "/predict_batch"} <= set(spec["paths"])


def test_redis_down_answers_degraded_and_recovers_by_itself(service, serving_env, valid_trips):
    env, port = serving_env
    trip = _records(valid_trips.tail(1))[0]
    status, before = service.predict(trip)
    assert status == 200 and not before["degraded"]
    _redis("stop", port)
    try:
        status, answer = service.predict(trip)
        assert status == 200 and answer["degraded"] is True
        assert sorted(answer["features_defaulted"]) == sorted(schema.STORE_FEATURES)
        health = service.health()
        assert health["status"] == "degraded" and not health["online_store"]["ok"]
        assert f"127.0.0.1:{port}" in health["online_store"]["address"] and health["online_store"]["error"]
    finally:
        _redis("start", port)
    proc = subprocess.run(["python", "-m", "chicago_taxi.features.store", "warm"], env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    deadline = time.time() + 20
    while True:
        status, after = service.predict(trip)
        if status == 200 and not after["degraded"]:
            break
        assert time.time() < deadline, f"still degraded 20 s after Redis came back: {after}"
        time.sleep(0.5)
    assert after == before


def test_new_champion_is_picked_up_without_restart(service, stack):
    client = mlflow_client(stack)
    current = client.get_model_version_by_alias(MODEL, "champion")
    # A new version of the same model: the alias moves, the poller (every 2 s here) loads it.
    # The source is the logged model (`models:/m-...`): a tracking server accepts it only with that model's id.
    logged_model = current.source.removeprefix("models:/")
    moved = client.create_model_version(MODEL, current.source, run_id=current.run_id, model_id=logged_model, description="test: champion reload")
    client.set_registered_model_alias(MODEL, "champion", moved.version)
    try:
        deadline = time.time() + 120
        while service.health()["model"]["version"] != str(moved.version):
            assert time.time() < deadline, f"service still on {service.health()['model']} 120 s after the alias moved"
            time.sleep(1)
        status, answer = service.predict({"trip_miles": 2.0, "trip_seconds": 600, "trip_start_hour": 10, "trip_start_day": 3, "trip_start_month": 5})
        assert status == 200 and answer["model_version"] == str(moved.version)
    finally:
        client.set_registered_model_alias(MODEL, "champion", current.version)
    # The admin endpoint applies a move at once, without waiting for the poller; with
    # TAXI_RELOAD_TOKEN set only a caller with that bearer token may.
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": RELOAD_TOKEN}):
        status, refused = _post(f"{service.url}/ops/reload", {}, headers=headers)
        assert status == 401 and "detail" in refused, (headers, status, refused)
    status, reloaded = _post(f"{service.url}/ops/reload", {}, headers={"Authorization": f"Bearer {RELOAD_TOKEN}"})
    assert status == 200 and reloaded["version"] == str(current.version) and reloaded["error"] is None


def test_property_based_requests_never_get_a_5xx(service):
    """schemathesis generates requests from the service's own OpenAPI spec (bounded run)."""
    proc = subprocess.run(
        [
            "schemathesis",
            "run",
            f"{service.url}/docs.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "60",
            "--phases",
            "examples,coverage,fuzzing",
            "--suppress-health-check",
            "all",
            "--request-timeout",
            "30",
            "--exclude-path-regex",
            "^/(metrics|ops/reload)",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


def test_every_scored_trip_is_published_to_the_prediction_log(service, valid_trips, kafka_broker):
    prefix = f"http{uuid.uuid4().hex[:6]}"
    start = end_offsets(kafka_broker, topics.PREDICTIONS)
    before = service.health()["prediction_log"]
    assert before["enabled"] and before["bootstrap"] == kafka_broker and before["topic"] == topics.PREDICTIONS
    trips = [{**r, "trip_id": f"{prefix}-{i}"} for i, r in enumerate(_records(valid_trips.head(3)))]
    status, single = service.predict(trips[0])
    assert status == 200 and "store_features" not in single and "shadow" not in single
    status, batch = service.predict_batch(trips[1:] + [{"trip_id": f"{prefix}-bad", "trip_miles": -1}])
    assert status == 200 and "errors" in batch[-1]
    answers = {a["trip_id"]: a for a in [single, *batch[:-1]]}
    deadline = time.time() + 60  # the publisher batches for 50 ms; the broker acknowledges shortly after
    while (log := service.health()["prediction_log"])["published"] - before["published"] < 3:
        assert time.time() < deadline and log["lost"] == before["lost"], log
        time.sleep(0.2)
    records = [r for r in read_since(kafka_broker, topics.PREDICTIONS, start) if str(r.get("trip_id")).startswith(prefix)]
    assert sorted(r["trip_id"] for r in records) == sorted(answers)  # the trip that could not be read is no prediction
    for record in records:
        answer = answers[record["trip_id"]]
        assert record["_key"] == record["trip_id"] and record["source"]["kind"] == "http"
        assert record["source"]["endpoint"] == ("/predict" if record["trip_id"] == f"{prefix}-0" else "/predict_batch")
        assert (record["fare"], record["model_version"], record["features_defaulted"]) == (
            answer["fare"],
            answer["model_version"],
            answer["features_defaulted"],
        )
        assert (record["model_name"], record["variant"], record["served"]) == (MODEL, "champion", True)
        assert record["inputs"] == {c: trips[int(record["trip_id"].rsplit("-", 1)[1])].get(c) for c in schema.MODEL_INPUT_COLUMNS}
        assert [f for f, v in record["store_features"].items() if v is None] == record["features_defaulted"]
        assert record["produced_at_ms"] <= record["scored_at_ms"] <= record["published_at_ms"]

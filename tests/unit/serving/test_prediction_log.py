"""The prediction log's records, built from a stand-in answer, and its publisher against an
address nothing listens on (127.0.0.1:1): publishing never blocks or raises, what the broker
never acknowledges is counted as lost, with the reason."""

from __future__ import annotations

import json
import logging
import time

import pytest

from chicago_taxi.core import schema
from chicago_taxi.serving import prediction_log
from chicago_taxi.serving.prediction_log import CLOSED_REASON, PredictionLogPublisher, prediction_records
from fixtures.trips import VALID_MESSAGE

NOWHERE = "127.0.0.1:1"  # nothing listens on port 1
WARNING = {"code": "seconds_not_recorded", "fields": ["trip_seconds"], "reason": "0 or missing"}


def answer(**fields) -> dict:
    """An answer as FareService.predict gives it, with A/B in shadow mode."""
    used = dict.fromkeys(schema.STORE_FEATURES)
    used["company_trips_1d"] = 12
    return {
        "fare": 9.5,
        "model_name": "chicago_taxi_fare",
        "model_version": "3",
        "variant": "champion",
        "features_defaulted": [f for f in schema.STORE_FEATURES if f != "company_trips_1d"],
        "input_warnings": [WARNING],
        "degraded": False,
        "store_features": used,
        "trip_id": "trip-00042",
        "shadow": [{"fare": 10.25, "model_name": "chicago_taxi_fare", "model_version": "4", "variant": "shadow"}],
        **fields,
    }


def records_of(**fields) -> list[dict]:
    trip = {**VALID_MESSAGE, "trip_miles": float("nan")}  # a NaN must not reach the JSON
    source = {"kind": "stream", "topic": "taxi-raw-data", "partition": 1, "offset": 42, "group": "taxi-scoring"}
    return prediction_records(trip, answer(**fields), source=source, scored_ms=1_700_000_000_500, produced_ms=1_700_000_000_000)


def test_a_trip_gives_its_served_record_then_one_per_shadow_prediction():
    served, shadow = records_of()
    assert (served["variant"], served["served"], served["fare"], served["model_version"]) == ("champion", True, 9.5, "3")
    assert (shadow["variant"], shadow["served"], shadow["fare"], shadow["model_version"]) == ("shadow", False, 10.25, "4")
    # Both describe the same trip, seen the same way.
    same = ("trip_id", "inputs", "store_features", "features_defaulted", "input_warnings", "degraded", "source", "scored_at_ms")
    assert all(served[key] == shadow[key] for key in same)
    assert [len(records_of(shadow=[])), len(records_of(shadow=[], variant="challenger"))] == [1, 1]


def test_a_record_holds_the_schema_monitoring_reads():
    served = records_of()[0]
    assert set(served) == {
        "trip_id",
        "fare",
        "model_name",
        "model_version",
        "variant",
        "served",
        "features_defaulted",
        "degraded",
        "input_warnings",
        "inputs",
        "store_features",
        "trip_start_timestamp",
        "source",
        "produced_at_ms",
        "produced_at",
        "scored_at_ms",
        "scored_at",
        "published_at_ms",
    }
    assert list(served["inputs"]) == list(schema.MODEL_INPUT_COLUMNS) and list(served["store_features"]) == list(schema.STORE_FEATURES)
    assert served["inputs"]["company"] == VALID_MESSAGE["company"] and served["inputs"]["trip_miles"] is None  # NaN -> null
    assert "fare" not in served["inputs"] and "tips" not in served["inputs"]  # the label never travels as an input
    assert served["store_features"]["company_trips_1d"] == 12 and served["store_features"]["company_fare_1d"] is None
    assert served["input_warnings"] == [WARNING] and served["trip_start_timestamp"] == VALID_MESSAGE["trip_start_timestamp"]
    assert served["scored_at_ms"] - served["produced_at_ms"] == 500 and served["scored_at"] == "2023-11-14T22:13:20.500Z"
    assert served["published_at_ms"] >= served["scored_at_ms"]
    json.loads(json.dumps(served, allow_nan=False))


def test_an_http_record_has_no_produce_time_unless_given():
    trip = {"trip_id": None, "trip_miles": 2.0, "trip_seconds": 600}
    (record,) = prediction_records(trip, answer(shadow=[], trip_id=None), source={"kind": "http", "endpoint": "/predict"}, scored_ms=5)
    assert record["source"] == {"kind": "http", "endpoint": "/predict"}
    assert (record["trip_id"], record["produced_at_ms"], record["produced_at"]) == (None, None, None)


def wait_for(condition, what: str, seconds: float = 60.0) -> None:
    """Poll until `condition()` holds; the deadline only bounds a broken run, it is not asserted on."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


def test_a_broker_that_never_answers_costs_records_counted_as_lost_never_a_wait():
    publisher = PredictionLogPublisher(NOWHERE, enabled=True, message_timeout_ms=300)
    try:
        records = records_of() * 3
        assert publisher.publish(records) == 6  # queued locally, returned at once
        assert publisher.stats()["enabled"] and publisher.stats()["lost"] + publisher.stats()["pending"] == 6
        wait_for(lambda: publisher.stats()["lost"] == 6, "the 6 records to time out")
        stats = publisher.stats()
        assert (stats["published"], stats["pending"], stats["bootstrap"], stats["topic"]) == (0, 0, NOWHERE, "taxi-predictions")
        assert stats["last_error"] and stats["last_error_at"]
    finally:
        publisher.close(timeout=1)


def test_a_full_local_queue_drops_records_counts_them_and_warns_once(caplog):
    publisher = PredictionLogPublisher(NOWHERE, enabled=True, queue_max_messages=2)
    try:
        with caplog.at_level(logging.WARNING, logger=prediction_log.__name__):
            assert publisher.publish(records_of() * 3) == 2  # 6 records, room for 2
            assert publisher.publish(records_of()) == 0
        stats = publisher.stats()
        assert stats["lost"] == 6 and stats["pending"] == 2
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "lost so far" in r.getMessage()]
        assert len(warnings) == 1, warnings
        assert "for monitoring" in warnings[0] and "Answers are not affected" in warnings[0] and "local queue full" in warnings[0]
    finally:
        publisher.close(timeout=0)


def test_closing_counts_what_is_still_queued_as_lost():
    publisher = PredictionLogPublisher(NOWHERE, enabled=True)
    assert publisher.publish(records_of()) == 2
    stats = publisher.close(timeout=0.2)
    assert (stats["lost"], stats["pending"], stats["published"]) == (2, 0, 0)
    assert publisher.publish(records_of()) == 0  # after close: counted, not sent
    assert (publisher.stats()["lost"], publisher.stats()["last_error"]) == (4, CLOSED_REASON)


@pytest.mark.parametrize("value", ["0", "off", "false"])
def test_the_environment_turns_the_log_off(monkeypatch, value):
    monkeypatch.setenv(prediction_log.ENABLED_ENV, value)
    publisher = PredictionLogPublisher(NOWHERE)
    assert publisher.publish(records_of()) == 0
    assert publisher.stats() == {
        "enabled": False,
        "topic": "taxi-predictions",
        "bootstrap": NOWHERE,
        "published": 0,
        "lost": 0,
        "pending": 0,
        "last_error": None,
        "last_error_at": None,
    }
    publisher.close()

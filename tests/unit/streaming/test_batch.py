"""The micro-batch's service-free parts: the quality stage on parsed trips, de-duplication inside a
batch, the result's JSON, and a down broker (a closed loopback port) failing fast. The batch
against the real broker, Redis and the champion is tests/integration/streaming/test_batch.py."""

from __future__ import annotations

import json
import time

import pytest

from chicago_taxi.core import config as core_config
from chicago_taxi.core.config import load_settings
from chicago_taxi.ingest import topics
from chicago_taxi.ingest.messages import parse_trip
from chicago_taxi.quality import rows
from chicago_taxi.streaming import batch, kafka_io
from fixtures.env import free_port
from fixtures.trips import VALID_MESSAGE

LEGACY = {
    "trip_id": "legacy-1",
    "pickup_datetime": "2016-06-01T10:00:00",
    "dropoff_datetime": "2016-06-01T10:20:00",
    "pickup_latitude": 41.88,
    "pickup_longitude": -87.63,
    "dropoff_latitude": 41.89,
    "dropoff_longitude": -87.62,
    "passenger_count": 2,
    "trip_distance": 3.5,
    "fare_amount": 12.5,
}


def _record(offset: int) -> kafka_io.Record:
    return kafka_io.Record(partition=0, offset=offset, key=None, value=b"{}", timestamp_ms=None)


def _full_trip(trip_id: str) -> dict:
    return {**VALID_MESSAGE, "trip_id": trip_id}


def test_streaming_expectations_reject_impossible_speed_but_accept_legacy_trips():
    settings = load_settings()
    streaming_exps = rows.quarantine_expectations(settings.expectations_dir)
    types = {(e["type"], e["kwargs"]["column"]) for e in streaming_exps}
    assert ("expect_column_values_to_not_be_null", "payment_type") not in types  # legacy trips have none
    assert ("expect_column_values_to_not_be_null", "fare") not in types  # an upfront request has no fare
    assert ("expect_column_values_to_be_between", "implied_speed_mph") in types
    good = parse_trip(json.dumps({**_full_trip("ok"), "trip_miles": 3.0, "trip_seconds": 900}))
    fast = parse_trip(json.dumps({**_full_trip("fast"), "trip_miles": 50.0, "trip_seconds": 600}))  # 300 mph
    legacy = parse_trip(json.dumps(LEGACY))
    no_fare = parse_trip(json.dumps({**_full_trip("nofare"), "fare": None}))
    valid = [(t, _record(i)) for i, t in enumerate([good, fast, legacy, no_fare])]
    for use_gx in (True, False):
        kept, rejected, name = batch._quality(valid, settings, core_config.StreamConfig(use_gx=use_gx))
        assert name == ("great_expectations" if use_gx else "pandas")
        assert [t["trip_id"] for t, _ in kept] == ["ok", "legacy-1", "nofare"]
        ((record, error),) = rejected
        assert record.offset == 1 and error.trip_id == "fast"
        assert error.reason.startswith(batch.QUALITY_REASON) and "implied_speed_mph" in error.reason
        assert error.errors == [{"field": "implied_speed_mph", "problem": "failed expect_column_values_to_be_between(implied_speed_mph) [0.0, 80.0]"}]


def test_a_trip_id_twice_in_one_batch_is_scored_once_with_the_later_message():
    pairs = [({"trip_id": "a", "v": 1}, _record(0)), ({"trip_id": "b"}, _record(1)), ({"trip_id": "a", "v": 2}, _record(2))]
    kept, duplicates = batch._dedup(pairs)
    assert duplicates == 1 and [(t["trip_id"], r.offset) for t, r in kept] == [("b", 1), ("a", 2)]


def test_batch_result_is_json_ready():
    result = batch.BatchResult(group="g", bootstrap="127.0.0.1:1", consumed=3, offsets={0: {"first": 1, "last": 3, "committed": 4}})
    data = json.loads(json.dumps(result.as_dict()))
    assert data["offsets"] == {"0": {"first": 1, "last": 3, "committed": 4}}
    assert set(batch.STAGES) <= set(data["seconds"])
    assert "consumed 3" in result.summary()


def test_broker_down_fails_fast_naming_the_address(monkeypatch):
    monkeypatch.setenv("TAXI_STREAM_KAFKA_TIMEOUT", "1")
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(topics.BrokerUnavailable, match=address):
        batch.process_pending(bootstrap=address, scorer=lambda trips: pytest.fail("nothing may be scored"))
    assert time.monotonic() - started < 10
    with pytest.raises(topics.BrokerUnavailable, match=address):
        kafka_io.pending_messages(bootstrap=address, timeout=1)


def test_a_message_the_parser_fails_on_is_dead_lettered_not_raised(monkeypatch):
    # The parser's own contract is InvalidMessage (tests/unit/ingest/test_messages.py); should a
    # bug break it, the one message is dead-lettered with the error and the batch goes on.
    def parse(raw):
        if raw == b"poison":
            raise RecursionError("maximum recursion depth exceeded")
        return {"trip_id": raw.decode()}

    monkeypatch.setattr(batch, "parse_trip", parse)
    records = [kafka_io.Record(0, offset, None, value, None) for offset, value in enumerate([b"a", b"poison", b"b"])]
    valid, rejected = batch._parse(records)
    assert [trip["trip_id"] for trip, _ in valid] == ["a", "b"]
    ((record, error),) = rejected
    assert record.offset == 1 and error.reason == batch.PARSER_FAILURE and "RecursionError" in error.errors[0]["problem"]

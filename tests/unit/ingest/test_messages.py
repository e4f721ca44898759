"""Trip message parsing: the Chicago shape, the legacy shape, and every way a message is rejected."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chicago_taxi.core import schema
from chicago_taxi.ingest.messages import InvalidMessage, chicago_weekday, dead_letter_record, from_legacy, parse_trip, trip_fingerprint
from fixtures.trips import VALID_MESSAGE as GOOD

# The legacy example of SPEC "Kafka topics and the trip message", verbatim.
LEGACY_EXAMPLE = (
    '{"trip_id": "trip_001", "pickup_datetime": "2024-01-01T10:00:00Z", "dropoff_datetime": '
    '"2024-01-01T10:30:00Z", "pickup_latitude": 41.88, "pickup_longitude": -87.63, '
    '"dropoff_latitude": 41.89, "dropoff_longitude": -87.62, "passenger_count": 2, '
    '"trip_distance": 3.5, "fare_amount": 12.50}'
)


def rejected(raw) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as info:
        parse_trip(raw)
    return info.value


def fields(exc: InvalidMessage) -> list[str]:
    return [e["field"] for e in exc.errors]


def test_good_chicago_message_parses_to_every_schema_column():
    trip = parse_trip(json.dumps(GOOD).encode())
    assert list(trip) == ["trip_id", *schema.RAW_COLUMN_NAMES]
    assert trip == {**GOOD, "trip_seconds": 540.0}
    assert isinstance(trip["trip_seconds"], float) and isinstance(trip["pickup_community_area"], int)


def test_optional_columns_may_be_absent_and_come_back_as_none():
    # Scoring: the label and the optional inputs are unknown; only the required ones are sent.
    minimal = {
        k: GOOD[k] for k in ("trip_id", "trip_miles", "trip_seconds", "trip_start_hour", "trip_start_day", "trip_start_month", "trip_start_timestamp")
    }
    trip = parse_trip(json.dumps(minimal))
    assert trip["fare"] is None and trip["company"] is None and trip["pickup_community_area"] is None
    assert trip["trip_miles"] == 1.9


def test_integral_floats_are_accepted_for_int_columns():
    # pandas writes an int column with nulls as floats (8.0): still the community area 8.
    trip = parse_trip(json.dumps({**GOOD, "pickup_community_area": 8.0}))
    assert trip["pickup_community_area"] == 8 and isinstance(trip["pickup_community_area"], int)


def test_legacy_example_from_the_spec_maps_exactly():
    trip = parse_trip(LEGACY_EXAMPLE)
    assert trip == {
        "trip_id": "trip_001",
        "pickup_community_area": None,
        "fare": 12.5,
        "trip_start_month": 1,
        "trip_start_hour": 10,
        "trip_start_day": 2,  # 2024-01-01 is a Monday; 1 = Sunday
        "trip_start_timestamp": 1704103200,  # 2024-01-01 10:00 wall clock, read as UTC
        "pickup_latitude": 41.88,
        "pickup_longitude": -87.63,
        "dropoff_latitude": 41.89,
        "dropoff_longitude": -87.62,
        "trip_miles": 3.5,
        "pickup_census_tract": None,
        "dropoff_census_tract": None,
        "payment_type": None,
        "company": None,
        "trip_seconds": 1800.0,
        "dropoff_community_area": None,
        "tips": None,
        "passenger_count": 2,
    }


def test_legacy_wall_clock_is_kept_whatever_the_offset():
    # Chicago stores local wall-clock time read as UTC: an offset does not shift the hour.
    legacy = json.loads(LEGACY_EXAMPLE)
    with_offset = {**legacy, "pickup_datetime": "2024-01-01T10:00:00-06:00", "dropoff_datetime": "2024-01-01T10:30:00-06:00"}
    naive = {**legacy, "pickup_datetime": "2024-01-01T10:00:00", "dropoff_datetime": "2024-01-01T10:30:00"}
    expected = parse_trip(LEGACY_EXAMPLE)
    assert from_legacy(with_offset)["trip_start_timestamp"] == expected["trip_start_timestamp"]
    assert parse_trip(json.dumps(naive)) == expected


def test_chicago_weekday_matches_the_vendored_data(trips):
    sample = trips.sample(500, random_state=0)
    for ts, day in zip(sample["trip_start_timestamp"], sample["trip_start_day"]):
        assert chicago_weekday(datetime.fromtimestamp(ts, UTC)) == day


def test_legacy_dropoff_before_pickup_is_rejected_naming_dropoff():
    legacy = {**json.loads(LEGACY_EXAMPLE), "dropoff_datetime": "2024-01-01T09:59:00Z"}
    exc = rejected(json.dumps(legacy))
    assert fields(exc) == ["dropoff_datetime"]
    assert "not after pickup_datetime" in exc.errors[0]["problem"]
    with pytest.raises(InvalidMessage):
        from_legacy(legacy)


def test_legacy_errors_name_the_legacy_fields():
    legacy = {**json.loads(LEGACY_EXAMPLE), "trip_distance": -2, "fare_amount": "12", "pickup_datetime": "yesterday"}
    exc = rejected(json.dumps(legacy))
    assert sorted(fields(exc)) == ["fare_amount", "pickup_datetime", "trip_distance"]


def test_not_json_is_rejected():
    exc = rejected(b"{trip_id: 1, this is not JSON")
    assert exc.reason == "not JSON"


def test_nan_is_not_json():
    exc = rejected('{"trip_id": "t", "trip_miles": NaN}')
    assert exc.reason == "not JSON"


def test_non_utf8_bytes_are_rejected():
    assert rejected(b"\xff\xfe\x00").reason == "not JSON"


def test_json_array_is_rejected():
    exc = rejected(json.dumps([GOOD]))
    assert exc.reason == "not a JSON object"
    assert "list" in exc.errors[0]["problem"]


def test_missing_trip_id_is_rejected():
    exc = rejected(json.dumps({k: v for k, v in GOOD.items() if k != "trip_id"}))
    assert fields(exc) == ["trip_id"] and exc.errors[0]["problem"] == "missing"
    assert exc.trip_id is None


@pytest.mark.parametrize("bad_id", ["", "   ", 42, None])
def test_trip_id_must_be_a_non_empty_string(bad_id):
    assert fields(rejected(json.dumps({**GOOD, "trip_id": bad_id}))) == ["trip_id"]


def test_missing_required_fields_are_each_named():
    message = {k: v for k, v in GOOD.items() if k not in ("trip_miles", "trip_seconds")}
    message["trip_start_hour"] = None
    exc = rejected(json.dumps(message))
    assert {e["field"]: e["problem"] for e in exc.errors} == {"trip_start_hour": "null", "trip_miles": "missing", "trip_seconds": "missing"}
    assert exc.trip_id == "trip-00042"


def test_wrong_type_is_rejected_with_the_value():
    exc = rejected(json.dumps({**GOOD, "trip_miles": "abc"}))
    assert exc.errors == [{"field": "trip_miles", "problem": "expected a number, got 'abc'"}]


def test_booleans_are_not_numbers():
    assert fields(rejected(json.dumps({**GOOD, "trip_miles": True}))) == ["trip_miles"]


def test_negative_miles_are_out_of_range():
    exc = rejected(json.dumps({**GOOD, "trip_miles": -1.5}))
    assert fields(exc) == ["trip_miles"]
    assert "-1.5 is below the minimum" in exc.errors[0]["problem"]


def test_hour_25_is_out_of_range():
    exc = rejected(json.dumps({**GOOD, "trip_start_hour": 25}))
    assert fields(exc) == ["trip_start_hour"] and "above the maximum" in exc.errors[0]["problem"]


def test_fare_is_optional_and_kept_as_sent_when_outside_its_range():
    # Scoring never reads the label; the stream's statistics skip an unusable fare (stream_log.stats_rows).
    assert parse_trip(json.dumps({**GOOD, "fare": None}))["fare"] is None
    assert parse_trip(json.dumps({**GOOD, "fare": 0.0}))["fare"] == 0.0
    assert parse_trip(json.dumps({**GOOD, "fare": 9000}))["fare"] == 9000.0
    assert fields(rejected(json.dumps({**GOOD, "fare": "12"}))) == ["fare"]


@pytest.mark.parametrize(
    "dirt",
    [
        {"payment_type": "Bitcoin"},
        {"pickup_latitude": 12.0, "dropoff_longitude": -120.0},
        {"pickup_community_area": 99, "dropoff_community_area": 0},
        {"tips": 900.0},
        {"trip_seconds": 0, "trip_miles": 0},
        {"trip_seconds": 1260, "trip_miles": 115.0},  # an odometer glitch: 328 mph
    ],
)
def test_dirty_model_inputs_are_kept_for_the_transform_graph_to_repair(dirt):
    # Real trips carry these; the graph repairs them (schema.REPAIRS), so the trip is scored.
    trip = parse_trip(json.dumps({**GOOD, **dirt}))
    assert {k: trip[k] for k in dirt} == dirt


def test_unusable_values_are_still_rejected():
    assert fields(rejected(json.dumps({**GOOD, "trip_seconds": -5}))) == ["trip_seconds"]
    assert fields(rejected(json.dumps({**GOOD, "trip_start_month": 13}))) == ["trip_start_month"]
    assert fields(rejected(json.dumps({**GOOD, "payment_type": 7}))) == ["payment_type"]


def test_numbers_must_fit_the_pipelines_types():
    assert "64-bit integer" in rejected(json.dumps({**GOOD, "pickup_community_area": 2**70})).errors[0]["problem"]
    assert "32-bit floats" in rejected(json.dumps({**GOOD, "trip_miles": 1e300})).errors[0]["problem"]


def test_every_error_is_listed_together():
    message = {**GOOD, "trip_miles": "abc", "trip_start_hour": 25, "trip_start_month": 0}
    del message["trip_seconds"]
    exc = rejected(json.dumps(message))
    assert sorted(fields(exc)) == ["trip_miles", "trip_seconds", "trip_start_hour", "trip_start_month"]
    assert exc.reason == "invalid fields: trip_start_month, trip_start_hour, trip_miles, trip_seconds"
    for field in fields(exc):
        assert field in str(exc)


def test_a_trips_fingerprint_is_its_content_whatever_the_key_order():
    trip = parse_trip(json.dumps(GOOD))
    same = parse_trip(json.dumps(dict(reversed(list(GOOD.items())))))
    assert trip_fingerprint(trip) == trip_fingerprint(same) and len(trip_fingerprint(trip)) == 64
    assert trip_fingerprint(parse_trip(json.dumps({**GOOD, "trip_seconds": 540.0}))) == trip_fingerprint(trip)  # 540 and 540.0 parse alike
    for change in ({"fare": 9.5}, {"company": "Other Cab"}, {"trip_id": "trip-00043"}, {"pickup_community_area": None}):
        assert trip_fingerprint(parse_trip(json.dumps({**GOOD, **change}))) != trip_fingerprint(trip), change


def test_dead_letter_record_keeps_the_payload_and_its_source():
    exc = rejected(json.dumps({**GOOD, "trip_miles": -1}))
    at = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    record = dead_letter_record(
        json.dumps({**GOOD, "trip_miles": -1}).encode(), exc.reason, exc.errors, "taxi-raw-data", 2, 17, trip_id=exc.trip_id, failed_at=at
    )
    assert json.loads(json.dumps(record)) == record
    assert record["source"] == {"topic": "taxi-raw-data", "partition": 2, "offset": 17}
    assert record["reason"] == "invalid field: trip_miles" and record["errors"] == exc.errors
    assert json.loads(record["payload"])["trip_miles"] == -1 and record["payload_encoding"] == "utf-8"
    assert record["failed_at"] == "2026-11-28T12:00:00.000Z" and record["trip_id"] == "trip-00042"


def test_dead_letter_record_base64_encodes_binary_payloads():
    record = dead_letter_record(b"\xff\x00binary", "not JSON", [], "taxi-raw-data", 0, 1)
    assert record["payload_encoding"] == "base64"
    assert base64.b64decode(record["payload"]) == b"\xff\x00binary"
    json.dumps(record)


def test_legacy_passenger_count_must_be_a_non_negative_integer():
    legacy = json.loads(LEGACY_EXAMPLE)
    assert fields(rejected(json.dumps({**legacy, "passenger_count": -1}))) == ["passenger_count"]
    assert fields(rejected(json.dumps({**legacy, "passenger_count": "two"}))) == ["passenger_count"]
    assert parse_trip(json.dumps({**legacy, "passenger_count": None}))["passenger_count"] is None


# ---------------------------------------------------------------- hostile input (whatever the bytes)
def _parses_or_is_refused(raw) -> dict | None:
    """The parser's contract: a trip, or its own InvalidMessage; any other exception fails the test."""
    try:
        trip = parse_trip(raw)
    except InvalidMessage as exc:
        assert exc.reason and all(e["field"] and e["problem"] for e in exc.errors), exc
        assert exc.trip_id is None or exc.trip_id.encode("utf-8")
        return None
    assert trip["trip_id"].encode("utf-8") and len(trip["trip_id"]) <= 200
    for value in trip.values():
        if isinstance(value, str):
            value.encode("utf-8")  # every string can become a Kafka or Redis key
    return trip


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_give_a_trip_or_an_invalid_message(raw):
    _parses_or_is_refused(raw)


_FIELDS = ["trip_id", *schema.RAW_COLUMN_NAMES, "pickup_datetime", "dropoff_datetime", "trip_distance", "fare_amount", "passenger_count"]
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats()
    | st.text(st.characters(exclude_categories=()), max_size=50),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=5,
)


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.sampled_from(_FIELDS), _VALUES, max_size=len(_FIELDS)))
def test_any_json_object_of_trip_fields_gives_a_trip_or_an_invalid_message(message):
    _parses_or_is_refused(json.dumps(message))  # ensure_ascii: lone surrogates travel as \ud800 escapes


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda m: m | {"trip_miles": 10**400}, "trip_miles"),  # 401 digits: no float holds it (OverflowError)
        (lambda m: m | {"trip_id": "\ud800abc"}, "trip_id"),  # a lone surrogate cannot become a Kafka key
        (lambda m: m | {"trip_id": "x" * 201}, "trip_id"),
        (lambda m: m | {"company": "\udfff"}, "company"),
        (lambda m: m | {"company": "C" * 5000}, "company"),
    ],
)
def test_hostile_values_are_refused_naming_the_field(mutate, field):
    with pytest.raises(InvalidMessage) as caught:
        parse_trip(json.dumps(mutate(dict(GOOD))))
    assert [e["field"] for e in caught.value.errors] == [field]
    assert len(str(caught.value)) < 1000  # a refused value is quoted, not copied whole


def test_json_too_large_or_too_deep_is_not_json():
    for raw in ('{"trip_miles": ' + "9" * 5000 + "}", "[" * 100_000 + "]" * 100_000):
        with pytest.raises(InvalidMessage) as caught:
            parse_trip(raw)
        assert caught.value.reason == "not JSON" and len(str(caught.value)) < 1000


def test_a_dead_letter_is_bounded_whatever_the_message():
    huge = json.dumps({"trip_id": "t", "company": "é" * 2_000_000}).encode()  # 4 MB: past Kafka's 1 MB limit
    record = dead_letter_record(huge, "x" * 10_000, [{"field": "company", "problem": "p" * 10_000}] * 500, "taxi-raw-data", 2, 7, trip_id="t")
    assert len(json.dumps(record)) < 200_000
    assert record["payload_truncated"] and record["payload_bytes"] == len(huge) and record["payload_encoding"] == "utf-8"
    assert record["payload_sha256"] == hashlib.sha256(huge).hexdigest()
    assert huge.decode().startswith(record["payload"]) and len(record["errors"]) == 50
    small = dead_letter_record(b"\xff\x00binary", "not JSON", [], "taxi-raw-data", 0, 1)
    assert not small["payload_truncated"] and small["payload_bytes"] == 8

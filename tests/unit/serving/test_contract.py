"""The service's request model: every interpretable trip is accepted (real dirt included), only
what cannot be interpreted is refused, naming the field; the calendar fields follow the timestamp."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chicago_taxi.core import schema
from chicago_taxi.ingest.messages import MAX_STRING_LENGTH, calendar_fields
from chicago_taxi.model.transform import raw_frame_to_features
from chicago_taxi.serving.contract import MAX_TIMESTAMP, TripRequest, check_trip
from fixtures.trips import VALID_MESSAGE

# 2015-01-01 01:00 Chicago wall-clock time (a Thursday: weekday 5 with 1 = Sunday).
STAMP = 1420074000
TRIP = {"trip_miles": 2.1, "trip_seconds": 540, "pickup_community_area": 8, "company": "Taxi Affiliation Services", "payment_type": "Cash"}


def refused_fields(trip: dict) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        TripRequest.model_validate(trip)
    return [".".join(map(str, e["loc"])) for e in caught.value.errors()]


def test_the_calendar_fields_are_derived_from_the_timestamp_when_absent():
    trip = TripRequest(**TRIP, trip_start_timestamp=STAMP)
    assert (trip.trip_start_hour, trip.trip_start_day, trip.trip_start_month) == (1, 5, 1)
    assert calendar_fields(datetime.fromtimestamp(STAMP, UTC)) == {"trip_start_hour": 1, "trip_start_day": 5, "trip_start_month": 1}
    # An integral float is the same timestamp (pandas writes integer columns with nulls as floats).
    assert TripRequest(**TRIP, trip_start_timestamp=float(STAMP)).trip_start_hour == 1


def test_calendar_fields_sent_with_the_timestamp_must_agree_with_it():
    assert TripRequest(**TRIP, trip_start_timestamp=STAMP, trip_start_hour=1).trip_start_hour == 1
    with pytest.raises(ValidationError, match=r"trip_start_hour=13 \(the timestamp says 1\)") as caught:
        TripRequest(**TRIP, trip_start_timestamp=STAMP, trip_start_hour=13)
    assert [e["loc"] for e in caught.value.errors()] == [("trip_start_hour",)]


def test_without_a_timestamp_the_calendar_fields_stay_required():
    assert set(refused_fields(TRIP)) == {"trip_start_hour", "trip_start_day", "trip_start_month"}
    assert TripRequest(**TRIP, trip_start_hour=1, trip_start_day=5, trip_start_month=1).trip_start_timestamp is None


def test_a_timestamp_outside_the_interpretable_range_is_refused_naming_it():
    calendar = {"trip_start_hour": 1, "trip_start_day": 1, "trip_start_month": 1}
    assert refused_fields({**TRIP, **calendar, "trip_start_timestamp": 12}) == ["trip_start_timestamp"]
    # Epoch milliseconds by mistake: far past 2100.
    assert refused_fields({**TRIP, **calendar, "trip_start_timestamp": STAMP * 1000}) == ["trip_start_timestamp"]
    assert TripRequest(**TRIP, trip_start_timestamp=MAX_TIMESTAMP).trip_start_month == 1


@pytest.mark.parametrize(
    "dirt",
    [
        {"trip_seconds": 0},  # 3.6% of real trips: the meter was not run properly, the fare is real
        {"trip_miles": 0},
        {"trip_miles": 0, "trip_seconds": 0},
        {"trip_miles": 115.0, "trip_seconds": 1260},  # an odometer glitch: 115 miles in 21 minutes
        {"trip_miles": 1e300, "trip_seconds": 1e300},
        {"pickup_latitude": 0.0, "pickup_longitude": 0.0},  # a GPS fault
        {"dropoff_latitude": -91.5, "dropoff_longitude": 200.0},
        {"pickup_community_area": 0, "dropoff_community_area": 78},
        {"pickup_community_area": -1},
        {"payment_type": "Bitcoin"},
        {"payment_type": ""},
        {"company": None},
        {"company": "Ünïcode Cab ☂"},
        {"trip_id": "x" * 200},
    ],
)
def test_values_that_occur_in_real_data_are_accepted(dirt):
    trip = TripRequest.model_validate({**TRIP, "trip_start_timestamp": STAMP, **dirt})
    assert {k: getattr(trip, k) for k in dirt} == dirt


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"trip_miles": -0.1}, "trip_miles"),
        ({"trip_seconds": -1}, "trip_seconds"),
        ({"trip_miles": float("nan")}, "trip_miles"),
        ({"trip_seconds": float("inf")}, "trip_seconds"),
        ({"pickup_latitude": float("-inf")}, "pickup_latitude"),
        ({"trip_miles": 10**400}, "trip_miles"),  # no float holds it
        ({"pickup_community_area": 2**63}, "pickup_community_area"),  # no area id, and no int64 either
        ({"trip_miles": "2.1"}, "trip_miles"),  # a string is the wrong type, not coerced
        ({"trip_seconds": True}, "trip_seconds"),
        ({"pickup_community_area": 8.5}, "pickup_community_area"),
        ({"pickup_community_area": "8"}, "pickup_community_area"),
        ({"company": 42}, "company"),
        ({"company": "C" * (MAX_STRING_LENGTH + 1)}, "company"),
        ({"payment_type": "\ud800"}, "payment_type"),  # a lone surrogate is no text
        ({"trip_id": "x" * 201}, "trip_id"),
        ({"trip_id": 7}, "trip_id"),
        ({"trip_start_hour": 24}, "trip_start_hour"),
        ({"trip_start_day": 0}, "trip_start_day"),
        ({"trip_start_month": 13}, "trip_start_month"),
    ],
)
def test_what_cannot_be_interpreted_is_refused_naming_the_field(bad, field):
    calendar = {"trip_start_hour": 1, "trip_start_day": 5, "trip_start_month": 1}
    assert refused_fields({**TRIP, **calendar, **bad}) == [field]


def test_required_fields_are_required():
    calendar = {"trip_start_hour": 1, "trip_start_day": 5, "trip_start_month": 1}
    assert refused_fields({**calendar, "trip_miles": 1.0}) == ["trip_seconds"]
    assert refused_fields({**calendar, "trip_seconds": 60, "trip_miles": None}) == ["trip_miles"]


def test_the_legacy_shape_is_mapped_and_its_errors_name_the_legacy_fields():
    legacy = {"pickup_datetime": "2015-01-01T01:00:00Z", "dropoff_datetime": "2015-01-01T01:09:00Z", "trip_distance": 2.1}
    trip = TripRequest.model_validate(legacy)
    assert (trip.trip_start_timestamp, trip.trip_seconds, trip.trip_miles, trip.trip_start_hour) == (STAMP, 540.0, 2.1, 1)
    with pytest.raises(ValidationError, match="dropoff_datetime: .* is not after pickup_datetime"):
        TripRequest.model_validate({**legacy, "dropoff_datetime": "2015-01-01T00:00:00Z"})


def test_a_batch_item_gives_the_trip_or_an_error_entry_with_its_index_and_id():
    trip, error = check_trip(0, {**TRIP, "trip_start_timestamp": STAMP, "trip_id": "a"})
    assert error is None and trip["trip_id"] == "a" and trip["trip_start_hour"] == 1
    trip, error = check_trip(7, {**TRIP, "trip_start_timestamp": STAMP, "trip_id": "b", "trip_miles": -1, "trip_start_hour": 3})
    assert trip is None
    assert error["index"] == 7 and error["trip_id"] == "b"
    assert [e["field"] for e in error["errors"]] == ["trip_miles", "trip_start_hour"]
    assert "greater than or equal to 0" in error["errors"][0]["problem"]
    assert "the timestamp says 1" in error["errors"][1]["problem"]
    # An id that could not be echoed safely is left out of the entry.
    assert check_trip(1, {"trip_id": "\ud800"})[1]["trip_id"] is None
    assert check_trip(2, {"trip_id": "x" * 201})[1]["trip_id"] is None
    # A legacy mapping error is the trip's as a whole.
    _, error = check_trip(3, {"trip_distance": 1.0, "pickup_datetime": "yesterday"})
    assert error["errors"][0]["field"] == "(trip)" and "pickup_datetime" in error["errors"][0]["problem"]


def test_the_valid_message_of_the_stream_is_a_valid_request():
    # The Kafka parser and the service accept the same trips (extra columns such as fare are ignored).
    trip = TripRequest.model_validate(VALID_MESSAGE)
    assert trip.trip_id == VALID_MESSAGE["trip_id"] and trip.trip_start_hour == VALID_MESSAGE["trip_start_hour"]


# ---------------------------------------------------------------- property-based
_FIELDS = [
    "trip_id",
    *schema.RAW_COLUMN_NAMES,
    "pickup_datetime",
    "dropoff_datetime",
    "trip_distance",
    "fare_amount",
    "passenger_count",
]
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats()
    | st.text(st.characters(exclude_categories=()), max_size=50)
    | st.sampled_from([STAMP, STAMP * 1000, 0, -1, 77, 78, 2**31, 2**63, 1e300, "2015-01-01T01:00:00Z", "0001-01-01T00:00:00+05:00"])
    | st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat())
)
_JSONISH = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
_TRIP_DICTS = st.dictionaries(st.sampled_from(_FIELDS), _JSONISH, max_size=len(_FIELDS))
# A valid trip with a few fields replaced: most of these are still valid, with odd values.
_ALTERED_TRIPS = st.dictionaries(st.sampled_from(_FIELDS), _SCALARS, max_size=3).map(lambda over: {**TRIP, "trip_start_timestamp": STAMP, **over})


def _validates_or_is_refused(value) -> dict | None:
    """The request model's only outcomes: a trip, or pydantic's ValidationError."""
    try:
        return TripRequest.model_validate(value).model_dump()
    except ValidationError:
        return None


@settings(max_examples=300, deadline=None)
@given(_JSONISH)
def test_any_json_value_gives_a_trip_or_a_validation_error(value):
    _validates_or_is_refused(value)


@settings(max_examples=400, deadline=None)
@given(_TRIP_DICTS | _ALTERED_TRIPS)
def test_any_object_of_trip_fields_gives_a_trip_or_a_validation_error_and_a_valid_one_can_be_scored(value):
    trip = _validates_or_is_refused(value)
    if trip is not None:
        # What the request model lets through can be turned into the transform graph's inputs.
        features = raw_frame_to_features(pd.DataFrame([trip]))
        assert set(features) >= set(schema.MODEL_INPUT_COLUMNS)
    # The same object as the service receives it (JSON; lone surrogates travel as escapes).
    try:
        TripRequest.model_validate_json(json.dumps(value))
    except ValidationError:
        pass
    trip, error = check_trip(0, value)
    assert (trip is None) != (error is None)
    if error is not None:
        json.dumps(error, allow_nan=False)  # an error entry can always be sent back
        assert error["errors"] and all(set(e) == {"field", "problem"} for e in error["errors"])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.one_of(st.text(max_size=5), st.integers(), st.none()), _SCALARS, max_size=6))
def test_any_dict_gives_a_trip_or_a_validation_error(value):
    _validates_or_is_refused(value)

"""The service's request model: derived from the schema; the calendar fields follow the timestamp."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from chicago_taxi.ingest.messages import calendar_fields
from chicago_taxi.serving.contract import TripRequest

# 2015-01-01 01:00 Chicago wall-clock time (a Thursday: weekday 5 with 1 = Sunday).
STAMP = 1420074000
TRIP = {"trip_miles": 2.1, "trip_seconds": 540, "pickup_community_area": 8, "company": "Taxi Affiliation Services", "payment_type": "Cash"}


def test_the_calendar_fields_are_derived_from_the_timestamp_when_absent():
    trip = TripRequest(**TRIP, trip_start_timestamp=STAMP)
    assert (trip.trip_start_hour, trip.trip_start_day, trip.trip_start_month) == (1, 5, 1)
    assert calendar_fields(datetime.fromtimestamp(STAMP, UTC)) == {"trip_start_hour": 1, "trip_start_day": 5, "trip_start_month": 1}


def test_calendar_fields_sent_with_the_timestamp_must_agree_with_it():
    assert TripRequest(**TRIP, trip_start_timestamp=STAMP, trip_start_hour=1).trip_start_hour == 1
    with pytest.raises(ValidationError, match=r"trip_start_hour=13 \(the timestamp says 1\)"):
        TripRequest(**TRIP, trip_start_timestamp=STAMP, trip_start_hour=13)


def test_without_a_timestamp_the_calendar_fields_stay_required():
    with pytest.raises(ValidationError) as caught:
        TripRequest(**TRIP)
    assert {e["loc"][0] for e in caught.value.errors()} == {"trip_start_hour", "trip_start_day", "trip_start_month"}


def test_a_timestamp_outside_the_schema_range_is_refused_naming_it():
    with pytest.raises(ValidationError) as caught:
        TripRequest(**TRIP, trip_start_timestamp=12, trip_start_hour=1, trip_start_day=1, trip_start_month=1)
    assert [e["loc"][0] for e in caught.value.errors()] == ["trip_start_timestamp"]

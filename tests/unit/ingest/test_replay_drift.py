"""Drift on demand in the replay: what changes, from when, and what is refused."""

from datetime import UTC, datetime, timedelta

import pytest

from chicago_taxi.ingest.replay import Drift


def message():
    return {"trip_id": "trip-1", "fare": 10.0, "trip_miles": 2.0, "trip_seconds": 600, "company": None, "pickup_community_area": None}


def test_drift_scales_the_fare_and_shifts_inputs_leaving_nulls_alone():
    drift = Drift.parse("3", fare_scale=1.5, shifts=["trip_miles=*3", "trip_seconds=+60", "pickup_community_area=+1"])
    out = drift.apply(message())
    assert (out["fare"], out["trip_miles"], out["trip_seconds"], out["pickup_community_area"]) == (15.0, 6.0, 660, None)
    assert message()["fare"] == 10.0  # the original is not modified
    assert drift.describe() == "fare*1.5,trip_miles*3,trip_seconds+60,pickup_community_area+1"


def test_drift_starts_at_a_message_index_or_a_send_time():
    by_index = Drift.parse("3")
    assert [by_index.applies(i, datetime.now(UTC)) for i in range(5)] == [False, False, False, True, True]
    start = datetime(2026, 12, 1, 10, tzinfo=UTC)
    by_time = Drift.parse("2026-12-01T10:00:00Z")
    assert not by_time.applies(99, start - timedelta(seconds=1)) and by_time.applies(0, start)


@pytest.mark.parametrize(
    "shift, problem",
    [
        ("fare=*2", "not a numeric input column"),
        ("company=*2", "not a numeric input column"),
        ("trip_miles=2", "expected"),
        ("trip_miles=*x", "not a number"),
    ],
)
def test_a_bad_shift_is_refused_with_the_reason(shift, problem):
    with pytest.raises(ValueError, match=problem):
        Drift.parse("0", shifts=[shift])

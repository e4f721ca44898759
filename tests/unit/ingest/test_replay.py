"""The replay producer's message building, without a broker: what it sends is what the parser reads."""

from __future__ import annotations

import json

import pytest

from chicago_taxi.ingest.messages import InvalidMessage, parse_trip, trip_id_for
from chicago_taxi.ingest.replay import BAD_KINDS, DEFAULT_CSV, chicago_message, corrupt, legacy_message, load_rows, plan_defects


def test_trip_ids_are_stable_per_csv_row():
    assert trip_id_for(0) == "trip-00000" and trip_id_for(15001) == "trip-15001"


def test_csv_rows_become_json_with_nan_as_null_and_ints_as_ints():
    rows = load_rows(DEFAULT_CSV, limit=20)
    message = chicago_message(rows[0], trip_id_for(0))
    text = json.dumps(message, allow_nan=False)  # raises on a leftover NaN
    assert json.loads(text)["pickup_community_area"] is None
    assert all(isinstance(chicago_message(r, "t")["trip_start_hour"], int) for r in rows)


def test_legacy_shape_round_trips_through_the_parser(clean_trips):
    for index, row in clean_trips.head(200).iterrows():
        chicago = chicago_message(row.to_dict(), trip_id_for(index))
        parsed = parse_trip(json.dumps(legacy_message(chicago)))
        for column in ("trip_start_timestamp", "trip_start_hour", "trip_start_day", "trip_start_month", "trip_miles", "trip_seconds", "fare"):
            assert parsed[column] == chicago[column], (index, column)


def test_bad_share_is_exact_and_deterministic():
    plan = plan_defects(50, 0.2, seed=7)
    assert len(plan) == 10 and plan == plan_defects(50, 0.2, seed=7)
    assert set(plan.values()) == set(BAD_KINDS)
    assert plan != plan_defects(50, 0.2, seed=8)


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("defect", BAD_KINDS)
def test_every_injected_defect_is_rejected_by_the_parser(clean_trips, defect, legacy):
    message = chicago_message(clean_trips.iloc[0].to_dict(), "trip-x")
    if legacy:
        message = legacy_message(message)
    parse_trip(json.dumps(message))  # the clean version parses
    with pytest.raises(InvalidMessage):
        parse_trip(corrupt(message, defect, legacy))

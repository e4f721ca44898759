"""Statistics as of a trip, computed by the stream exactly as the offline store holds them, and the
history and stream log they are computed over; no service (the offline-store comparison on the
whole sample is tests/integration/features/test_stream_log.py)."""

import pandas as pd
import pytest

from chicago_taxi.core import schema
from chicago_taxi.core.config import load_settings
from chicago_taxi.features import stream_log
from chicago_taxi.features.aggregates import compute_view
from fixtures.env import DATA_CSV
from fixtures.trips import COMPANY_VIEW, DAY, B, trip_dict


def test_stats_as_of_a_trip_exclude_its_own_half_hour_and_expire_after_the_window():
    known = pd.DataFrame(
        [
            trip_dict("x1", B - 3600, 10.0),
            trip_dict("x2", B - 600, 20.0),
            trip_dict("x3", B + 300, 40.0),
            trip_dict("x4", B + DAY + 100, 50.0),
            trip_dict("other", B - 60, 99.0, company="Other"),
        ]
    )
    batch = pd.DataFrame(
        [
            trip_dict("x1", B - 3600, 10.0),  # nothing before it
            trip_dict("x3", B + 300, 40.0),  # row at B: x1, x2 (not itself, nothing of its half hour)
            trip_dict("x4", B + DAY + 100, 50.0),  # row at B + 30 min: x1, x2, x3
            trip_dict("late", B + 3 * DAY, 5.0),  # newest row (B + 1 day + 30 min) is older than a day: none
            trip_dict("nofare", B + 600, None),  # scored without a fare: still has a row as of it
        ]
    )
    rows = stream_log.stats_as_of(batch, known, COMPANY_VIEW)
    stamps = rows["event_timestamp"]
    assert pd.isna(stamps[0]) and pd.isna(stamps[3])
    assert stamps[1] == pd.Timestamp(B, unit="s", tz="UTC") and stamps[4] == stamps[1]
    assert (rows.loc[1, "company_trips_1d"], rows.loc[1, "company_fare_1d"]) == (2, pytest.approx(15.0))
    assert stamps[2] == pd.Timestamp(B + 1800, unit="s", tz="UTC")
    assert (rows.loc[2, "company_trips_1d"], rows.loc[2, "company_fare_1d"]) == (3, pytest.approx(70 / 3))
    # The same numbers the offline store would hold at those boundaries.
    offline = compute_view(known, COMPANY_VIEW).set_index(["company", "event_timestamp"])
    assert offline.loc[("A", stamps[2]), "company_trips_1d"] == 3


def test_stats_as_of_use_the_missing_company_key_and_every_entity_separately():
    known = pd.DataFrame([trip_dict("m1", B - 100, 8.0, company=None), trip_dict("o1", B - 100, 30.0, company="Other")])
    batch = pd.DataFrame([trip_dict("m2", B + 10, 9.0, company=None), trip_dict("o2", B + 10, 9.0, company="Other")])
    rows = stream_log.stats_as_of(batch, known, COMPANY_VIEW)
    assert rows["company"].tolist() == [schema.MISSING_COMPANY_KEY, "Other"]
    assert rows["company_fare_1d"].tolist() == pytest.approx([8.0, 30.0])


def test_history_is_the_gate_clean_sample_with_the_producers_ids(trips):
    history = stream_log.load_history(DATA_CSV, load_settings().expectations_dir)
    # The gate quarantines the 41 trips whose fare is unusable; dirty inputs stay (they are repaired).
    assert len(history) == len(trips) - 41
    assert history["trip_id"].iloc[0].startswith("trip-") and history["trip_id"].is_unique
    row = int(history["trip_id"].iloc[0].removeprefix("trip-"))
    assert history["fare"].iloc[0] == trips["fare"].iloc[row]


def test_known_trips_count_a_replayed_trip_once():
    history = pd.DataFrame([trip_dict("trip-00001", B - 100, 10.0)])
    eligible = pd.DataFrame([trip_dict("trip-00001", B - 100, 10.0), trip_dict("new-1", B - 50, 20.0)])

    class Log:
        def read(self, entity, values, start, end):
            return pd.DataFrame([trip_dict("new-1", B - 50, 20.0)])

    known = stream_log.known_trips(eligible, eligible, history, Log(), COMPANY_VIEW)
    assert sorted(known["trip_id"]) == ["new-1", "trip-00001"]


def test_redis_keys_of_different_entity_values_never_collide():
    # A company named "X:trips" used to get the hash key of company "X" (WRONGTYPE in Redis).
    values = ["X", "X:trips", "X%3Atrips", "a b", "é", "\ud800", 7, "7"]
    keys = [key for value in values for key in stream_log.redis_keys("p", "company", value)]
    assert len(set(keys[:-2])) == len(keys) - 2  # 7 and "7" are the same key on purpose (str of the value)
    assert stream_log.redis_keys("p", "company", "X:trips")[0] == "p:company:X%3Atrips"

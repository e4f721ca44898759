"""The resampler behind the scaling benchmark: larger trip sets that look to every pipeline step
like the sample (same columns, dirt, time span, grid), only with more trips."""

from __future__ import annotations

import pandas as pd
import pytest

from chicago_taxi.ingest.resample import (
    DEFAULT_JITTER_DAYS,
    GRID_SECONDS,
    ResampleError,
    calendar_of,
    resample_trips,
    write_resampled,
)
from fixtures.env import DATA_CSV

N = 40_000
JITTER = DEFAULT_JITTER_DAYS * 86400


@pytest.fixture(scope="module")
def tagged(trips) -> pd.DataFrame:
    """The sample with a per-row tag in `company` (to find each copy's source row) and an end
    time, as the full Chicago feed has one."""
    return trips.assign(company=[f"row-{i}" for i in range(len(trips))], trip_end_timestamp=trips.trip_start_timestamp + trips.trip_seconds)


@pytest.fixture(scope="module")
def resampled(tagged) -> pd.DataFrame:
    return resample_trips(tagged, N, seed=7)


@pytest.fixture(scope="module")
def copies(tagged, resampled) -> pd.DataFrame:
    """Each resampled row beside its source row (suffix _src)."""
    return resampled.merge(tagged, on="company", suffixes=("", "_src"), validate="many_to_one")


def test_the_resampled_set_has_n_rows_and_the_samples_columns_and_dtypes(tagged, resampled):
    assert len(resampled) == N
    assert list(resampled.columns) == list(tagged.columns)
    assert resampled.dtypes.to_dict() == tagged.dtypes.to_dict()


def test_no_two_resampled_rows_are_identical(resampled):
    # Gate 1 quarantines exact duplicates: copies must differ, or the bad-row share would grow with n.
    assert not resampled.duplicated().any()


def test_copies_keep_every_value_but_the_time_as_it_was_dirt_included(copies):
    unchanged = ["fare", "trip_miles", "trip_seconds", "payment_type", "pickup_latitude", "dropoff_community_area", "tips", "dropoff_census_tract"]
    for column in unchanged:
        pd.testing.assert_series_equal(copies[column], copies[f"{column}_src"], check_names=False)


def test_times_move_by_whole_15_minute_steps_within_the_jitter_or_wrap_around(trips, copies):
    shift = copies.trip_start_timestamp - copies.trip_start_timestamp_src
    assert (shift % GRID_SECONDS == 0).all()
    span = trips.trip_start_timestamp.max() - trips.trip_start_timestamp.min() + GRID_SECONDS
    wrapped = shift.abs() > JITTER
    assert (shift[~wrapped].abs() <= JITTER).all()
    # A time pushed past either end re-enters at the other: the shift is off by one whole span.
    assert ((shift[wrapped].abs() - span).abs() <= JITTER).all()
    assert shift.std() > JITTER / 3, "the offsets should spread over the +-7 days, not stay near 0"


def test_times_stay_on_the_grid_and_inside_the_samples_range(trips, resampled):
    stamps = resampled.trip_start_timestamp
    assert (stamps % GRID_SECONDS == 0).all()
    assert stamps.min() >= trips.trip_start_timestamp.min() and stamps.max() <= trips.trip_start_timestamp.max()


def test_durations_are_preserved(copies):
    # The end moves with the start (after wrapping too), so every trip lasts as long as its source.
    duration = copies.trip_end_timestamp - copies.trip_start_timestamp
    pd.testing.assert_series_equal(duration, copies.trip_end_timestamp_src - copies.trip_start_timestamp_src, check_names=False)


def test_calendar_columns_follow_the_new_time(resampled):
    for column, expected in calendar_of(resampled.trip_start_timestamp.to_numpy()).items():
        assert (resampled[column].to_numpy() == expected).all(), column


def test_a_calendar_that_disagreed_with_its_time_still_disagrees(trips):
    dirty = trips.head(50).copy()
    dirty.loc[0, "trip_start_hour"] = (dirty.loc[0, "trip_start_hour"] + 5) % 24
    out = resample_trips(dirty.assign(company=[f"row-{i}" for i in range(50)]), 2000, seed=1)
    copies_of_dirty = out[out.company == "row-0"]
    assert len(copies_of_dirty) > 0
    assert (copies_of_dirty.trip_start_hour == dirty.loc[0, "trip_start_hour"]).all()


def test_an_id_column_gets_a_new_unique_value_per_row(trips):
    with_ids = trips.head(100).assign(unique_key=[f"k{i}" for i in range(100)])
    out = resample_trips(with_ids, 5000, seed=3)
    assert out.unique_key.is_unique and len(out) == 5000


def test_the_same_seed_gives_the_same_trips_and_another_seed_others(trips):
    first, again, other = (resample_trips(trips, 5000, seed=s) for s in (11, 11, 12))
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_fares_distances_and_dirt_are_distributed_as_in_the_sample(trips):
    resampled = resample_trips(trips, N, seed=8)
    for column in ("fare", "trip_miles", "trip_seconds"):
        for q in (0.1, 0.5, 0.9):
            sample_q, resampled_q = trips[column].quantile(q), resampled[column].quantile(q)
            assert abs(resampled_q - sample_q) <= 0.05 * abs(sample_q) + 0.11, (column, q, sample_q, resampled_q)
    # The gates must see the same share of bad rows: fares below the flag pull, zero miles.
    for share in (lambda f: (f.fare < 3.25).mean(), lambda f: (f.trip_miles == 0).mean(), lambda f: f.company.isna().mean()):
        assert abs(share(resampled) - share(trips)) < 0.01


def test_write_resampled_keeps_the_samples_cell_text_and_reuses_its_cache(tmp_path):
    path = write_resampled(3000, seed=5, source=DATA_CSV, cache_dir=tmp_path)
    assert path.parent == tmp_path
    source_lines = DATA_CSV.read_text().splitlines()
    lines = path.read_text().splitlines()
    assert lines[0] == source_lines[0] and len(lines) == 3001
    # Every cell but the time and its calendar is the sample's own text ("0" stays "0").
    time_fields = [source_lines[0].split(",").index(c) for c in ("trip_start_month", "trip_start_hour", "trip_start_day", "trip_start_timestamp")]

    def rest(line: str) -> tuple:
        return tuple(v for i, v in enumerate(line.split(",")) if i not in time_fields)

    known = {rest(line) for line in source_lines[1:]}
    assert all(rest(line) in known for line in lines[1:])
    written = path.stat().st_mtime_ns
    assert write_resampled(3000, seed=5, source=DATA_CSV, cache_dir=tmp_path) == path
    assert path.stat().st_mtime_ns == written
    # Values as resample_trips gives them (a small draw may hold no fractional trip_seconds, so
    # read_csv may infer int64 where the sample's column is float64).
    pd.testing.assert_frame_equal(pd.read_csv(path), resample_trips(pd.read_csv(DATA_CSV), 3000, seed=5), check_dtype=False)


def test_too_many_copies_for_the_jitter_fail_with_the_count(trips):
    with pytest.raises(ResampleError, match="distinct times"):
        resample_trips(trips.head(2), 500, seed=0, jitter_days=0.5)


def test_a_sample_shorter_than_the_jitter_is_refused(trips):
    one_day = trips[trips.trip_start_timestamp < trips.trip_start_timestamp.min() + 86400]
    with pytest.raises(ResampleError, match="spans"):
        resample_trips(one_day, 100, seed=0)


def test_nonnumeric_times_are_refused_with_an_example(trips):
    bad = trips.head(5).astype({"trip_start_timestamp": object})
    bad.loc[2, "trip_start_timestamp"] = "yesterday"
    with pytest.raises(ResampleError, match="yesterday"):
        resample_trips(bad, 10, seed=0)

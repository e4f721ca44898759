"""Gate 1 on a good batch and on injected bad batches; gate 2 on NaN and out-of-vocabulary floods."""

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from chicago_taxi.ingest.messages import calendar_fields
from chicago_taxi.quality import gates
from fixtures.env import EXPECTATIONS


@pytest.fixture(scope="module")
def expectations():
    """The committed GX project: a gate runs in a scratch copy of it and writes nothing back."""
    return EXPECTATIONS


def _stored_files(expectations_dir):
    return sorted(p for p in (expectations_dir / "gx").rglob("*") if p.is_file())


def _run(frame, tmp_path, expectations, max_share=0.05):
    return gates.validate_raw_trips(frame, tmp_path / "gate", expectations, tmp_path / "reports", max_share)


def test_good_batch_passes_with_nothing_quarantined(clean_trips, tmp_path, expectations):
    before = _stored_files(expectations)
    result = _run(clean_trips, tmp_path, expectations)
    assert result.success and result.quarantined_rows == 0
    assert (tmp_path / "reports" / "data_docs" / "validate_raw" / "index.html").exists()
    # GX stores each result and rebuilds Data Docs from all it stored: never in the committed project.
    assert _stored_files(expectations) == before


def test_real_sample_quarantines_unusable_labels_and_keeps_repairable_dirt_with_warnings(trips, tmp_path, expectations):
    result = _run(trips, tmp_path, expectations)
    quarantine = pd.read_parquet(result.quarantine_path)
    clean = pd.read_parquet(result.clean_path)
    assert result.success
    assert result.quarantined_rows == len(quarantine) and 0 < result.bad_row_share < 0.01
    # Unusable labels: zero fares and the $700.07 fare.
    assert (quarantine.fare == 0).sum() == (trips.fare == 0).sum()
    assert 700.07 in quarantine.fare.values
    assert quarantine.failed_expectations.str.contains("fare").all()
    # Dirty inputs with a real fare stay, for the transform graph to repair: zero seconds, the
    # 1,710-mile odometer glitch; they are counted as warnings.
    glitch = trips[(trips.trip_miles == 1710) & trips.fare.between(3.25, 300)]
    assert len(glitch) and 1710 in clean.trip_miles.values
    assert (clean.trip_seconds == 0).sum() == ((trips.trip_seconds == 0) & trips.fare.between(3.25, 300)).sum() > 400
    warned = {o.name.split(" ")[0]: o.unexpected_count for o in result.outcomes if o.severity == "warn"}
    assert warned["expect_column_values_to_be_between(implied_speed_mph)"] >= 59
    assert warned["expect_column_values_to_not_be_in_set(trip_seconds)"] == (trips.trip_seconds == 0).sum()
    assert len(clean) + len(quarantine) == len(trips)


def test_duplicates_future_starts_and_calendars_that_disagree_are_quarantined_and_counted(clean_trips, tmp_path, expectations):
    batch = clean_trips.head(200).copy()
    clock = int(batch.trip_start_timestamp.max())
    batch = pd.concat([batch, batch.iloc[[0]]], ignore_index=True)  # row 200: a copy of row 0
    batch.loc[1, "trip_start_timestamp"] = clock + 900  # after the data clock
    calendar = calendar_fields(datetime.fromtimestamp(clock + 900, UTC))  # wall clock stored as UTC
    batch.loc[1, list(calendar)] = list(calendar.values())
    batch.loc[2, "trip_start_hour"] = (batch.loc[2, "trip_start_hour"] + 1) % 24  # disagrees with its timestamp
    result = gates.validate_raw_trips(batch, tmp_path / "gate", expectations, tmp_path / "reports", 0.05, data_clock_epoch=clock)
    failed = pd.read_parquet(result.quarantine_path).set_index("_row_id").failed_expectations
    assert sorted(failed.index) == [1, 2, 200]
    assert "trip_start_timestamp" in failed[1] and str(clock) in failed[1]
    assert "calendar_disagrees_with_timestamp" in failed[2]
    assert "duplicate_of_earlier_row" in failed[200]
    counts = {o.name.split(")")[0] + ")": o.unexpected_count for o in result.outcomes if o.severity == "quarantine" and o.unexpected_count}
    assert counts == {
        "expect_column_values_to_be_between(trip_start_timestamp)": 1,
        "expect_column_values_to_be_in_set(calendar_disagrees_with_timestamp)": 1,
        "expect_column_values_to_be_in_set(duplicate_of_earlier_row)": 1,
    }


def test_missing_column_stops_the_gate_and_names_it(clean_trips, tmp_path, expectations):
    with pytest.raises(gates.QualityGateError, match=r"expect_column_to_exist\(trip_seconds\)"):
        _run(clean_trips.drop(columns=["trip_seconds"]), tmp_path, expectations)


def test_retyped_column_stops_the_gate_and_names_it(clean_trips, tmp_path, expectations):
    bad = clean_trips.copy()
    bad["fare"] = bad["fare"].map(lambda v: f"${v:.2f}")
    with pytest.raises(gates.QualityGateError, match=r"in_type_list\(fare\)"):
        _run(bad, tmp_path, expectations)


def test_too_many_bad_rows_stop_the_gate_with_counts_and_keep_them_in_quarantine(clean_trips, tmp_path, expectations):
    bad = clean_trips.copy()
    bad.loc[: len(bad) // 10, "fare"] = 0.0  # 10% zero fares
    with pytest.raises(gates.QualityGateError) as err:
        _run(bad, tmp_path, expectations)
    message = str(err.value)
    assert "bad-row share" in message and "expect_column_values_to_be_between(fare)" in message
    assert f"{len(bad) // 10 + 1} rows" in message
    quarantine = pd.read_parquet(tmp_path / "gate" / "quarantine.parquet")
    assert len(quarantine) == len(bad) // 10 + 1
    assert json.loads((tmp_path / "gate" / "validate_raw.json").read_text())["success"] is False


def test_transformed_gate_rejects_nan_and_out_of_vocabulary_flood(tmp_path, expectations):
    from chicago_taxi.core.schema import transformed_feature_kinds

    frame = pd.DataFrame({name: [0.0] * 20 if kind == "dense" else [1] * 20 for name, (kind, _) in transformed_feature_kinds().items()})
    sizes = {"payment_type": 5, "company": 10}
    assert gates.validate_transformed(frame, sizes, tmp_path, expectations, tmp_path / "r").success
    frame.loc[0, "trip_miles_xf"] = float("nan")
    frame["company_xf"] = 11  # every company out of vocabulary
    with pytest.raises(gates.QualityGateError) as err:
        gates.validate_transformed(frame, sizes, tmp_path, expectations, tmp_path / "r")
    assert "not_be_null(trip_miles_xf) failed on 1 rows" in str(err.value)
    assert "be_between(company_xf)" in str(err.value)

"""Gate 1 on a good batch and on injected bad batches; gate 2 on NaN and out-of-vocabulary floods."""

import json

import pandas as pd
import pytest

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


def test_real_sample_passes_and_quarantines_each_known_dirty_row(trips, tmp_path, expectations):
    result = _run(trips, tmp_path, expectations)
    quarantine = pd.read_parquet(result.quarantine_path)
    assert result.success
    assert result.quarantined_rows == len(quarantine) and 0 < result.bad_row_share < 0.05
    # Ranges: zero fares, the $700.07 fare, zero-second trips and 1,710-mile trips are all caught.
    assert (quarantine.fare == 0).sum() == (trips.fare == 0).sum()
    assert 700.07 in quarantine.fare.values and 1710 in quarantine.trip_miles.values
    assert (quarantine.trip_seconds == 0).sum() == (trips.trip_seconds == 0).sum()
    assert quarantine.failed_expectations.str.contains("fare").any()
    assert len(pd.read_parquet(result.clean_path)) + len(quarantine) == len(trips)


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

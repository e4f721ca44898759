"""Gate 1 on a good batch and on injected bad batches; the versioned suites match the schema."""

import json

import pandas as pd
import pytest
from conftest import REPO_ROOT

from chicago_taxi.quality import gates

EXPECTATIONS = REPO_ROOT / "expectations"


def _run(frame, tmp_path, max_share=0.05):
    return gates.validate_raw_trips(frame, tmp_path / "gate", EXPECTATIONS, tmp_path / "reports", max_share)


def _as_float(v):
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def _normalized(expectations):
    as_float = _as_float
    return sorted(json.dumps([e["type"], {k: as_float(v) for k, v in e["kwargs"].items()}], sort_keys=True) for e in expectations)


def test_committed_suites_match_the_schema_module():
    # Schema adherence: a schema change must come with regenerated suites (make suites).
    for name, expected in ((gates.RAW_SUITE, gates.raw_suite_expectations()), (gates.TRANSFORMED_SUITE, gates.transformed_suite_expectations())):
        stored = json.loads((EXPECTATIONS / "gx" / "expectations" / f"{name}.json").read_text())["expectations"]
        assert _normalized(stored) == _normalized(expected), name


def test_good_batch_passes_with_nothing_quarantined(clean_trips, tmp_path):
    result = _run(clean_trips, tmp_path)
    assert result.success and result.quarantined_rows == 0
    assert (tmp_path / "reports" / "data_docs" / "validate_raw" / "index.html").exists()


def test_real_sample_passes_and_quarantines_each_known_dirty_row(trips, tmp_path):
    result = _run(trips, tmp_path)
    quarantine = pd.read_parquet(result.quarantine_path)
    assert result.success
    assert result.quarantined_rows == len(quarantine) and 0 < result.bad_row_share < 0.05
    # Ranges: zero fares, the $700.07 fare, zero-second trips and 1,710-mile trips are all caught.
    assert (quarantine.fare == 0).sum() == (trips.fare == 0).sum()
    assert 700.07 in quarantine.fare.values and 1710 in quarantine.trip_miles.values
    assert (quarantine.trip_seconds == 0).sum() == (trips.trip_seconds == 0).sum()
    assert quarantine.failed_expectations.str.contains("fare").any()
    assert len(pd.read_parquet(result.clean_path)) + len(quarantine) == len(trips)


def test_missing_column_stops_the_gate_and_names_it(clean_trips, tmp_path):
    with pytest.raises(gates.QualityGateError, match=r"expect_column_to_exist\(trip_seconds\)"):
        _run(clean_trips.drop(columns=["trip_seconds"]), tmp_path)


def test_retyped_column_stops_the_gate_and_names_it(clean_trips, tmp_path):
    bad = clean_trips.copy()
    bad["fare"] = bad["fare"].map(lambda v: f"${v:.2f}")
    with pytest.raises(gates.QualityGateError, match=r"in_type_list\(fare\)"):
        _run(bad, tmp_path)


def test_too_many_bad_rows_stop_the_gate_with_counts_and_keep_them_in_quarantine(clean_trips, tmp_path):
    bad = clean_trips.copy()
    bad.loc[: len(bad) // 10, "fare"] = 0.0  # 10% zero fares
    with pytest.raises(gates.QualityGateError) as err:
        _run(bad, tmp_path)
    message = str(err.value)
    assert "bad-row share" in message and "expect_column_values_to_be_between(fare)" in message
    assert f"{len(bad) // 10 + 1} rows" in message
    quarantine = pd.read_parquet(tmp_path / "gate" / "quarantine.parquet")
    assert len(quarantine) == len(bad) // 10 + 1
    assert json.loads((tmp_path / "gate" / "validate_raw.json").read_text())["success"] is False


def test_transformed_gate_rejects_nan_and_out_of_vocabulary_flood(tmp_path):
    from chicago_taxi.core.schema import transformed_feature_kinds

    frame = pd.DataFrame({name: [0.0] * 20 if kind == "dense" else [1] * 20 for name, (kind, _) in transformed_feature_kinds().items()})
    sizes = {"payment_type": 5, "company": 10}
    assert gates.validate_transformed(frame, sizes, tmp_path, EXPECTATIONS, tmp_path / "r").success
    frame.loc[0, "trip_miles_xf"] = float("nan")
    frame["company_xf"] = 11  # every company out of vocabulary
    with pytest.raises(gates.QualityGateError) as err:
        gates.validate_transformed(frame, sizes, tmp_path, EXPECTATIONS, tmp_path / "r")
    assert "not_be_null(trip_miles_xf) failed on 1 rows" in str(err.value)
    assert "be_between(company_xf)" in str(err.value)

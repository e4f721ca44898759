import numpy as np
import pandas as pd
import pytest

from chicago_taxi.core import monitoring_schema as C
from chicago_taxi.core.monitoring_config import DriftThresholds
from chicago_taxi.monitoring.drift import category_labels, drift_table, prediction_drift, psi

THRESHOLDS = DriftThresholds()


def _with_store_features(trips: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Real trip columns plus fabricated store features and predictions (drawn from one
    distribution for every frame, so only what a test changes can drift)."""
    rng = np.random.default_rng(seed)
    frame = trips.reset_index(drop=True).copy()
    for name in C.MONITORED_NUMERIC:
        if name not in frame:
            frame[name] = rng.gamma(2.0, 3.0, len(frame))
    frame[C.PREDICTION] = frame[C.LABEL] * rng.normal(1.0, 0.1, len(frame))
    return frame


@pytest.fixture(scope="module")
def halves(trips):
    """Two disjoint random halves of the real sample: the same population, no drift."""
    shuffled = trips.sample(frac=1.0, random_state=7).reset_index(drop=True)
    half = len(shuffled) // 2
    return _with_store_features(shuffled.iloc[:half], 1), _with_store_features(shuffled.iloc[half:], 2)


def test_psi_of_identical_distributions_is_zero():
    values = pd.Series(np.random.default_rng(0).lognormal(1.0, 0.8, 5000))
    assert psi(values, values, "numeric") == pytest.approx(0.0, abs=1e-12)
    categories = pd.Series(["Cash", "Credit Card", "Cash", None] * 100)
    assert psi(categories, categories, "categorical") == pytest.approx(0.0, abs=1e-12)


def test_psi_of_two_samples_of_one_distribution_is_small():
    rng = np.random.default_rng(1)
    assert psi(pd.Series(rng.lognormal(1, 0.8, 5000)), pd.Series(rng.lognormal(1, 0.8, 5000)), "numeric") < 0.02


def test_psi_flags_a_doubled_numeric_column():
    values = pd.Series(np.random.default_rng(2).lognormal(1.0, 0.8, 5000))
    assert psi(values, values * 2, "numeric") > 0.25


def test_psi_is_symmetric():
    rng = np.random.default_rng(3)
    a, b = pd.Series(rng.choice(list("abc"), 1000, p=[0.6, 0.3, 0.1])), pd.Series(rng.choice(list("abc"), 1000, p=[0.2, 0.3, 0.5]))
    assert psi(a, b, "categorical") == pytest.approx(psi(b, a, "categorical"))


def test_psi_flags_a_changed_category_mix():
    rng = np.random.default_rng(4)
    reference = pd.Series(rng.choice(["Cash", "Credit Card", "Mobile"], 5000, p=[0.6, 0.35, 0.05]))
    current = pd.Series(rng.choice(["Cash", "Credit Card", "Mobile"], 5000, p=[0.3, 0.4, 0.3]))
    assert psi(reference, current, "categorical") > 0.25


def test_psi_of_a_known_categorical_split():
    # Reference 50/50, current 80/20: (0.8-0.5)ln(0.8/0.5) + (0.2-0.5)ln(0.2/0.5).
    reference = pd.Series(["a"] * 50 + ["b"] * 50)
    current = pd.Series(["a"] * 80 + ["b"] * 20)
    assert psi(reference, current, "categorical") == pytest.approx(0.3 * np.log(1.6) - 0.3 * np.log(0.4))


def test_a_category_new_in_the_window_counts_with_epsilon():
    reference = pd.Series(["a"] * 100)
    current = pd.Series(["a"] * 90 + ["z"] * 10)
    expected = (0.9 - 1.0) * np.log(0.9 / 1.0) + (0.1 - 1e-4) * np.log(0.1 / 1e-4)
    assert psi(reference, current, "categorical") == pytest.approx(expected)


def test_missing_values_are_a_bin_of_their_own():
    rng = np.random.default_rng(5)
    values = rng.normal(10, 2, 4000)
    reference = pd.Series(values)
    half_missing = pd.Series(np.where(rng.random(4000) < 0.5, np.nan, values))
    # A feature that stops arriving is drift, though the values that still arrive look the same.
    assert psi(reference, half_missing, "numeric") > 0.25
    # The same share of missing values on both sides is no drift.
    assert psi(half_missing, half_missing.sample(frac=1.0, random_state=0).reset_index(drop=True), "numeric") == pytest.approx(0.0, abs=1e-12)
    assert psi(pd.Series(["x", None] * 50), pd.Series(["x"] * 100), "categorical") > 0.25


def test_integer_categories_read_as_floats_match_their_reference():
    # A window's community areas read as floats (one NaN makes the column float) match the ints.
    reference = pd.Series([8, 32, 8, 76] * 50)
    current = pd.Series([8.0, 32.0, 8.0, 76.0] * 50)
    assert psi(reference, current, "categorical") == pytest.approx(0.0, abs=1e-12)
    assert category_labels(pd.Series([8.0, np.nan])).tolist() == ["8", "(missing)"]
    assert category_labels(pd.Series([8, None, "3"], dtype=object)).tolist() == ["8", "(missing)", "3"]


def test_psi_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="'ordinal'"):
        psi(pd.Series([1.0]), pd.Series([1.0]), "ordinal")


def test_psi_with_an_empty_side_is_nan():
    assert np.isnan(psi(pd.Series([], dtype=float), pd.Series([1.0, 2.0]), "numeric"))


def test_drift_table_flags_exactly_the_doubled_column(halves):
    reference, unshifted = halves
    current = unshifted.assign(trip_miles=unshifted["trip_miles"] * 2)
    table = drift_table(reference, current, THRESHOLDS)
    assert [row["feature"] for row in table if row["drifted"]] == ["trip_miles"]
    assert table[0]["feature"] == "trip_miles" and table[0]["psi"] > THRESHOLDS.psi_max
    assert [row["psi"] for row in table] == sorted((row["psi"] for row in table), reverse=True)
    assert {row["feature"] for row in table} == set(C.MONITORED)
    miles = table[0]
    assert miles["kind"] == "numeric" and miles["ks_statistic"] > 0.1 and miles["ks_pvalue"] < 1e-6
    assert miles["current_mean"] == pytest.approx(2 * unshifted["trip_miles"].mean())
    assert miles["reference_mean"] == pytest.approx(reference["trip_miles"].mean())


def test_drift_table_without_drift_flags_nothing(halves):
    reference, current = halves
    table = drift_table(reference, current, THRESHOLDS)
    assert not [row["feature"] for row in table if row["drifted"]]


def test_drift_table_rows_carry_the_figures_of_their_kind(halves):
    reference, current = halves
    current = current.assign(company=None)  # a window whose company never arrives
    rows = {row["feature"]: row for row in drift_table(reference, current.drop(columns=["trip_seconds"]), THRESHOLDS)}
    assert "trip_seconds" not in rows
    company = rows["company"]
    assert company["kind"] == "categorical" and company["drifted"]
    assert company["ks_statistic"] is None and company["ks_pvalue"] is None and company["reference_mean"] is None
    assert company["missing_current"] == 1.0
    assert company["missing_reference"] == pytest.approx(reference["company"].isna().mean())
    fare = rows["company_fare_1d"]
    assert fare["kind"] == "numeric" and 0 <= fare["ks_pvalue"] <= 1
    assert fare["reference_mean"] == pytest.approx(reference["company_fare_1d"].mean())


def test_prediction_drift(halves):
    reference, current = halves
    same = prediction_drift(reference[C.PREDICTION], current[C.PREDICTION], THRESHOLDS)
    assert not same["drifted"] and same["psi"] < 0.05
    higher = prediction_drift(reference[C.PREDICTION], current[C.PREDICTION] * 1.5, THRESHOLDS)
    assert higher["drifted"] and higher["psi"] > THRESHOLDS.prediction_psi_max
    assert higher["current_mean"] == pytest.approx(1.5 * same["current_mean"])
    assert set(higher) == {"psi", "ks_statistic", "ks_pvalue", "reference_mean", "current_mean", "drifted"}


def test_rare_categories_are_judged_together_so_sampling_noise_is_not_drift():
    """Many categories each under 1% of the reference (community areas, companies): a window of
    300 that happens to meet a few of them, or one the reference never saw, is not drifted;
    the same rare categories taking a third of the window is."""
    common = [str(i) for i in range(5)]
    rare = [f"r{i}" for i in range(60)]
    reference = pd.Series(common * 1800 + rare * 15)  # each rare one 0.15% of 9,900 rows
    window = pd.Series(common * 54 + rare[:28] + ["never-seen-before"] * 2)
    assert psi(reference, window, "categorical") < 0.05
    shifted = pd.Series(common * 40 + rare[:50] * 2)
    assert psi(reference, shifted, "categorical") > 0.25

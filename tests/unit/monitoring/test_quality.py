import numpy as np
import pandas as pd
import pytest

from chicago_taxi.core import monitoring_schema as C
from chicago_taxi.monitoring.quality import QualityFigures, quality_by_model, quality_figures


def _frame(labels, predictions, warnings=None, version="3", variant="champion") -> pd.DataFrame:
    n = len(labels)
    return pd.DataFrame(
        {
            C.TRIP_ID: [f"{version}-{variant}-{i}" for i in range(n)],
            C.MODEL_NAME: "chicago_taxi_fare",
            C.MODEL_VERSION: version,
            C.VARIANT: variant,
            C.SERVED: variant != "shadow",
            C.PREDICTION: np.asarray(predictions, dtype=float),
            C.LABEL: np.asarray(labels, dtype=float),
            C.INPUT_WARNINGS: warnings if warnings is not None else [""] * n,
        }
    )


def _expected(labels: np.ndarray, predictions: np.ndarray) -> dict:
    """An independent computation of the figures (the rows are already the usable ones)."""
    errors = predictions - labels
    r2 = 1 - np.sum(errors**2) / np.sum((labels - labels.mean()) ** 2)
    return {"rmse": np.sqrt(np.mean(errors**2)), "mae": np.mean(np.abs(errors)), "bias": np.mean(errors), "r2": r2}


def test_figures_match_numpy_on_the_usable_labels_only():
    rng = np.random.default_rng(0)
    labels = rng.uniform(4, 60, 200)
    predictions = labels + rng.normal(0.5, 2.0, 200)
    # Unusable: a $0 and a $700 meter reading, a NaN (fare not known yet).
    frame = _frame(np.append(labels, [0.0, 700.0, np.nan]), np.append(predictions, [30.0, 30.0, 30.0]))
    figures = quality_figures(frame)
    expected = _expected(labels, predictions)
    assert figures.count == 200
    assert figures.rmse == pytest.approx(expected["rmse"])
    assert figures.mae == pytest.approx(expected["mae"])
    assert figures.bias == pytest.approx(expected["bias"])
    assert figures.r2 == pytest.approx(expected["r2"])


def test_label_range_bounds_are_inclusive():
    low, high = C.LABEL_RANGE
    figures = quality_figures(_frame([low, high, low - 0.01, high + 0.01], [low + 1, high - 1, 10.0, 10.0]))
    assert figures.count == 2
    assert figures.rmse == pytest.approx(1.0) and figures.bias == pytest.approx(0.0)


def test_clean_figures_leave_out_repaired_trips():
    labels = np.array([10.0, 20.0, 30.0, 40.0])
    predictions = np.array([11.0, 22.0, 30.0, 50.0])
    warnings = ["", None, "miles_not_recorded", "speed_implausible,coordinates_outside_city"]
    figures = quality_figures(_frame(labels, predictions, warnings))
    assert figures.count == 4 and figures.clean_count == 2
    assert figures.clean_rmse == pytest.approx(np.sqrt((1 + 4) / 2))
    assert figures.clean_mae == pytest.approx(1.5)
    assert figures.rmse == pytest.approx(np.sqrt((1 + 4 + 0 + 100) / 4))


def test_no_clean_trip_gives_no_clean_figures():
    figures = quality_figures(_frame([10.0, 20.0], [11.0, 19.0], ["miles_not_recorded", "miles_not_recorded"]))
    assert figures.clean_count == 0 and figures.clean_rmse is None and figures.clean_mae is None


def test_r2_is_none_for_one_row_or_constant_fares():
    assert quality_figures(_frame([10.0], [12.0])).r2 is None
    assert quality_figures(_frame([10.0, 10.0, 10.0], [9.0, 10.0, 12.0])).r2 is None


def test_no_usable_label_gives_none():
    assert quality_figures(_frame([np.nan, 0.0, 1000.0], [10.0, 10.0, 10.0])) is None


def test_as_dict_rounds_floats_and_keeps_none():
    figures = QualityFigures(count=3, rmse=1.234567, mae=0.5, r2=None, bias=-0.123449, clean_count=0, clean_rmse=None, clean_mae=None)
    assert figures.as_dict() == {
        "count": 3,
        "rmse": 1.2346,
        "mae": 0.5,
        "r2": None,
        "bias": -0.1234,
        "clean_count": 0,
        "clean_rmse": None,
        "clean_mae": None,
    }


def test_quality_by_model_groups_by_version_and_variant():
    champion = _frame([10.0, 20.0, np.nan], [11.0, 21.0, 5.0], version="3", variant="champion")
    shadow = _frame([10.0, 20.0, np.nan], [14.0, 16.0, 5.0], version="4", variant="shadow")
    unlabelled = _frame([np.nan, 0.0], [10.0, 10.0], version="4", variant="challenger")
    # Shuffled, with a repeated index: grouping must not depend on either.
    frame = pd.concat([shadow, unlabelled, champion]).sample(frac=1.0, random_state=1)
    entries = quality_by_model(frame)
    assert [(e["model_version"], e["variant"]) for e in entries] == [("3", "champion"), ("4", "challenger"), ("4", "shadow")]
    by_key = {(e["model_version"], e["variant"]): e for e in entries}

    assert (
        by_key[("3", "champion")]
        == {
            "model_name": "chicago_taxi_fare",
            "model_version": "3",
            "variant": "champion",
            "predictions": 3,
            "unlabelled": 1,
        }
        | quality_figures(champion).as_dict()
    )
    assert by_key[("3", "champion")]["rmse"] == pytest.approx(1.0)
    assert by_key[("4", "shadow")]["rmse"] == pytest.approx(4.0) and by_key[("4", "shadow")]["bias"] == pytest.approx(0.0)

    nothing = by_key[("4", "challenger")]
    assert nothing["predictions"] == 2 and nothing["unlabelled"] == 2
    assert nothing["count"] == 0 and nothing["rmse"] is None and nothing["mae"] is None and nothing["bias"] is None
    assert set(nothing) == set(by_key[("3", "champion")])


def test_quality_by_model_of_an_empty_frame_is_empty():
    assert quality_by_model(_frame([], [])) == []

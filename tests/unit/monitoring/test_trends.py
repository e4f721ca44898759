import math

import pytest

from chicago_taxi.monitoring.trends import DRIFT_PNG, QUALITY_PNG, plot_trends, served_quality

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _quality(version: str, variant: str, count: int, rmse: float | None, mae: float | None = None, bias: float | None = None) -> dict:
    labelled = rmse is not None
    return {
        "model_name": "chicago_taxi_fare",
        "model_version": version,
        "variant": variant,
        "predictions": count + 5,
        "unlabelled": 5 if labelled else count + 5,
        "count": count if labelled else 0,
        "rmse": rmse,
        "mae": mae if labelled else None,
        "r2": 0.9 if labelled else None,
        "bias": bias if labelled else None,
        "clean_count": count if labelled else 0,
        "clean_rmse": rmse,
        "clean_mae": mae if labelled else None,
    }


def _drift(psi_by_feature: dict[str, float], prediction_psi: float | None) -> dict:
    features = [{"feature": name, "kind": "numeric", "psi": value, "drifted": value > 0.25} for name, value in psi_by_feature.items()]
    prediction = None if prediction_psi is None else {"psi": prediction_psi, "drifted": prediction_psi > 0.25}
    return {"judged": True, "features": features, "prediction": prediction, "drifted_features": [f["feature"] for f in features if f["drifted"]]}


def _window(hour: int, quality: list[dict], drift: dict | None) -> dict:
    summary = {
        "window": {"id": f"20261201T{hour:02d}00", "start": f"2026-12-01T{hour:02d}:00:00+00:00", "end": f"2026-12-01T{hour + 1:02d}:00:00+00:00"},
        "predictions": 100,
        "labelled": sum(q["count"] for q in quality),
        "quality": quality,
        "breaches": [],
    }
    if drift is not None:
        summary["drift"] = drift
    return summary


def _assert_pngs(out_dir, names):
    assert names == [QUALITY_PNG, DRIFT_PNG]
    for name in names:
        data = (out_dir / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000, name


def test_one_window_gives_both_plots(tmp_path):
    window = _window(10, [_quality("3", "champion", 120, 2.1, 1.4, 0.2)], _drift({"trip_miles": 0.05, "company": 0.3}, 0.02))
    _assert_pngs(tmp_path / "trends", plot_trends([window], tmp_path / "trends", psi_max=0.25))


def test_five_windows_with_gaps_give_both_plots(tmp_path):
    windows = [
        _window(
            10, [_quality("3", "champion", 120, 2.1, 1.4, 0.2), _quality("4", "shadow", 120, 1.9, 1.3, -0.1)], _drift({"trip_miles": 0.05}, 0.02)
        ),
        # No fare known yet, and too few rows for drift: no drift section at all.
        _window(11, [_quality("3", "champion", 0, None)], None),
        _window(
            12, [_quality("3", "champion", 80, 2.3, 1.5, 0.4), _quality("4", "challenger", 20, 2.0, 1.2, 0.0)], _drift({"trip_miles": 0.4}, None)
        ),
        _window(13, [], {"judged": False, "features": [], "prediction": None, "drifted_features": []}),
        _window(14, [_quality("4", "champion", 150, 1.8, 1.1, 0.1)], _drift({"trip_miles": 0.1, "payment_type": math.nan}, 0.3)),
    ]
    # Summaries arrive in any order; the plot sorts them by window start.
    _assert_pngs(tmp_path, plot_trends(list(reversed(windows)), tmp_path, psi_max=0.25))


def test_windows_without_any_figure_still_give_both_plots(tmp_path):
    windows = [_window(10, [_quality("3", "champion", 0, None)], None), _window(11, [], None)]
    _assert_pngs(tmp_path, plot_trends(windows, tmp_path, psi_max=0.25))


def test_served_quality_leaves_out_shadow_and_pools_one_version_exactly():
    window = _window(
        10,
        [
            _quality("3", "champion", 300, 2.0, 1.0, 0.5),
            _quality("3", "challenger", 100, 4.0, 3.0, -0.5),
            _quality("4", "shadow", 400, 1.0, 0.5, 0.0),
            _quality("5", "challenger", 0, None),
        ],
        None,
    )
    pooled = served_quality(window)
    assert set(pooled) == {"3"}
    # RMSE pools through the squared errors: sqrt((300 * 4 + 100 * 16) / 400).
    assert pooled["3"]["rmse"] == pytest.approx(math.sqrt(7.0))
    assert pooled["3"]["mae"] == pytest.approx(1.5)
    assert pooled["3"]["bias"] == pytest.approx(0.25)

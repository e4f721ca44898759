"""The window's rules, the retraining cooldown and the run's window, without services."""

from datetime import UTC, datetime, timedelta

import pytest

from chicago_taxi.core.config import load_settings
from chicago_taxi.core.monitoring_config import MonitoringConfig, load_monitoring_config
from chicago_taxi.monitoring import steps

HOLDOUT = {"rmse": 2.3, "mae": 1.2, "clean": {"rmse": 2.1, "mae": 1.1}}


def entry(version="1", variant="champion", count=500, mae=1.3, clean_rmse=2.2, bias=0.1, clean_count=400):
    return {
        "model_name": "m",
        "model_version": version,
        "variant": variant,
        "count": count,
        "rmse": 2.5,
        "mae": mae,
        "bias": bias,
        "clean_rmse": clean_rmse,
        "clean_count": clean_count,
    }


def test_the_shipped_config_file_loads_and_names_an_unknown_key(tmp_path):
    config = load_monitoring_config()
    assert config.source.endswith("config/monitoring.yaml") and config.quality.mae_ratio_max > 1 and config.ab.mode == "off"
    bad = tmp_path / "m.yaml"
    bad.write_text("drift:\n  psi_maxx: 0.3\n")
    with pytest.raises(ValueError, match="psi_maxx"):
        load_monitoring_config(bad)


def test_quality_in_bounds_raises_nothing():
    assert steps.quality_breaches([entry()], {"1": {"holdout": HOLDOUT}}, MonitoringConfig(), "w", None) == []


def test_each_quality_rule_fires_with_its_value_and_threshold():
    config = MonitoringConfig()
    found = steps.quality_breaches([entry(mae=2.4, clean_rmse=4.0, bias=-2.5)], {"1": {"holdout": HOLDOUT}}, config, "w1", "w1/report.html")
    by_rule = {b["rule"]: b for b in found}
    assert set(by_rule) == {"mae_ratio_to_holdout", "clean_rmse_ratio_to_holdout", "abs_bias"}
    assert by_rule["mae_ratio_to_holdout"]["value"] == pytest.approx(2.0) and by_rule["mae_ratio_to_holdout"]["threshold"] == 1.5
    assert by_rule["abs_bias"]["value"] == -2.5 and all(b["window"] == "w1" and b["report"] == "w1/report.html" for b in found)


def test_too_few_labels_or_no_reference_judge_nothing_but_bias():
    config = MonitoringConfig()
    assert steps.quality_breaches([entry(count=20, mae=9.0, bias=5.0)], {"1": {"holdout": HOLDOUT}}, config, "w", None) == []
    found = steps.quality_breaches([entry(mae=9.0, bias=5.0)], {"1": None}, config, "w", None)
    assert [b["rule"] for b in found] == ["abs_bias"]


def test_drift_breaches_name_each_drifted_feature_only_when_judged():
    drift = {
        "judged": True,
        "features": [
            {"feature": "trip_miles", "psi": 1.2, "drifted": True, "alerting": True},
            # One hour's trips all share an hour of the day: shown, never an alert.
            {"feature": "trip_start_hour", "psi": 9.0, "drifted": True, "alerting": False},
            {"feature": "company", "psi": 0.01, "drifted": False, "alerting": True},
        ],
        "prediction": {"psi": 0.4, "drifted": True},
    }
    found = steps.drift_breaches(drift, MonitoringConfig(), "w", "r.html", "1")
    assert [(b["rule"], b["feature"]) for b in found] == [("feature_drift_psi", "trip_miles"), ("prediction_drift_psi", "prediction")]
    assert steps.drift_breaches(drift | {"judged": False}, MonitoringConfig(), "w", None, "1") == []


def test_one_incident_asks_for_one_retrain_within_the_cooldown(tmp_path, monkeypatch):
    monkeypatch.setenv("TAXI_MONITORING_DIR", str(tmp_path))
    settings = load_settings()
    now = datetime(2026, 12, 1, 10, tzinfo=UTC)
    breach = [{"rule": "feature_drift_psi", "feature": "trip_miles"}]
    assert steps.retraining_due({"window": {"id": "a"}, "breaches": []}, settings, MonitoringConfig(), now)["due"] is False
    first = steps.retraining_due({"window": {"id": "a"}, "breaches": breach}, settings, MonitoringConfig(), now)
    assert first["due"] and first["rules"] == ["feature_drift_psi(trip_miles)"]
    again = steps.retraining_due({"window": {"id": "b"}, "breaches": breach}, settings, MonitoringConfig(), now + timedelta(hours=1))
    assert again["due"] is False and "cooldown" in again["reason"]
    later = steps.retraining_due({"window": {"id": "c"}, "breaches": breach}, settings, MonitoringConfig(), now + timedelta(hours=25))
    assert later["due"] is True


def test_the_run_window_is_the_data_interval_unless_parameters_name_one():
    start, end = datetime(2026, 12, 1, 10, tzinfo=UTC), datetime(2026, 12, 1, 11, tzinfo=UTC)
    assert steps.run_window({"window_start": None, "window_end": None}, start, end) == (start, end)
    given = steps.run_window({"window_start": "2026-12-01T10:15:00Z", "window_end": "2026-12-01T10:20:00+00:00"}, start, end)
    assert given == (start + timedelta(minutes=15), start + timedelta(minutes=20))
    with pytest.raises(ValueError, match="both"):
        steps.run_window({"window_start": "2026-12-01T10:15:00Z"}, start, end)
    manual_start, manual_end = steps.run_window({}, None, None)
    assert manual_end - manual_start == timedelta(hours=1) and manual_end.minute == 0


def test_window_metrics_keep_served_and_shadow_figures_apart():
    summary = {
        "quality": [entry(), entry(version="2", variant="shadow")],
        "reference": {"model_name": "m", "model_version": "1"},
        "drift": {
            "judged": True,
            "features": [{"feature": "trip_miles", "psi": 0.3}],
            "prediction": {"psi": 0.1},
            "drifted_features": ["trip_miles"],
        },
    }
    metrics = steps.window_metrics(summary)
    assert metrics[("m", "1")]["mae"] == 1.3 and metrics[("m", "1")]["psi_trip_miles"] == 0.3 and metrics[("m", "1")]["drifted_features"] == 1
    assert "shadow_mae" in metrics[("m", "2")] and "mae" not in metrics[("m", "2")]

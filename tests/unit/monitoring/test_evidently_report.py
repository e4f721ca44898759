import numpy as np
import pandas as pd
import pytest

from chicago_taxi.core import monitoring_schema as C
from chicago_taxi.monitoring.evidently_report import evidently_report
from chicago_taxi.monitoring.quality import quality_figures

TITLE = "Chicago taxi fares: window 2026-12-01T10:00 <test>"


def _frame(trips: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Real trips with fabricated store features and predictions (one distribution for all)."""
    rng = np.random.default_rng(seed)
    frame = trips.reset_index(drop=True).copy()
    for name in C.MONITORED_NUMERIC:
        if name not in frame:
            frame[name] = rng.gamma(2.0, 3.0, len(frame))
    frame[C.PREDICTION] = np.clip(frame[C.LABEL], 3.25, None) * rng.normal(1.0, 0.1, len(frame))
    frame[C.INPUT_WARNINGS] = ""
    return frame


@pytest.fixture(scope="module")
def frames(trips):
    """400 reference and 300 current trips, disjoint rows of the real sample."""
    shuffled = trips.sample(frac=1.0, random_state=11).reset_index(drop=True)
    return _frame(shuffled.iloc[:400], 1), _frame(shuffled.iloc[400:700], 2)


@pytest.fixture(scope="module")
def unshifted(frames, tmp_path_factory):
    reference, current = frames
    path = tmp_path_factory.mktemp("evidently") / "nested" / "report.html"
    return evidently_report(reference, current, path, title=TITLE), current


@pytest.fixture(scope="module")
def shifted(frames, tmp_path_factory):
    reference, current = frames
    current = current.assign(trip_miles=current["trip_miles"] * 3, area_trips_7d=np.nan)
    current.loc[current.index[10:], C.LABEL] = np.nan  # 10 labelled trips: too few to judge quality
    path = tmp_path_factory.mktemp("evidently") / "report.html"
    return evidently_report(reference, current, path, title=TITLE, min_labelled=30)


def test_the_report_is_a_real_html_page(unshifted):
    result, _ = unshifted
    page = open(result["html"], encoding="utf-8").read()
    assert len(page) > 100_000  # Evidently embeds its scripts and every plot
    assert page.lstrip().lower().startswith("<!doctype html>")
    assert "<title>Chicago taxi fares: window 2026-12-01T10:00 &lt;test&gt;</title>" in page
    assert "trip_miles" in page and "RMSE" in page


def test_an_unshifted_window_does_not_drift_trip_miles(unshifted):
    result, _ = unshifted
    assert "trip_miles" not in result["drifted_columns"]
    assert 0 <= result["drift_share"] < 0.5


def test_a_tripled_distance_drifts_trip_miles(shifted):
    assert "trip_miles" in shifted["drifted_columns"]
    assert shifted["drift_share"] > 0


def test_regression_quality_is_judged_on_the_usable_labels(unshifted):
    result, current = unshifted
    assert result["regression"] is True
    # Evidently scored exactly the rows our quality figures use: fares within LABEL_RANGE.
    assert result["labelled_rows"] == quality_figures(current).count < len(current)
    assert result["regression_rmse"] == pytest.approx(quality_figures(current).rmse)


def test_too_few_labels_leave_regression_out(shifted):
    assert shifted["regression"] is False and shifted["regression_rmse"] is None
    assert shifted["labelled_rows"] <= 10


def test_a_column_empty_in_the_window_is_left_to_our_psi(shifted):
    assert shifted["skipped_columns"] == ["area_trips_7d"]
    assert "area_trips_7d" not in shifted["drifted_columns"]


def test_an_empty_window_is_refused_before_evidently_runs(frames, tmp_path):
    reference, current = frames
    with pytest.raises(ValueError, match="0 current"):
        evidently_report(reference, current.head(0), tmp_path / "r.html", title=TITLE)
    assert not (tmp_path / "r.html").exists()

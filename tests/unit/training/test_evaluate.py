import numpy as np
import pandas as pd
import pytest

from chicago_taxi.training.evaluate import HoldoutMetrics, Metrics, TariffBaseline, decide_promotion, distinct_figures, regression_metrics


def test_regression_metrics_on_known_values():
    m = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 6.0])
    assert m.rmse == pytest.approx(1.0)
    assert m.mae == pytest.approx(0.5)
    assert m.r2 == pytest.approx(1 - 4 / 5)
    assert m.rows == 4


def test_regression_metrics_refuse_non_finite_predictions():
    with pytest.raises(ValueError, match="not finite"):
        regression_metrics([1.0, 2.0], [1.0, np.inf])


def test_tariff_baseline_recovers_a_linear_tariff():
    rng = np.random.default_rng(0)
    trips = pd.DataFrame({"trip_miles": rng.uniform(0, 20, 500), "trip_seconds": rng.uniform(60, 3600, 500)})
    trips["fare"] = 3.25 + 1.8 * trips.trip_miles + 0.004 * trips.trip_seconds
    baseline = TariffBaseline.fit(trips)
    assert baseline.intercept == pytest.approx(3.25)
    assert baseline.per_mile == pytest.approx(1.8)
    assert baseline.per_second == pytest.approx(0.004)
    assert np.allclose(baseline.predict(trips), trips.fare)


def _m(rmse, clean=None):
    """Holdout metrics with RMSE `rmse` on all rows and `clean` (default: the same) on the clean ones."""
    clean = rmse if clean is None else clean
    return HoldoutMetrics(Metrics(rmse=rmse, mae=rmse / 2, r2=0.9, rows=100), Metrics(rmse=clean, mae=clean / 2, r2=0.9, rows=90))


def test_holdout_metrics_judge_all_rows_and_the_clean_ones():
    m = HoldoutMetrics.of([10.0, 10.0, 10.0, 10.0], [10.0, 10.0, 10.0, 14.0], [True, True, True, False])
    assert m.all.rmse == pytest.approx(2.0) and m.clean.rmse == 0.0 and m.clean.rows == 3
    assert m.as_dict()["rmse"] == m.all.rmse and m.as_dict()["clean"]["rows"] == 3


def test_candidate_not_clearly_better_than_baseline_is_not_registered():
    decision = decide_promotion(_m(2.5), _m(4.0), None, 0.6)
    assert not decision.register and decision.alias is None
    assert any("0.625x" in r for r in decision.reasons)


def test_candidate_must_beat_the_baseline_on_the_clean_trips_too():
    decision = decide_promotion(_m(2.0, clean=2.5), _m(6.0, clean=4.0), None, 0.6)
    assert not decision.register
    assert any("clean trips" in r and "0.625x" in r for r in decision.reasons)


def test_first_good_candidate_becomes_champion():
    decision = decide_promotion(_m(2.0), _m(4.0), None, 0.6)
    assert decision.register and decision.promote_to_champion and decision.alias == "champion"


def test_champion_moves_only_when_candidate_is_no_worse():
    better = decide_promotion(_m(2.0), _m(4.0), _m(2.1), 0.6)
    worse = decide_promotion(_m(2.2), _m(4.0), _m(2.1), 0.6)
    assert better.alias == "champion" and better.promote_to_champion
    assert worse.alias == "challenger" and worse.register and not worse.promote_to_champion


def test_a_better_whole_holdout_may_cost_at_most_five_percent_on_clean_trips():
    within = decide_promotion(_m(2.0, clean=1.55), _m(4.0), _m(2.5, clean=1.5), 0.6)
    beyond = decide_promotion(_m(2.0, clean=1.6), _m(4.0), _m(2.5, clean=1.5), 0.6)
    assert within.alias == "champion"
    assert beyond.alias == "challenger" and "clean trips" in beyond.reasons[-1]


def test_reasons_show_enough_digits_to_tell_two_rmses_apart():
    # "candidate RMSE 2.032 > champion's 2.032" read as a contradiction.
    worse = decide_promotion(_m(2.03214), _m(4.0), _m(2.03208), 0.6)
    assert "candidate RMSE 2.03214 > champion's 2.03208" in worse.reasons[-1]
    assert distinct_figures(2.0, 2.0) == ("2.000", "2.000")
    assert distinct_figures(1.5, 2.25) == ("1.500", "2.250")

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chicago_taxi.core import monitoring_schema as C
from chicago_taxi.core.monitoring_config import ABSettings
from chicago_taxi.monitoring.ab import PairedComparison, decide_promotion, paired_bootstrap, paired_frame

AB = ABSettings(min_labelled_pairs=200, confidence=0.95, bootstrap_resamples=500, seed=0)


def _compare(labels, champion, challenger, ab: ABSettings = AB, seed: int | None = None) -> PairedComparison:
    return paired_bootstrap(
        labels,
        champion,
        challenger,
        resamples=ab.bootstrap_resamples,
        confidence=ab.confidence,
        seed=ab.seed if seed is None else seed,
        champion_version="3",
        challenger_version="4",
    )


def _models(n: int, champion_noise: float, challenger_noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.uniform(5, 60, n)
    return labels, labels + rng.normal(0, champion_noise, n), labels + rng.normal(0, challenger_noise, n)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=300),
    data_seed=st.integers(min_value=0, max_value=2**32 - 1),
    bootstrap_seed=st.integers(min_value=0, max_value=2**32 - 1),
    resamples=st.integers(min_value=1, max_value=200),
    confidence=st.floats(min_value=0.5, max_value=0.99),
)
def test_a_challenger_never_better_on_any_trip_is_never_promoted(n, data_seed, bootstrap_seed, resamples, confidence):
    rng = np.random.default_rng(data_seed)
    labels = rng.uniform(3.25, 300, n)
    a = labels + rng.normal(0, rng.uniform(0, 5), n)
    b = labels + rng.normal(0, rng.uniform(0, 5), n)
    # Per trip, the challenger gets whichever prediction is further from the fare (ties included).
    worse = np.abs(a - labels) >= np.abs(b - labels)
    champion, challenger = np.where(worse, b, a), np.where(worse, a, b)
    ab = ABSettings(min_labelled_pairs=1, confidence=confidence, bootstrap_resamples=resamples)
    comparison = paired_bootstrap(labels, champion, challenger, resamples=resamples, confidence=confidence, seed=bootstrap_seed)
    assert comparison.diff >= 0 and comparison.low >= 0 and comparison.high >= 0
    assert not decide_promotion(comparison, ab).promote


def test_a_clearly_better_challenger_with_enough_pairs_is_promoted():
    comparison = _compare(*_models(1000, champion_noise=3.0, challenger_noise=1.5))
    verdict = decide_promotion(comparison, AB)
    assert verdict.promote and verdict.comparison is comparison
    assert comparison.challenger_rmse < comparison.champion_rmse
    assert comparison.low <= comparison.diff <= comparison.high < 0
    assert re.fullmatch(
        r"challenger RMSE \d+\.\d\d vs champion \d+\.\d\d on 1000 labelled trips; 95% interval of the difference \[-\d+\.\d\d, -\d+\.\d\d\] lies below 0: promote",
        verdict.reason,
    ), verdict.reason


def test_the_same_challenger_on_too_few_pairs_is_not_promoted():
    comparison = _compare(*_models(150, champion_noise=3.0, challenger_noise=1.5))
    assert comparison.high < 0  # the evidence points the right way, there is just not enough of it
    verdict = decide_promotion(comparison, AB)
    assert not verdict.promote
    assert verdict.reason.startswith("only 150 labelled trips scored by both, 200 needed")


def test_a_tie_is_not_promoted():
    labels, champion, _ = _models(1000, champion_noise=2.0, challenger_noise=2.0)
    comparison = _compare(labels, champion, champion.copy())
    assert comparison.diff == 0 and comparison.low == 0 and comparison.high == 0
    verdict = decide_promotion(comparison, AB)
    assert not verdict.promote and verdict.reason.endswith("includes 0: keep the champion")


def test_a_worse_challenger_is_not_promoted():
    verdict = decide_promotion(_compare(*_models(1000, champion_noise=1.5, challenger_noise=3.0)), AB)
    assert not verdict.promote and "lies above 0" in verdict.reason


def test_no_comparison_is_not_promoted():
    verdict = decide_promotion(None, AB)
    assert not verdict.promote and verdict.comparison is None and "200 needed" in verdict.reason
    assert verdict.as_dict() == {"promote": False, "reason": verdict.reason, "comparison": None}


def test_bootstrap_is_seeded_and_its_interval_brackets_the_difference():
    data = _models(500, champion_noise=2.0, challenger_noise=1.8)
    first, again, other = _compare(*data), _compare(*data), _compare(*data, seed=1)
    assert first == again
    assert (first.low, first.high) != (other.low, other.high)
    assert first.low < first.diff < first.high
    labels, champion, challenger = data
    assert first.champion_rmse == pytest.approx(np.sqrt(np.mean((champion - labels) ** 2)))
    assert first.diff == pytest.approx(first.challenger_rmse - first.champion_rmse)
    assert first.pairs == 500 and first.resamples == AB.bootstrap_resamples and first.confidence == 0.95
    assert first.as_dict()["champion_version"] == "3" and first.as_dict()["diff"] == round(first.diff, 4)


def test_bootstrap_interval_matches_a_plain_loop():
    # The vectorised, chunked bootstrap is the textbook one: same draws, same interval.
    labels, champion, challenger = _models(300, champion_noise=2.0, challenger_noise=1.8, seed=3)
    comparison = paired_bootstrap(labels, champion, challenger, resamples=400, confidence=0.9, seed=11)
    rng = np.random.default_rng(11)
    draws = rng.integers(0, 300, size=(400, 300), dtype=np.int32)
    diffs = [np.sqrt(np.mean((challenger[d] - labels[d]) ** 2)) - np.sqrt(np.mean((champion[d] - labels[d]) ** 2)) for d in draws]
    assert comparison.low == pytest.approx(np.quantile(diffs, 0.05))
    assert comparison.high == pytest.approx(np.quantile(diffs, 0.95))


def test_bootstrap_refuses_mismatched_or_empty_input():
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap([1.0, 2.0], [1.0], [1.0, 2.0], resamples=10, confidence=0.95, seed=0)
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap([], [], [], resamples=10, confidence=0.95, seed=0)


def test_bootstrap_at_production_size_finds_a_small_real_improvement():
    # 2,000 resamples of 20,000 pairs (its speed is benchmarks/bench_monitoring.py's business).
    labels, champion, challenger = _models(20_000, champion_noise=2.3, challenger_noise=2.1)
    comparison = paired_bootstrap(labels, champion, challenger, resamples=2000, confidence=0.95, seed=0)
    assert comparison.high < 0


def _log_rows(trip_ids, version, variant, predictions, labels) -> pd.DataFrame:
    return pd.DataFrame(
        {
            C.TRIP_ID: trip_ids,
            C.MODEL_NAME: "chicago_taxi_fare",
            C.MODEL_VERSION: version,
            C.VARIANT: variant,
            C.PREDICTION: predictions,
            C.LABEL: labels,
        }
    )


def test_paired_frame_keeps_labelled_trips_both_versions_scored():
    frame = pd.concat(
        [
            _log_rows(["a", "b", "c", "d", "e", "f"], "3", "champion", [10.0, 20.0, 30.0, 40.0, 50.0, 60.0], [11.0, 21.0, np.nan, 0.0, 51.0, 61.0]),
            _log_rows(["a", "b", "c", "d", "e"], "4", "shadow", [12.0, 22.0, 32.0, 42.0, 52.0], [11.0, np.nan, np.nan, 0.0, 51.0]),
            # Trip e answered by the challenger in a split, then replayed: the last prediction counts.
            _log_rows(["e", "e"], "4", "challenger", [53.0, 54.0], [51.0, 51.0]),
            # Another version's prediction of trip a is not the challenger's.
            _log_rows(["a"], "5", "shadow", [99.0], [11.0]),
            _log_rows([None], "4", "shadow", [1.0], [11.0]),
        ],
        ignore_index=True,
    )
    pairs = paired_frame(frame, "3", "4")
    assert list(pairs.columns) == [C.TRIP_ID, C.LABEL, "champion", "challenger"]
    # c has no fare yet, d's $0 is not a price, f was not scored by the challenger.
    assert pairs[C.TRIP_ID].tolist() == ["a", "b", "e"]
    # b's fare came with the champion's row only: it is the trip's fare all the same.
    assert pairs[C.LABEL].tolist() == [11.0, 21.0, 51.0]
    assert pairs["champion"].tolist() == [10.0, 20.0, 50.0]
    assert pairs["challenger"].tolist() == [12.0, 22.0, 54.0]


def test_paired_frame_without_common_trips_is_empty():
    frame = pd.concat([_log_rows(["a"], "3", "champion", [10.0], [11.0]), _log_rows(["b"], "4", "shadow", [10.0], [11.0])])
    assert paired_frame(frame, "3", "4").empty

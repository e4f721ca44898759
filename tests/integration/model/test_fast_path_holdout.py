"""The fast scoring path on the session's trained models and real holdout: every transformed
value, repair and fare as the saved transform graph and Keras model give them (to
`fast_path.TOLERANCE`), for both model variants the training run trained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chicago_taxi.core import schema
from chicago_taxi.model import fast_path
from chicago_taxi.model.predictor import FarePredictor
from chicago_taxi.model.transform import raw_frame_to_features


@pytest.fixture(scope="module", params=["with_store", "without_store"])
def trained(request, first_run) -> tuple[FarePredictor, pd.DataFrame]:
    transform_dir = Path(first_run["transform"]["transform_dir"])
    train = first_run["train"]
    model_path = train["model_path"] if request.param == "with_store" else train["without_store"]["model_path"]
    holdout = pd.read_parquet(transform_dir.parents[1] / "splits" / "holdout_raw.parquet")
    return FarePredictor(transform_dir, model_path), holdout


def test_the_trained_model_is_scored_in_numpy(trained):
    predictor, _ = trained
    assert predictor.fast is not None, predictor.scorer_note


def test_the_whole_holdout_scores_as_the_graph_does(trained):
    predictor, holdout = trained
    assert len(holdout) > 2000
    features = raw_frame_to_features(holdout)
    graph = predictor.graph.transform(holdout)
    ours = predictor.fast.transform(features)
    for name, expected in graph.items():
        assert fast_path.max_difference(ours[name], expected) == 0, name
    fares, repairs = predictor.fast(features)
    graph_fares, graph_repairs = predictor._graph_scores(features)
    assert fast_path.max_difference(fares, graph_fares) == 0
    np.testing.assert_array_equal(repairs, graph_repairs)
    assert (graph_repairs != 0).sum() > 100  # the real holdout's dirt went through both paths
    assert np.abs(fares - graph_fares).max() < 1e-3  # and in dollars, not only relatively
    assert set(np.flatnonzero(graph_repairs)) == set(np.flatnonzero(repairs))
    assert schema.REPAIRS_OUTPUT in ours

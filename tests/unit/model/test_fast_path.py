"""The numpy scoring path (`model.fast_path`) against the saved graph it stands in for.

The session's tf.Transform run (`transform_run`, built to hold every kind of dirt) supplies the
graph; the network is `model.network.build_model` with its initial random weights, saved and
loaded as training saves it. The trained model on the real holdout: tests/integration/model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chicago_taxi.core import schema
from chicago_taxi.model import fast_path
from chicago_taxi.model.network import build_model, feature_set, with_fare_range
from chicago_taxi.model.predictor import FarePredictor
from chicago_taxi.model.transform import TransformGraph, raw_frame_to_features, raw_records_to_features
from fixtures.env import DATA_CSV


@pytest.fixture(scope="module", params=[True, False], ids=["with_store", "without_store"])
def predictor(request, transform_run, tmp_path_factory) -> FarePredictor:
    import keras

    keras.utils.set_random_seed(7)
    path = tmp_path_factory.mktemp("model") / "fare_model.keras"
    model = build_model(feature_set(request.param))
    last = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    kernel, _ = last.get_weights()
    last.set_weights([kernel * 20, np.array([20.0], dtype=np.float32)])  # untrained fares around $20, not clipped at 0
    with_fare_range(model, 150.0).save(path)
    return FarePredictor(transform_run[2].transform_dir, path)


def all_rows(transform_run) -> pd.DataFrame:
    train, holdout, _ = transform_run
    return pd.concat([train, holdout, fast_path.probe_trips()], ignore_index=True)


def test_the_numpy_path_is_chosen_and_checked_at_load(predictor):
    assert predictor.fast is not None, predictor.scorer_note
    assert "checked against the graph" in predictor.scorer_note


def test_every_transformed_value_equals_the_graph(predictor, transform_run):
    rows = all_rows(transform_run)
    graph = TransformGraph(transform_run[2].transform_dir).transform(rows)
    ours = predictor.fast.transform(raw_frame_to_features(rows))
    assert set(graph) <= set(ours)
    for name, expected in graph.items():
        if name == schema.REPAIRS_OUTPUT or expected.dtype.kind in "iu":
            np.testing.assert_array_equal(ours[name], expected, err_msg=name)
        else:
            assert fast_path.max_difference(ours[name], expected) == 0, name


def test_fares_and_repairs_equal_the_graph(predictor, transform_run):
    features = raw_frame_to_features(all_rows(transform_run))
    fares, repairs = predictor.fast(features)
    graph_fares, graph_repairs = predictor._graph_scores(features)
    assert fast_path.max_difference(fares, graph_fares) == 0
    np.testing.assert_array_equal(repairs, graph_repairs)
    assert (repairs != 0).any() and len(np.unique(graph_fares)) > 10  # the comparison has something to compare


def test_names_outside_the_vocabulary_get_the_graphs_hash_bucket(predictor, transform_run):
    frame = pd.concat([fast_path.probe_trips()] * 3, ignore_index=True)
    frame["company"] = [f"Unheard Of Cab {i}" for i in range(len(frame))]
    frame["payment_type"] = [f"Token {i}" if i % 2 else " Cash " for i in range(len(frame))]
    graph = TransformGraph(transform_run[2].transform_dir).transform(frame)
    ours = predictor.fast.transform(raw_frame_to_features(frame))
    for name in ("company_xf", "payment_type_xf"):
        np.testing.assert_array_equal(ours[name], graph[name])
    assert len(set(graph["company_xf"])) == schema.OOV_BUCKETS  # every name outside: both OOV buckets used


def test_a_fast_path_that_drifts_from_the_graph_is_switched_off(transform_run, predictor, monkeypatch):
    real = fast_path.SavedAnalyzers.z_score
    monkeypatch.setattr(fast_path.SavedAnalyzers, "z_score", lambda self, x, name: real(self, x, name) + np.float32(0.01))
    drifted = FarePredictor(transform_run[2].transform_dir, predictor.model_path)
    assert drifted.fast is None and "differs from the graph" in drifted.scorer_note
    # ... and it still answers, through the graph.
    fares, _ = drifted.predict_with_repairs(fast_path.probe_trips())
    assert np.isfinite(fares).all()


def test_a_graph_without_recorded_parameters_is_scored_by_tensorflow(transform_run, predictor, monkeypatch):
    monkeypatch.setattr(TransformGraph, "params", lambda self: {})
    old = FarePredictor(transform_run[2].transform_dir, predictor.model_path)
    assert old.fast is None and "before its parameters were recorded" in old.scorer_note
    monkeypatch.setenv("TAXI_SCORER", "graph")
    assert FarePredictor(transform_run[2].transform_dir, predictor.model_path).fast is None


def test_a_trip_scored_alone_gets_the_fare_it_gets_in_a_batch(predictor, transform_run):
    """The service answers a batch of 100 exactly as 100 single requests. BLAS multiplies a
    batch in another order than one row, so the network runs in float64, where that order moves
    a fare by about 1e-16 rather than across a cent (it did once in float32: 18.21 against 18.22)."""
    rows = all_rows(transform_run).head(300)
    batch, _ = predictor.fast(raw_frame_to_features(rows))
    alone = np.concatenate([predictor.fast(raw_frame_to_features(rows.iloc[[i]]))[0] for i in range(len(rows))])
    assert batch.dtype == np.float64
    np.testing.assert_allclose(alone, batch, rtol=1e-12, atol=1e-12)


def test_the_numpy_network_equals_keras(predictor):
    from chicago_taxi.model.network import kinds_of_model, model_inputs

    kinds = kinds_of_model(predictor.model)
    rng = np.random.default_rng(3)
    transformed = {}
    for name, (kind, size) in kinds.items():
        if kind == "categorical":
            transformed[name] = rng.integers(0, size, 500)
        elif kind == "scale":
            transformed[name] = rng.uniform(*schema.FARE_SCALE_RANGE, 500).astype(np.float32)
        else:
            transformed[name] = rng.normal(0, 2, 500).astype(np.float32)
    inputs = model_inputs(transformed, kinds)
    expected = predictor.model(inputs, training=False).numpy().reshape(-1)
    assert fast_path.max_difference(predictor.fast.network(inputs), expected) == 0


def test_request_dicts_give_the_same_graph_inputs_as_a_frame():
    trips = pd.read_csv(DATA_CSV, nrows=3000)
    records = [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in trips.to_dict("records")]
    records[0].update(trip_miles="12.5", company="  ", payment_type=None)
    records[1].update(trip_seconds="soon", pickup_latitude=float("nan"))
    frame = pd.DataFrame.from_records(records)
    expected, got = raw_frame_to_features(frame), raw_records_to_features(records)
    assert set(got) == set(expected)
    for name, values in expected.items():
        if values.dtype == object:
            assert got[name].tolist() == values.tolist(), name
        else:
            np.testing.assert_array_equal(got[name], values, err_msg=name)


def test_the_oov_hash_is_tensorflows_without_tensorflow():
    import tensorflow as tf

    rng = np.random.default_rng(11)
    tokens = [b"", b"x", "Café Taxi ñ".encode(), b"Flash Cab" * 20] + [rng.bytes(int(n)) for n in rng.integers(1, 200, 400)]
    for buckets in (1, 2, 97, 1000):
        expected = tf.strings.to_hash_bucket_fast(tokens, buckets).numpy().tolist()
        assert [fast_path.oov_bucket(t, buckets) for t in tokens] == expected


def bundle_of(predictor, tmp_path):
    directory = predictor.export_numpy_scorer(tmp_path / "numpy_scorer")
    assert directory is not None and (directory / fast_path.BUNDLE_ARRAYS).exists()
    return directory


def test_the_bundle_scores_like_the_graph_and_loads_without_tensorflow(predictor, transform_run, tmp_path):
    import json
    import subprocess
    import sys

    directory = bundle_of(predictor, tmp_path)
    loaded = FarePredictor(transform_run[2].transform_dir, predictor.model_path, directory)
    assert loaded.fast is not None and "bundle" in loaded.scorer_note
    assert loaded._graph is None and loaded._model is None  # neither the graph nor Keras was loaded
    rows = all_rows(transform_run)
    rows = pd.concat([rows, rows.head(50).assign(company=[f"Unheard Of Cab {i}" for i in range(50)])], ignore_index=True)
    features = raw_frame_to_features(rows)
    fares, repairs = loaded.fast(features)
    graph_fares, graph_repairs = predictor._graph_scores(features)
    assert fast_path.max_difference(fares, graph_fares) == 0
    np.testing.assert_array_equal(repairs, graph_repairs)
    # In a fresh process: the bundle loads and scores with no TensorFlow, Keras or tf.Transform imported.
    code = (
        "import sys, json\n"
        "from chicago_taxi.model.predictor import FarePredictor\n"
        "from chicago_taxi.model.fast_path import probe_trips\n"
        f"p = FarePredictor({str(transform_run[2].transform_dir)!r}, {str(predictor.model_path)!r}, {str(directory)!r})\n"
        "fares = p.predict(probe_trips())\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'tensorflow_transform', 'tf_keras'})\n"
        "print(json.dumps({'note': p.scorer_note, 'fares': fares.tolist(), 'heavy': heavy}))\n"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    assert out["heavy"] == [], out
    np.testing.assert_allclose(out["fares"], predictor.predict(fast_path.probe_trips()), rtol=0, atol=1e-9)


def test_a_bundle_that_disagrees_with_the_graphs_outputs_is_refused(predictor, transform_run, tmp_path):
    directory = bundle_of(predictor, tmp_path)
    with np.load(directory / fast_path.BUNDLE_ARRAYS) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["probe/fares"] = arrays["probe/fares"] + 0.01  # as if the graph had scored otherwise
    np.savez(directory / fast_path.BUNDLE_ARRAYS, **arrays)
    with pytest.raises(fast_path.Unavailable, match="differs from the graph"):
        fast_path.FastScorer.load(directory)
    # The predictor then builds and checks the numpy path from the graph itself, and says why.
    fallback = FarePredictor(transform_run[2].transform_dir, predictor.model_path, directory)
    assert fallback.fast is not None and fallback.scorer_note == "numpy (checked against the graph at load)"


def test_a_missing_or_foreign_bundle_is_refused_with_its_reason(predictor, tmp_path):
    with pytest.raises(fast_path.Unavailable, match="no readable scorer bundle"):
        fast_path.FastScorer.load(tmp_path / "nothing")
    directory = bundle_of(predictor, tmp_path)
    spec = directory / fast_path.BUNDLE_SPEC
    spec.write_text(spec.read_text().replace(f'"format": {fast_path.BUNDLE_FORMAT}', '"format": 99'))
    with pytest.raises(fast_path.Unavailable, match="format 99"):
        fast_path.FastScorer.load(directory)

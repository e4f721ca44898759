"""preprocessing_fn on a tiny dataset, through Beam, and the saved graph at serving time."""

import numpy as np
import pandas as pd
import pytest

from chicago_taxi.core import schema
from chicago_taxi.core.schema import transformed_feature_kinds
from chicago_taxi.model.transform import MissingColumnError, TransformGraph, analyze_and_transform, raw_frame_to_features, split_by_time


@pytest.fixture(scope="module")
def tiny(clean_trips, tmp_path_factory):
    frame = clean_trips.head(200).copy()
    frame.loc[0, ["pickup_latitude", "pickup_longitude"]] = np.nan  # missing coordinates
    frame.loc[1, "company"] = None  # missing company
    train, holdout = split_by_time(frame, 0.2)
    out = tmp_path_factory.mktemp("tft")
    train.to_parquet(out / "train_raw.parquet", index=False)
    holdout.to_parquet(out / "holdout_raw.parquet", index=False)
    result = analyze_and_transform(out / "train_raw.parquet", out / "holdout_raw.parquet", out / "transform")
    return train, holdout, result


def test_split_by_time_puts_the_latest_trips_in_the_holdout(clean_trips):
    train, holdout = split_by_time(clean_trips, 0.2)
    assert train[schema.TIMESTAMP].max() < holdout[schema.TIMESTAMP].min()
    assert len(holdout) == pytest.approx(0.2 * len(clean_trips), rel=0.05)


def test_transform_outputs_every_declared_feature_and_row(tiny):
    train, holdout, result = tiny
    out = pd.read_parquet(result.train_path)
    assert set(out.columns) == set(transformed_feature_kinds())
    assert len(out) == len(train) and result.holdout_rows == len(holdout)


def test_dense_features_are_z_scored_on_the_training_split(tiny):
    _, _, result = tiny
    out = pd.read_parquet(result.train_path)
    for key in schema.DENSE_FLOAT_FEATURES:
        col = out[schema.transformed_name(key)]
        assert col.mean() == pytest.approx(0, abs=1e-4)
        assert col.std(ddof=0) == pytest.approx(1, abs=1e-3)


def test_categorical_ids_stay_inside_their_id_space(tiny):
    _, _, result = tiny
    out = pd.concat([pd.read_parquet(result.train_path), pd.read_parquet(result.holdout_path)])
    for name, (kind, size) in transformed_feature_kinds().items():
        if kind == "categorical":
            assert out[name].between(0, size - 1).all(), name


def test_missing_coordinates_get_their_own_bucket_and_flag(tiny):
    train, _, result = tiny
    graph = TransformGraph(result.transform_dir)
    row = train[train.pickup_latitude.isna()]
    out = graph.transform(row)
    assert out["pickup_latitude_xf"][0] == schema.BUCKET_COUNT
    assert out["coordinates_missing_xf"][0] == 1.0


def test_serving_graph_reproduces_the_beam_output_exactly(tiny):
    # Training/serving skew guard: the saved graph on raw rows equals what Beam wrote.
    _, holdout, result = tiny
    beam_out = pd.read_parquet(result.holdout_path)
    served = TransformGraph(result.transform_dir).transform(holdout)
    for name in beam_out.columns:
        np.testing.assert_allclose(np.sort(served[name]), np.sort(beam_out[name].to_numpy()), rtol=1e-5, err_msg=name)


def test_missing_optional_columns_are_filled_like_training(tiny):
    train, _, result = tiny
    graph = TransformGraph(result.transform_dir)
    required_only = train[list(schema.required_scoring_columns())].head(5)
    out = graph.transform(required_only)
    assert out["company_xf"].shape == (5,)
    assert (out["coordinates_missing_xf"] == 1.0).all()


def test_a_frame_without_a_required_column_is_refused():
    with pytest.raises(MissingColumnError, match="trip_seconds"):
        raw_frame_to_features(pd.DataFrame({"trip_miles": [1.0]}))


def test_the_fare_index_becomes_a_clipped_multiplier_relative_to_training(clean_trips, tmp_path):
    train, holdout = split_by_time(clean_trips.head(80), 0.25)
    rng = np.random.default_rng(0)
    train = train.assign(city_fare_index_14d=rng.uniform(0.9, 1.1, len(train)))
    train.loc[train.index[0], "city_fare_index_14d"] = np.nan  # missing values do not count
    mean = train.city_fare_index_14d.mean()
    holdout = holdout.head(4).assign(city_fare_index_14d=[mean * 1.1, mean * 2, np.nan, mean * 0.5])
    train.to_parquet(tmp_path / "train.parquet", index=False)
    holdout.to_parquet(tmp_path / "holdout.parquet", index=False)
    result = analyze_and_transform(tmp_path / "train.parquet", tmp_path / "holdout.parquet", tmp_path / "transform")
    scale = TransformGraph(result.transform_dir).transform(holdout)["city_fare_index_14d_xf"]
    clip_low, clip_high = schema.FARE_SCALE_RANGE
    np.testing.assert_allclose(scale, [1.1, clip_high, 1.0, clip_low], rtol=1e-5)
    assert transformed_feature_kinds()["city_fare_index_14d_xf"] == ("scale", 1)

"""preprocessing_fn on a tiny dataset, through Beam, and the saved graph at serving time.

One Beam run serves every test here (`transform_run`, tests/fixtures/transform.py: its input is
built to cover them all, and it runs in a subprocess beside the other tests).
"""

import numpy as np
import pandas as pd
import pytest

from chicago_taxi.core import schema
from chicago_taxi.core.schema import transformed_feature_kinds
from chicago_taxi.model.transform import MissingColumnError, TransformGraph, raw_frame_to_features, split_by_time
from fixtures.transform import FARE_INDEX


@pytest.fixture(scope="module")
def graph(transform_run) -> TransformGraph:
    """The saved graph of the session's one tf.Transform run, loaded as serving loads it."""
    return TransformGraph(transform_run[2].transform_dir)


def test_split_by_time_puts_the_latest_trips_in_the_holdout(clean_trips):
    train, holdout = split_by_time(clean_trips, 0.2)
    assert train[schema.TIMESTAMP].max() < holdout[schema.TIMESTAMP].min()
    assert len(holdout) == pytest.approx(0.2 * len(clean_trips), rel=0.05)


def test_transform_outputs_every_declared_feature_and_row(transform_run):
    train, holdout, result = transform_run
    out = pd.read_parquet(result.train_path)
    assert set(out.columns) == set(transformed_feature_kinds()) | {schema.REPAIRS_OUTPUT}
    assert len(out) == len(train) and result.holdout_rows == len(holdout)


def test_dense_features_are_z_scored_on_the_training_split(transform_run):
    _, _, result = transform_run
    out = pd.read_parquet(result.train_path)
    for key in schema.DENSE_FLOAT_FEATURES:
        col = out[schema.transformed_name(key)]
        assert col.mean() == pytest.approx(0, abs=1e-4)
        assert col.std(ddof=0) == pytest.approx(1, abs=1e-3)


def test_categorical_ids_stay_inside_their_id_space(transform_run):
    _, _, result = transform_run
    out = pd.concat([pd.read_parquet(result.train_path), pd.read_parquet(result.holdout_path)])
    for name, (kind, size) in transformed_feature_kinds().items():
        if kind == "categorical":
            assert out[name].between(0, size - 1).all(), name


def test_missing_coordinates_get_their_own_bucket_and_flag(transform_run, graph):
    train, _, _ = transform_run
    row = train[train.pickup_latitude.isna()]
    out = graph.transform(row)
    assert out["pickup_latitude_xf"][0] == schema.BUCKET_COUNT
    assert out["coordinates_missing_xf"][0] == 1.0


def beam_rows_in_holdout_order(beam_out: pd.DataFrame, holdout: pd.DataFrame) -> pd.DataFrame:
    """Beam's holdout output, row i being what Beam wrote for holdout row i (matched by the fare
    index the fixture made a row id: its rank in the raw holdout is its rank in Beam's output)."""
    ids = beam_out[schema.transformed_name(FARE_INDEX)]
    assert holdout[FARE_INDEX].is_unique and ids.is_unique and len(beam_out) == len(holdout)
    beam_by_rank = beam_out.iloc[np.argsort(ids.to_numpy(), kind="stable")].reset_index(drop=True)
    rank_of_holdout_row = np.argsort(np.argsort(holdout[FARE_INDEX].to_numpy(), kind="stable"), kind="stable")
    return beam_by_rank.iloc[rank_of_holdout_row].reset_index(drop=True)


def assert_same_rows(served: dict[str, np.ndarray], beam_rows: pd.DataFrame) -> None:
    assert set(served) == set(beam_rows.columns)
    for name in beam_rows.columns:
        np.testing.assert_allclose(served[name], beam_rows[name].to_numpy(), rtol=1e-5, err_msg=name)


def test_serving_graph_reproduces_the_beam_output_exactly(transform_run, graph):
    # Training/serving skew guard: the saved graph applied to each raw holdout row equals what
    # Beam wrote for that same row, feature by feature.
    _, holdout, result = transform_run
    beam_rows = beam_rows_in_holdout_order(pd.read_parquet(result.holdout_path), holdout)
    served = graph.transform(holdout)
    assert_same_rows(served, beam_rows)
    # The check can fail: the right values given to the wrong trips do not pass.
    with pytest.raises(AssertionError):
        assert_same_rows({name: values[::-1] for name, values in served.items()}, beam_rows)


def test_missing_optional_columns_are_filled_like_training(transform_run, graph):
    train, _, _ = transform_run
    required_only = train[list(schema.required_scoring_columns())].head(5)
    out = graph.transform(required_only)
    assert out["company_xf"].shape == (5,)
    assert (out["coordinates_missing_xf"] == 1.0).all()


def test_a_frame_without_a_required_column_is_refused():
    with pytest.raises(MissingColumnError, match="trip_seconds"):
        raw_frame_to_features(pd.DataFrame({"trip_miles": [1.0]}))


def test_the_fare_index_becomes_a_clipped_multiplier_relative_to_training(transform_run, graph):
    train, holdout, _ = transform_run
    assert train[FARE_INDEX].isna().sum() == 1  # missing values do not count
    mean = train[FARE_INDEX].mean()
    trips = holdout.head(4).assign(**{FARE_INDEX: [mean * 1.1, mean * 2, np.nan, mean * 0.5]})
    scale = graph.transform(trips)["city_fare_index_14d_xf"]
    clip_low, clip_high = schema.FARE_SCALE_RANGE
    np.testing.assert_allclose(scale, [1.1, clip_high, 1.0, clip_low], rtol=1e-5)
    assert transformed_feature_kinds()["city_fare_index_14d_xf"] == ("scale", 1)


def _codes(mask) -> list[str]:
    return [r.code for r in schema.repairs_of(mask)]


def test_each_kind_of_real_dirt_is_repaired_and_named(transform_run, graph):
    _, holdout, _ = transform_run
    base = holdout.iloc[[0]].assign(trip_miles=3.0, trip_seconds=900.0, pickup_community_area=8.0)
    variants = {
        "clean": {},
        "zero seconds": {"trip_seconds": 0.0},
        "missing seconds": {"trip_seconds": np.nan},
        "zero miles": {"trip_miles": 0.0},
        "odometer glitch": {"trip_miles": 115.0, "trip_seconds": 1260.0},
        "far beyond training": {"trip_miles": 400.0, "trip_seconds": 30000.0},
        "pickup in the lake": {"pickup_latitude": 41.9, "pickup_longitude": -86.0},
        "area 99": {"pickup_community_area": 99.0},
    }
    trips = pd.concat([base.assign(**changes) for changes in variants.values()], ignore_index=True)
    out = graph.transform(trips)
    codes = dict(zip(variants, (_codes(m) for m in out[schema.REPAIRS_OUTPUT])))
    assert codes == {
        "clean": [],
        "zero seconds": ["seconds_not_recorded"],
        "missing seconds": ["seconds_not_recorded"],
        "zero miles": ["miles_not_recorded"],
        "odometer glitch": ["implausible_speed"],
        "far beyond training": ["miles_clipped", "seconds_clipped"],
        "pickup in the lake": ["pickup_outside_chicago"],
        "area 99": ["pickup_area_unknown"],
    }
    row = {name: i for i, name in enumerate(variants)}
    # A distance that cannot be trusted is priced like no distance at all (27% of real trips).
    for feature in ("trip_miles_xf", "log_trip_miles_xf", "miles_not_recorded_xf"):
        assert out[feature][row["odometer glitch"]] == out[feature][row["zero miles"]], feature
    assert out["miles_not_recorded_xf"][row["odometer glitch"]] == 1.0
    assert out["seconds_not_recorded_xf"][row["zero seconds"]] == 1.0
    assert out["trip_seconds_xf"][row["zero seconds"]] == out["trip_seconds_xf"][row["missing seconds"]]
    # Clipped at the training split's upper quantile: no value beyond what the network saw.
    train_out = pd.read_parquet(transform_run[2].train_path)
    assert out["trip_miles_xf"][row["far beyond training"]] <= train_out["trip_miles_xf"].max() + 1e-6
    assert out["trip_seconds_xf"][row["far beyond training"]] <= train_out["trip_seconds_xf"].max() + 1e-6
    # An outside point is a missing point; an unknown area is area 0.
    assert out["pickup_latitude_xf"][row["pickup in the lake"]] == schema.BUCKET_COUNT
    assert out["coordinates_missing_xf"][row["pickup in the lake"]] == 1.0
    assert out["pickup_community_area_xf"][row["area 99"]] == 0

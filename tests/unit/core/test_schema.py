"""The schema module is the single source of truth: check it is consistent with itself and the data."""

from chicago_taxi.core import schema


def test_fare_and_tips_are_never_model_inputs():
    # Leakage: both are known only after the trip ends.
    assert not schema.FORBIDDEN_INPUTS & set(schema.MODEL_INPUT_COLUMNS)
    assert schema.LABEL in schema.FORBIDDEN_INPUTS


def test_every_model_input_is_a_declared_column():
    assert set(schema.MODEL_INPUT_COLUMNS) <= set(schema.RAW_COLUMN_NAMES)


def test_declared_columns_match_the_vendored_csv_header(trips):
    assert list(trips.columns) == list(schema.RAW_COLUMN_NAMES)


def test_required_and_optional_scoring_columns_partition_the_inputs():
    required, optional = set(schema.required_scoring_columns()), set(schema.optional_scoring_columns())
    assert required | optional == set(schema.MODEL_INPUTS_WITH_STORE)
    assert not required & optional
    assert {"trip_miles", "trip_seconds", "trip_start_hour"} <= required


def test_transformed_name_uses_the_xf_suffix():
    assert schema.transformed_name("trip_miles") == "trip_miles_xf"


def test_pandas_types_accept_ints_read_with_nulls_as_floats(trips):
    for col in schema.COLUMNS:
        assert str(trips[col.name].dtype) in col.pandas_types, col.name


def test_every_store_feature_is_typed_and_its_view_shares_one_window():
    # One source of truth: dtype, aggregation and transform come from the spec, never from a name.
    for view in schema.STORE_VIEWS:
        assert view.entity in schema.ENTITIES_BY_NAME, view.name
        for spec in view.specs:
            assert spec.dtype in ("int64", "float32") and spec.aggregation in schema.AGGREGATIONS, spec
            assert spec.transform in ("z_score", "log_z_score", "scale") and spec.window_minutes == view.window_minutes
    assert schema.SCALE_FEATURES == ("city_fare_index_14d",)
    assert schema.FEATURE_SPECS["city_fare_index_14d"].default == 1.0  # an absent index changes no price


def test_a_view_whose_features_disagree_on_the_window_is_refused():
    import pytest

    with pytest.raises(ValueError, match="share one window"):
        schema.StoreView("v", "company", 30, (schema.FeatureSpec("a", "int64", "count", 60), schema.FeatureSpec("b", "float32", "mean_fare", 30)))


def test_coordinates_fill_at_the_middle_of_their_range():
    assert schema.range_midpoint("pickup_latitude") == sum(schema.CHICAGO_LAT) / 2
    assert schema.range_midpoint("dropoff_longitude") == sum(schema.CHICAGO_LON) / 2

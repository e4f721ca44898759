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

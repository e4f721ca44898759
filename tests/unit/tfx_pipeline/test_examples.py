"""The TFX pipeline's inputs from the host: the curated schema is the committed file, derived
from the schema module; the tf.Examples carry exactly what the transform graph is fed."""

from __future__ import annotations

import numpy as np
import pytest

from chicago_taxi.core import schema
from chicago_taxi.model.transform import raw_frame_to_features
from chicago_taxi.tfx_pipeline.examples import curated_schema, example_features, schema_text, write_examples
from chicago_taxi.tfx_pipeline.layout import COMPONENTS, SCHEMA_RELATIVE
from fixtures.env import REPO_ROOT


def test_the_committed_schema_is_the_generated_one():
    committed = (REPO_ROOT / SCHEMA_RELATIVE).read_text()
    assert committed == schema_text(), "expectations/tfx/schema.pbtxt is stale: run `make suites`"


def test_the_schema_names_every_transform_input_and_the_label_once():
    curated = curated_schema()
    names = [f.name for f in curated.feature]
    assert sorted(names) == sorted((*schema.MODEL_INPUTS_WITH_STORE, schema.LABEL))
    fare = next(f for f in curated.feature if f.name == schema.LABEL)
    assert (fare.float_domain.min, fare.float_domain.max) == (schema.MIN_FARE, schema.MAX_FARE)
    assert all(f.presence.min_fraction == 1.0 for f in curated.feature)


def test_the_examples_carry_what_the_transform_graph_is_fed(trips, tmp_path):
    import tensorflow as tf

    from chicago_taxi.model.transform import raw_feature_spec

    # Dirt included: missing miles, seconds, company, and a NaN store feature.
    frame = trips.head(300).copy()
    frame.loc[frame.index[:5], "trip_miles"] = np.nan
    frame.loc[frame.index[5:10], "company"] = None
    frame[schema.STORE_FEATURES[0]] = np.where(np.arange(len(frame)) % 3 == 0, np.nan, 1.5)
    train, holdout = frame.iloc[:200], frame.iloc[200:]
    assert write_examples(train, holdout, tmp_path) == {"train": 200, "eval": 100}
    spec = raw_feature_spec() | {schema.LABEL: tf.io.FixedLenFeature([], tf.float32)}
    records = list(tf.data.TFRecordDataset(str(tmp_path / "train" / "trips.tfrecord")).batch(1000))
    parsed = {k: v.numpy() for k, v in tf.io.parse_example(records[0], spec).items()}
    expected = example_features(train)
    assert set(parsed) == set(expected)
    for name, values in raw_frame_to_features(train).items():
        if values.dtype == object:
            assert list(parsed[name]) == list(values), name
        else:
            np.testing.assert_array_equal(parsed[name], values, err_msg=name)  # NaN where the frame had none
    np.testing.assert_allclose(parsed[schema.LABEL], train[schema.LABEL].to_numpy(dtype=np.float32))


def test_the_components_are_the_pipelines_in_order():
    assert COMPONENTS[0] == "example_gen" and COMPONENTS[-1] == "pusher"
    assert COMPONENTS.index("example_validator") < COMPONENTS.index("transform") < COMPONENTS.index("trainer") < COMPONENTS.index("evaluator")


def test_an_unknown_component_is_refused():
    from chicago_taxi.tfx_pipeline.steps import component_step

    assert component_step("trainer").__name__ == "trainer"
    with pytest.raises(ValueError, match="no TFX component 'train'"):
        component_step("train")


def test_taxi_tfx_files_its_runs_under_its_own_namespace():
    from chicago_taxi.orchestration.tasks import run_key

    assert run_key("manual__2017-01-01T00:00:00+00:00", "taxi_tfx") == "taxi_tfx__manual__2017-01-01T00:00:00+00:00"
    assert run_key("scheduled__x", None) == "scheduled__x"

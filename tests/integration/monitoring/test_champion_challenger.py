"""Champion vs challenger on the real broker and MLflow registry: both models score the same
trips (shadow), monitoring compares them on the labelled ones with a paired bootstrap, and only
an interval that favours the challenger moves the `champion` alias, which the service picks up.

The challenger of the first test is deliberately worse: the session champion with every output
multiplied by 1.3 (a Keras Rescaling layer on the same network and transform graph).
"""

from __future__ import annotations

import pytest

from chicago_taxi.core import monitoring_schema as C
from fixtures.monitoring import monitoring_rig
from fixtures.streams import environ
from fixtures.training import MODEL, mlflow_client

WORSE_BY = 1.3


def _register_worse_copy(env: dict, version: str, tmp) -> str:
    """Register the version's model with its outputs scaled by WORSE_BY, alias `challenger`."""
    import keras
    import mlflow
    import yaml

    from chicago_taxi.core.config import load_settings
    from chicago_taxi.model.predictor import MODEL_ARTIFACT, TRANSFORM_ARTIFACT
    from chicago_taxi.training import registry
    from chicago_taxi.training.reference import ARTIFACT

    with environ(env):
        settings = load_settings()
        registry.configure(settings.mlflow_tracking_uri, settings.mlflow_artifacts_dir)
        local = mlflow.artifacts.download_artifacts(f"models:/{MODEL}/{version}", dst_path=str(tmp / "champion"))
        spec = yaml.safe_load(open(f"{local}/MLmodel"))["flavors"]["python_function"]["artifacts"]
        run_id = mlflow.MlflowClient().get_model_version(MODEL, version).run_id
        reference = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=ARTIFACT, dst_path=str(tmp / "reference"))
        network = keras.models.load_model(f"{local}/{spec[MODEL_ARTIFACT]['path']}")
        worse = keras.Model(network.inputs, keras.layers.Rescaling(WORSE_BY, name="deliberately_worse")(network.output))
        worse.save(tmp / "worse.keras")
        result = registry.log_run(
            model_name=MODEL,
            params={"worse_copy_of": version, "output_scale": WORSE_BY},
            metrics={},
            artifact_files=[],
            transform_dir=f"{local}/{spec[TRANSFORM_ARTIFACT]['path']}",
            reference_dir=reference,
            model_path=str(tmp / "worse.keras"),
            register=True,
            alias="challenger",
            input_example=None,
            tags={"airflow_run_id": "test-deliberately-worse"},
        )
    return result.version


@pytest.fixture(scope="module")
def versions(stack, stream_env, tmp_path_factory):
    """(good, worse) registered versions; the aliases are put back as found at the end."""
    client = mlflow_client(stack)
    good = str(client.get_model_version_by_alias(MODEL, "champion").version)
    worse = _register_worse_copy(stream_env[0], good, tmp_path_factory.mktemp("worse"))
    try:
        yield good, worse
    finally:
        client.set_registered_model_alias(MODEL, "champion", good)
        try:
            client.delete_registered_model_alias(MODEL, "challenger")
        except Exception:
            pass


def _service(env):
    from chicago_taxi.serving.fare_service import FareService

    with environ(env):
        return FareService()


def _compare(rig, start, end) -> dict:
    from chicago_taxi.monitoring.steps import compare_variants

    with environ(rig.env):
        return compare_variants(start, end)


def test_a_worse_challenger_is_never_promoted(stream_env, versions, tmp_path_factory, stack):
    good, worse = versions
    rig = monitoring_rig(stream_env, tmp_path_factory.mktemp("ab-worse"), TAXI_AB_MODE="shadow")
    service = _service(rig.env)
    assert service.health()["ab"]["active"], service.health()["ab"]
    start, _, _ = rig.phase(600, scorer=service.predict)
    _, end, _ = rig.phase(200, scorer=service.predict)
    rig.land()
    result = _compare(rig, start, end)
    comparison = result["comparison"]
    assert result["promoted"] is False and comparison["pairs"] >= 600, result
    assert comparison["challenger_version"] == worse and comparison["low"] > 0, comparison
    assert str(mlflow_client(stack).get_model_version_by_alias(MODEL, "champion").version) == good

    from chicago_taxi.monitoring.steps import as_utc
    from chicago_taxi.monitoring.store import window_frame

    with environ(rig.env):
        from chicago_taxi.core.config import load_settings

        frame = window_frame(load_settings(), as_utc(start), as_utc(end))
    per_trip = frame.groupby(C.TRIP_ID)[C.MODEL_VERSION].agg(set)
    assert (per_trip == {good, worse}).all(), "both models must score every trip"
    assert set(frame.loc[frame[C.MODEL_VERSION] == worse, C.VARIANT]) == {"shadow"}


def test_a_better_challenger_is_promoted_once_enough_labels_exist_and_the_service_follows(stream_env, versions, tmp_path_factory, stack):
    good, worse = versions
    client = mlflow_client(stack)
    client.set_registered_model_alias(MODEL, "champion", worse)
    client.set_registered_model_alias(MODEL, "challenger", good)
    rig = monitoring_rig(stream_env, tmp_path_factory.mktemp("ab-better"), TAXI_AB_MODE="shadow")
    service = _service(rig.env)
    assert service.model.version == worse

    start, end, _ = rig.phase(80, scorer=service.predict)
    rig.land()
    early = _compare(rig, start, end)
    assert early["promoted"] is False and "needed" in early["reason"], early

    _, end, _ = rig.phase(400, scorer=service.predict)
    rig.land()
    result = _compare(rig, start, end)
    assert result["promoted"] is True and result["comparison"]["high"] < 0, result
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == good
    with environ(rig.env):
        reloaded = service.reload()
    assert reloaded["changed"] and service.model.version == good

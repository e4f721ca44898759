"""MLflow tracking and the model registry: log a run, register the pyfunc, move aliases.

Uses registry aliases (`champion`, `challenger`), never the deprecated stages.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.model.predictor import MODEL_ARTIFACT, NUMPY_SCORER_ARTIFACT, TRANSFORM_ARTIFACT
from chicago_taxi.training.evaluate import HoldoutMetrics
from chicago_taxi.training.reference import ARTIFACT as REFERENCE_ARTIFACT

log = logging.getLogger(__name__)
EXPERIMENT = "chicago_taxi_fare"
# The whole chicago_taxi package travels with the model (code_paths), so the pyfunc imports it as here.
PACKAGE_DIR = Path(__file__).resolve().parents[1]


@dataclass
class Registration:
    run_id: str
    model_name: str
    version: str | None
    alias: str | None
    model_uri: str | None

    def as_dict(self) -> dict:
        return asdict(self)


# Request-header plugins MLflow need not load here. feast registers one (entry point
# `feast.infra.data_sources.mlflow.auth:FeastMLflowHeaderProvider`): MLflow loads every such plugin
# on its first HTTP request, and loading it imports the whole feast package (~8 s of a cold
# start, in the stream's scorer and the prediction service, which use no Feast). It only adds an
# Authorization header inside Feast's own MLflow data-source calls (a token in its context
# variable), which this project never makes.
UNUSED_HEADER_PLUGINS = ("feast.",)


def _without_unused_header_plugins() -> None:
    """Build MLflow's request-header registry (once per process) without `UNUSED_HEADER_PLUGINS`,
    unless feast is imported already (then its plugin costs nothing and stays)."""
    if "mlflow.tracking.request_header.registry" in sys.modules or "feast" in sys.modules:
        return
    import mlflow.utils.plugins as plugins

    every = plugins.get_entry_points

    def wanted(group: str):
        found = every(group)
        if group != "mlflow.request_header_provider":
            return found
        return [e for e in found if not e.value.startswith(UNUSED_HEADER_PLUGINS)]

    plugins.get_entry_points = wanted
    try:
        import mlflow.tracking.request_header.registry  # noqa: F401  (registers the plugins at import)
    finally:
        plugins.get_entry_points = every


def use_tracking_uri(tracking_uri: str) -> None:
    """Point MLflow's tracking and registry at `tracking_uri` (and skip the unused plugins)."""
    import mlflow

    _without_unused_header_plugins()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)


def configure(tracking_uri: str, artifacts_dir: Path) -> None:
    import mlflow

    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    use_tracking_uri(tracking_uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        if tracking_uri.startswith(("http://", "https://")):
            # A tracking server keeps the artifacts (`mlflow-artifacts:/`, uploaded over HTTP).
            mlflow.create_experiment(EXPERIMENT)
        else:
            artifacts_dir.mkdir(parents=True, exist_ok=True)
            mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts_dir.as_uri() if "://" not in str(artifacts_dir) else str(artifacts_dir))
    mlflow.set_experiment(EXPERIMENT)


def champion_version(model_name: str):
    """The model version holding the `champion` alias, or None when there is none yet."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(model_name, "champion")
    except MlflowException:
        return None


def champion_metrics(model_name: str, holdout: pd.DataFrame, label: str, clean) -> tuple[HoldoutMetrics | None, str | None]:
    """The current champion scored on this run's holdout (same rows, and the same clean ones, as the candidate)."""
    import mlflow

    version = champion_version(model_name)
    if version is None:
        return None, None
    model = mlflow.pyfunc.load_model(f"models:/{model_name}@champion")
    return HoldoutMetrics.of(holdout[label], model.predict(holdout), clean), str(version.version)


def log_run(
    *,
    model_name: str,
    params: dict,
    metrics: dict[str, float],
    artifact_files: list[str],
    transform_dir: str | None,
    reference_dir: str | None = None,
    model_path: str | None,
    scorer_dir: str | None = None,
    register: bool,
    alias: str | None,
    input_example: pd.DataFrame | None,
    tags: dict[str, str],
) -> Registration:
    """One MLflow run with everything the evaluation produced; registers the model if asked."""
    import mlflow
    from mlflow import MlflowClient

    with mlflow.start_run(run_name=tags.get("airflow_run_id")) as run:
        mlflow.set_tags(tags)
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        for path in artifact_files:
            mlflow.log_artifact(path, artifact_path="evaluation")
        if transform_dir:
            mlflow.log_artifacts(transform_dir, artifact_path="transform_graph")
        if reference_dir and Path(reference_dir).exists():
            # The training reference monitoring compares live traffic with (monitoring.reference).
            mlflow.log_artifacts(reference_dir, artifact_path=REFERENCE_ARTIFACT)
        if not register:
            return Registration(run.info.run_id, model_name, None, None, None)
        info = mlflow.pyfunc.log_model(
            name="model",
            # Logged as code, not a pickle: the class lives in this package (shipped via code_paths).
            python_model=str(PACKAGE_DIR / "model" / "pyfunc_entry.py"),
            artifacts={TRANSFORM_ARTIFACT: transform_dir, MODEL_ARTIFACT: model_path} | ({NUMPY_SCORER_ARTIFACT: scorer_dir} if scorer_dir else {}),
            code_paths=[str(PACKAGE_DIR)],
            input_example=input_example,
            signature=model_signature(),
            registered_model_name=model_name,
            pip_requirements=_pip_requirements(),
        )
    version = str(info.registered_model_version)
    MlflowClient().set_registered_model_alias(model_name, alias, version)
    log.info("registered %s version %s with alias %s", model_name, version, alias)
    return Registration(run.info.run_id, model_name, version, alias, f"models:/{model_name}/{version}")


def model_signature():
    """Raw trip columns in (Chicago names; only request-time ones required), fares out.

    Numbers are typed Any: MLflow refuses int64 -> double ("unsafe") and ints with nulls arrive
    as doubles, so the predictor coerces them itself. Columns not listed are dropped.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    columns = [
        ColSpec(
            "string" if schema.COLUMNS_BY_NAME[name].kind == "string" else AnyType(), name, required=schema.COLUMNS_BY_NAME[name].required_for_scoring
        )
        for name in schema.MODEL_INPUT_COLUMNS
    ] + [ColSpec(AnyType(), name, required=False) for name in schema.STORE_FEATURES]
    return ModelSignature(inputs=Schema(columns), outputs=Schema([ColSpec("double", "fare")]))


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    packages = ["mlflow", "tensorflow", "tensorflow-transform", "keras", "pandas", "numpy", "pyarrow", "protobuf", "cityhash"]
    return [f"{p}=={version(p)}" for p in packages]

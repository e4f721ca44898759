"""The training reference: what a model saw, saved beside it, so monitoring can tell drift.

The training run writes `monitoring_reference/` into its MLflow run (and so beside the
registered version): `reference.parquet`, the training split's monitored columns with the
model's own predictions and the fares (a seeded sample of at most REFERENCE_ROWS trips), and
`reference.json`, the model's holdout figures (the yardstick of the quality rules).
Monitoring fetches it by model version and keeps a copy under `<monitoring_dir>/references/`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from chicago_taxi.core import monitoring_schema as C
from chicago_taxi.core import schema
from chicago_taxi.core.config import Settings

log = logging.getLogger(__name__)

ARTIFACT = "monitoring_reference"
FRAME = "reference.parquet"
META = "reference.json"
REFERENCE_ROWS = 10_000


def build_reference(train: pd.DataFrame, predictions, repairs, holdout: dict, out_dir: Path, seed: int = 0) -> dict:
    """Write the reference of a model trained on `train` (raw trips with store features) that
    predicts `predictions` on them with `repairs` (the transform's repair bitmask per trip);
    `holdout` is the model's `HoldoutMetrics.as_dict()`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({name: train[name].to_numpy() if name in train else np.nan for name in C.MONITORED})
    frame[C.PREDICTION] = np.asarray(predictions, dtype=float)
    frame[C.LABEL] = train[schema.LABEL].astype(float).to_numpy()
    frame[C.INPUT_WARNINGS] = [",".join(r.code for r in schema.repairs_of(int(mask))) for mask in np.asarray(repairs)]
    sampled = len(frame) > REFERENCE_ROWS
    if sampled:
        frame = frame.sample(REFERENCE_ROWS, random_state=seed).sort_index()
    frame.reset_index(drop=True).to_parquet(out_dir / FRAME, index=False)
    meta = {"rows": len(frame), "training_rows": len(train), "sampled": sampled, "holdout": holdout, "columns": list(C.MONITORED)}
    (out_dir / META).write_text(json.dumps(meta, indent=2))
    return meta


def load_reference(settings: Settings, model_name: str, version: str) -> tuple[pd.DataFrame, dict] | None:
    """The reference of a registered version (cached locally), or None when its training run
    saved none (versions trained before monitoring existed)."""
    cache = settings.monitoring_dir / "references" / model_name / str(version)
    if not (cache / META).exists():
        import mlflow
        from mlflow import MlflowClient

        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        mlflow.set_registry_uri(settings.mlflow_tracking_uri)
        run_id = MlflowClient().get_model_version(model_name, str(version)).run_id
        try:
            local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=ARTIFACT, dst_path=str(cache.parent / f".{version}.tmp")))
        except Exception as exc:  # MlflowException / OSError: the run has no such artifact
            log.warning("%s version %s has no %s artifact (%s): drift and quality ratios are not judged for it", model_name, version, ARTIFACT, exc)
            return None
        cache.parent.mkdir(parents=True, exist_ok=True)
        if cache.exists():
            import shutil

            shutil.rmtree(cache)
        local.replace(cache)
    return pd.read_parquet(cache / FRAME), json.loads((cache / META).read_text())

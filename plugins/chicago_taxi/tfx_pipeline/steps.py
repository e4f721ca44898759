"""Host side: the taxi_tfx DAG's own steps, as plain functions (extract, the raw GX gate and the
point-in-time join are the training DAG's steps, reused).

- `prepare_examples`: the rows the raw gate passed, with their store features, split by time as
  the native path splits them, as tf.Examples; the curated schema of this commit; the blessing
  bound (tariff baseline and champion on the same eval rows); the run's config for the runtime.
- one step per TFX component (`component_step`): runs the component in the TFX runtime
  (scripts/tfx_runtime.sh run ...), streams its log, records its ML Metadata ids. Anomalies
  found by ExampleValidator fail the run like a GX gate (QualityGateError, no retry).
- `register_tfx_model`: holds the pushed model to the native path's gates (the same candidate,
  tariff-baseline and champion rules on the same holdout, through the same `FarePredictor`), and
  registers it in MLflow as a challenger (champion when there is none yet), tagged with its ML
  Metadata ids so `lineage` can answer where it came from.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.core.config import Settings, load_settings
from chicago_taxi.core.runs import run_paths, run_report
from chicago_taxi.tfx_pipeline.layout import CHALLENGER_TOLERANCE, COMPONENTS, PIPELINE_NAME, SCHEMA_RELATIVE, TfxPaths

log = logging.getLogger(__name__)
ANOMALIES_EXIT = 3  # chicago_taxi.tfx_pipeline.pipeline's exit code for anomalies
TAG_PREFIX = "tfx."


def _paths(settings: Settings, run_id: str) -> tuple[dict[str, Path], TfxPaths, str]:
    paths = run_paths(settings, run_id)
    return paths, TfxPaths(settings.tfx_home), paths["root"].name


# ---------------------------------------------------------------- examples, schema, bound
def blessing_bound(train: pd.DataFrame, holdout: pd.DataFrame, settings: Settings) -> tuple[float, list[str]]:
    """The largest RMSE on the eval split TFMA may bless: the tariff baseline's times the allowed
    ratio, and (when there is a champion) the champion's plus CHALLENGER_TOLERANCE, on the same rows."""
    from chicago_taxi.training import registry
    from chicago_taxi.training.evaluate import TariffBaseline, regression_metrics

    metered = train[(train["trip_miles"] > 0) & (train["trip_seconds"] > 0)]
    tariff = regression_metrics(holdout[schema.LABEL], TariffBaseline.fit(metered).predict(holdout)).rmse
    bounds = {f"tariff baseline RMSE {tariff:.3f} x {settings.max_rmse_ratio_to_baseline}": tariff * settings.max_rmse_ratio_to_baseline}
    registry.configure(settings.mlflow_tracking_uri, settings.mlflow_artifacts_dir)
    champion, version = registry.champion_metrics(settings.model_name, holdout, schema.LABEL, np.ones(len(holdout), dtype=bool))
    if champion is not None:
        bounds[f"champion (version {version}) RMSE {champion.all.rmse:.3f} + {CHALLENGER_TOLERANCE:.0%}"] = champion.all.rmse * (
            1 + CHALLENGER_TOLERANCE
        )
    reason = min(bounds, key=bounds.get)
    return bounds[reason], [f"blessed at RMSE <= {bounds[reason]:.3f}: the lower of " + "; ".join(bounds)]


def prepare_examples(run_id: str, settings: Settings | None = None) -> dict:
    from chicago_taxi.model.transform import split_by_time
    from chicago_taxi.tfx_pipeline.examples import write_examples

    settings = settings or load_settings()
    paths, tfx, rid = _paths(settings, run_id)
    trips = pd.read_parquet(paths["root"] / "trips_with_store_features.parquet")
    train, holdout = split_by_time(trips, settings.holdout_fraction)
    paths["splits"].mkdir(parents=True, exist_ok=True)
    train.to_parquet(paths["splits"] / "train_raw.parquet", index=False)
    holdout.to_parquet(paths["splits"] / "holdout_raw.parquet", index=False)
    run_dir = tfx.run_dir(rid)
    shutil.rmtree(run_dir, ignore_errors=True)
    counts = write_examples(train, holdout, tfx.examples_dir(rid))
    # The curated schema of this commit, copied beside the examples (ImportSchemaGen records it).
    schema_file = run_dir / "schema.pbtxt"
    shutil.copyfile(settings.repo_root / SCHEMA_RELATIVE, schema_file)
    rmse_bound, reasons = blessing_bound(train, holdout, settings)
    for d in (tfx.pipeline_root, tfx.pushed):
        d.mkdir(parents=True, exist_ok=True)
    config = {
        "examples_dir": str(tfx.examples_dir(rid)),
        "schema_file": str(schema_file),
        "pipeline_root": str(tfx.pipeline_root),
        "metadata": str(tfx.metadata),
        "pushed": str(tfx.pushed),
        "reports_dir": str(tfx.component_report(rid, "x").parent),
        "epochs": settings.epochs,
        "seed": settings.seed,
        "mse_upper_bound": rmse_bound**2,
    }
    tfx.run_config(rid).write_text(json.dumps(config, indent=2))
    section = {
        "run_key": rid,
        "examples": counts,
        "examples_dir": config["examples_dir"],
        "schema_file": config["schema_file"],
        "holdout_raw": str(paths["splits"] / "holdout_raw.parquet"),
        "rmse_upper_bound": round(rmse_bound, 4),
        "blessing": reasons,
    }
    run_report(settings, paths).update("prepare_examples", section)
    log.info("%d training and %d eval examples for TFX; %s", counts["train"], counts["eval"], reasons[0])
    return section


# ---------------------------------------------------------------- the components, in the runtime
def run_component(run_id: str, component: str, settings: Settings | None = None) -> dict:
    from chicago_taxi.quality.gates import QualityGateError

    settings = settings or load_settings()
    paths, tfx, rid = _paths(settings, run_id)
    config = tfx.run_config(rid)
    if not config.exists():
        raise FileNotFoundError(f"{config} is missing: prepare_examples writes it before any TFX component runs")
    command = [
        str(settings.tfx_runtime_script),
        "run",
        "python",
        "-m",
        "chicago_taxi.tfx_pipeline.pipeline",
        "--config",
        str(config),
        "--component",
        component,
    ]
    env = os.environ | {"TAXI_TFX_BIND": str(settings.tfx_home)}
    log.info("TFX %s in its runtime: %s", component, " ".join(command))
    tail: deque[str] = deque(maxlen=60)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=settings.repo_root) as proc:
        for line in proc.stdout:
            tail.append(line.rstrip())
            log.info("[%s] %s", component, line.rstrip())
    report_path = tfx.component_report(rid, component)
    report = json.loads(report_path.read_text()) if report_path.exists() and proc.returncode in (0, ANOMALIES_EXIT) else None
    if proc.returncode == ANOMALIES_EXIT and report:
        found = [f"{split}: {feature}: {what}" for split, per in report["anomalies"].items() for feature, what in per.items()]
        run_report(settings, paths).update(f"tfx_{component}", {"success": False, "anomalies": report["anomalies"]})
        raise QualityGateError("ExampleValidator found anomalies against the curated schema (" + str(SCHEMA_RELATIVE) + "):\n  " + "\n  ".join(found))
    if proc.returncode != 0 or report is None:
        raise RuntimeError(f"TFX component {component} failed in its runtime (exit {proc.returncode}); last lines:\n" + "\n".join(tail))
    section = {k: v for k, v in report.items() if k != "evaluation"}
    if "evaluation" in report:
        section |= {
            "blessed": report["evaluation"]["blessed"],
            "overall": report["evaluation"]["overall"],
            "slices": len(report["evaluation"]["slices"]),
        }
    run_report(settings, paths).update(f"tfx_{component}", section)
    return section


def component_step(component: str) -> Callable[..., dict]:
    """The Airflow step for one TFX component (task id = the component's id)."""
    if component not in COMPONENTS:
        raise ValueError(f"no TFX component {component!r}; the pipeline has {', '.join(COMPONENTS)}")

    def step(run_id: str, settings: Settings | None = None) -> dict:
        return run_component(run_id, component, settings)

    step.__name__ = component
    step.__doc__ = f"TFX {component}, in the TFX runtime (earlier components from ML Metadata's cache)."
    return step


# ---------------------------------------------------------------- gates and registration
def _artifact(report: dict, key: str) -> dict:
    return report["outputs"][key][0]


def register_tfx_model(run_id: str, settings: Settings | None = None) -> dict:
    from chicago_taxi.model.network import model_filename
    from chicago_taxi.model.predictor import NUMPY_SCORER_ARTIFACT, FarePredictor
    from chicago_taxi.tfx_pipeline.trainer import KERAS_DIR
    from chicago_taxi.training import registry
    from chicago_taxi.training.evaluate import HoldoutMetrics
    from chicago_taxi.training.reference import ARTIFACT as REFERENCE_ARTIFACT
    from chicago_taxi.training.reference import build_reference
    from chicago_taxi.training.steps import judge

    settings = settings or load_settings()
    paths, tfx, rid = _paths(settings, run_id)
    report = run_report(settings, paths)
    components = {c: json.loads(tfx.component_report(rid, c).read_text()) for c in ("example_gen", "transform", "trainer", "evaluator", "pusher")}
    evaluation, pusher = components["evaluator"]["evaluation"], components["pusher"]
    transform_dir = Path(_artifact(components["transform"], "transform_graph")["uri"])
    model_path = Path(_artifact(components["trainer"], "model")["uri"]) / "Format-Serving" / KERAS_DIR / model_filename(True)
    train_raw = pd.read_parquet(paths["splits"] / "train_raw.parquet")
    holdout = pd.read_parquet(paths["splits"] / "holdout_raw.parquet")
    # The native path's gates, on the same rows, through the same predictor the service uses.
    predictor = FarePredictor(transform_dir, model_path)
    predicted, repairs = predictor.predict_with_repairs(holdout)
    clean = repairs == 0
    candidate = HoldoutMetrics.of(holdout[schema.LABEL], predicted, clean)
    # The native path's rule (training.steps.judge), on the same rows.
    train_predicted, train_repairs, _, baseline, champion, champion_version, decision = judge(
        predictor, candidate, train_raw, holdout, clean, settings
    )
    blessed = bool(evaluation["blessed"]) and bool(pusher.get("pushed"))
    reasons = list(decision.reasons)
    if not blessed:
        why = "; ".join(evaluation.get("failures") or []) or "see the evaluator's report"
        reasons.append(f"TFMA did not bless the model (eval RMSE {evaluation['overall']['rmse']}; {why}): nothing is registered")
    register = decision.register and blessed
    if register and champion is not None and decision.promote_to_champion:
        reasons.append("the TFX path registers a challenger, never replaces the champion itself: the monitoring A/B comparison decides")
    # The TFX path proposes: a challenger for the A/B comparison, champion only when there is none.
    alias = None if not register else ("challenger" if champion is not None else "champion")
    model_dir = paths["model"]
    scorer = predictor.export_numpy_scorer(model_dir / NUMPY_SCORER_ARTIFACT)
    build_reference(train_raw, train_predicted, train_repairs, candidate.as_dict(), model_dir / REFERENCE_ARTIFACT, settings.seed)
    ids = {
        "examples_artifact_id": _artifact(components["example_gen"], "examples")["id"],
        "transform_graph_artifact_id": _artifact(components["transform"], "transform_graph")["id"],
        "model_artifact_id": _artifact(components["trainer"], "model")["id"],
        "trainer_execution_id": components["trainer"]["execution_id"],
        "evaluation_artifact_id": _artifact(components["evaluator"], "evaluation")["id"],
        "pushed_model_artifact_id": _artifact(pusher, "pushed_model")["id"],
    }
    tags = {f"{TAG_PREFIX}{k}": str(v) for k, v in ids.items()} | {
        f"{TAG_PREFIX}metadata": str(tfx.metadata),
        f"{TAG_PREFIX}pipeline": PIPELINE_NAME,
        f"{TAG_PREFIX}blessed": str(blessed).lower(),
        "training_path": "tfx",
        "airflow_run_id": run_id,
        "decision": "; ".join(reasons),
    }
    metrics = {f"candidate_{k}": v for k, v in candidate.all.__dict__.items()} | {f"baseline_{k}": v for k, v in baseline.all.__dict__.items()}
    metrics |= {f"tfma_{k}": v for k, v in evaluation["overall"].items() if isinstance(v, (int, float))}
    result = registry.log_run(
        model_name=settings.model_name,
        params={"training_path": "tfx", "epochs": settings.epochs, "seed": settings.seed, "train_rows": len(train_raw), "holdout_rows": len(holdout)},
        metrics=metrics,
        artifact_files=[str(tfx.component_report(rid, "evaluator"))],
        transform_dir=str(transform_dir),
        reference_dir=str(model_dir / REFERENCE_ARTIFACT),
        model_path=str(model_path),
        scorer_dir=str(scorer) if scorer else None,
        register=register,
        alias=alias,
        input_example=holdout.drop(columns=[schema.LABEL, "tips"], errors="ignore").head(3).astype({f: "float64" for f in schema.STORE_FEATURES}),
        tags=tags,
    )
    section = result.as_dict() | {
        "blessed": blessed,
        "candidate": candidate.as_dict(),
        "baseline": baseline.as_dict(),
        "champion": (champion.as_dict() | {"version": champion_version}) if champion else None,
        "reasons": reasons,
        "mlmd": ids,
    }
    report.update("register_tfx_model", section)
    for reason in reasons:
        log.info(reason)
    return section

"""The taxi_training DAG's own steps as plain functions (extract and the gates are in `ingest` and `quality`).

Each step takes the Airflow run id, reads what earlier steps left in the run's working
directory (`Settings.run_dir`), writes its own outputs there, records its section of the run
report, and returns a small JSON-able dict (the task's XCom). Nothing here imports Airflow.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.core.config import Settings, load_settings
from chicago_taxi.core.runs import run_paths, run_report

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- 2b. feature store join
def join_store_features(run_id: str, settings: Settings | None = None) -> dict:
    """Point-in-time join of the Feast feature service onto the validated trips."""
    from chicago_taxi.features.store import historical_features

    settings = settings or load_settings()
    paths = run_paths(settings, run_id)
    clean = pd.read_parquet(paths["gate"] / "clean.parquet")
    joined = historical_features(clean, settings)
    joined.to_parquet(paths["root"] / "trips_with_store_features.parquet", index=False)
    coverage = {f: round(float(joined[f].notna().mean()), 4) for f in schema.STORE_FEATURES}
    section = {"rows": len(joined), "feature_coverage": coverage, "replay_offset_days": settings.replay_offset_days}
    run_report(settings, paths).update("join_store_features", section)
    log.info("store features joined onto %d trips; share with a value: %s", len(joined), coverage)
    return section


# ---------------------------------------------------------------- 3. transform
def transform(run_id: str, settings: Settings | None = None) -> dict:
    from chicago_taxi.model.transform import analyze_and_transform, split_by_time

    settings = settings or load_settings()
    paths = run_paths(settings, run_id)
    trips = pd.read_parquet(paths["root"] / "trips_with_store_features.parquet")
    train, holdout = split_by_time(trips, settings.holdout_fraction)
    paths["splits"].mkdir(parents=True, exist_ok=True)
    train.to_parquet(paths["splits"] / "train_raw.parquet", index=False)
    holdout.to_parquet(paths["splits"] / "holdout_raw.parquet", index=False)
    result = analyze_and_transform(paths["splits"] / "train_raw.parquet", paths["splits"] / "holdout_raw.parquet", paths["transform"])
    section = result.as_dict() | {
        "holdout_starts": datetime.fromtimestamp(int(holdout[schema.TIMESTAMP].min()), UTC).strftime("%Y-%m-%d %H:%M"),
    }
    run_report(settings, paths).update("transform", section)
    return section


# ---------------------------------------------------------------- 5. train
def train(run_id: str, settings: Settings | None = None) -> dict:
    from chicago_taxi.model.network import train_model

    settings = settings or load_settings()
    paths = run_paths(settings, run_id)
    transformed = pd.read_parquet(paths["transform"] / "train")
    labels = pd.read_parquet(paths["splits"] / "train_raw.parquet", columns=[schema.LABEL])[schema.LABEL].to_numpy()
    if len(transformed) != len(labels):
        raise ValueError(f"transformed training rows ({len(transformed)}) and labels ({len(labels)}) differ")
    # The ablation (no store features) shows what the feature store adds; evaluate picks the better.
    with_store = train_model(transformed, labels, paths["model"], settings.epochs, settings.seed, with_store=True)
    without_store = train_model(transformed, labels, paths["model"], settings.epochs, settings.seed, with_store=False)
    section = with_store.as_dict() | {"without_store": without_store.as_dict()}
    run_report(settings, paths).update("train", section)
    return section


# ---------------------------------------------------------------- 6. evaluate
def judge(predictor, candidate, train_raw: pd.DataFrame, holdout: pd.DataFrame, clean, settings: Settings) -> tuple:
    """The promotion rule for a candidate scored on `holdout` (its metrics `candidate`, its clean
    trips `clean`): the tariff baseline fitted on the training trips the predictor's transform did
    not repair, and the current champion, on the same rows. Returns the training predictions and
    repair masks (for the monitoring reference), the baseline model and metrics, the champion's
    metrics and version, and the decision. The TFX path (tfx_pipeline.steps) judges by it too."""
    from chicago_taxi.training import registry
    from chicago_taxi.training.evaluate import HoldoutMetrics, TariffBaseline, decide_promotion

    train_predicted, train_repairs = predictor.predict_with_repairs(train_raw)
    baseline_model = TariffBaseline.fit(train_raw[train_repairs == 0])
    baseline = HoldoutMetrics.of(holdout[schema.LABEL], baseline_model.predict(holdout), clean)
    registry.configure(settings.mlflow_tracking_uri, settings.mlflow_artifacts_dir)
    champion, champion_version = registry.champion_metrics(settings.model_name, holdout, schema.LABEL, clean)
    decision = decide_promotion(candidate, baseline, champion, settings.max_rmse_ratio_to_baseline)
    return train_predicted, train_repairs, baseline_model, baseline, champion, champion_version, decision


def evaluate(run_id: str, settings: Settings | None = None) -> dict:
    """The candidate, the tariff baseline and the champion on the same holdout: every trip whose
    fare is usable (dirty inputs included, as serving will meet them) and the clean ones among
    them (trips the transform graph did not repair)."""
    from chicago_taxi.model.network import model_filename
    from chicago_taxi.model.predictor import NUMPY_SCORER_ARTIFACT, FarePredictor
    from chicago_taxi.training.evaluate import HoldoutMetrics, plot_evaluation
    from chicago_taxi.training.reference import ARTIFACT as REFERENCE_ARTIFACT
    from chicago_taxi.training.reference import build_reference

    settings = settings or load_settings()
    paths = run_paths(settings, run_id)
    train_raw = pd.read_parquet(paths["splits"] / "train_raw.parquet")
    holdout = pd.read_parquet(paths["splits"] / "holdout_raw.parquet")
    # The candidate is scored through the same raw-trips path the pyfunc serves.
    variants = {}
    for with_store in (True, False):
        predictor = FarePredictor(paths["transform"] / "transform_graph", paths["model"] / model_filename(with_store))
        prediction, repairs = predictor.predict_with_repairs(holdout)
        clean = repairs == 0
        variants[with_store] = (HoldoutMetrics.of(holdout[schema.LABEL], prediction, clean), prediction)
    # The store features must earn their place: the variant without them wins a tie or better.
    chosen = True if variants[True][0].all.rmse < variants[False][0].all.rmse else False
    candidate, predicted = variants[chosen]
    # The baseline is a tariff fitted on clean training trips (as a person would fit one), then
    # judged on the same rows as the candidate.
    chosen_predictor = FarePredictor(paths["transform"] / "transform_graph", paths["model"] / model_filename(chosen))
    # The checked numpy path, saved to load without TensorFlow wherever the model is served.
    scorer_bundle = chosen_predictor.export_numpy_scorer(paths["model"] / NUMPY_SCORER_ARTIFACT)
    train_predicted, train_repairs, baseline_model, baseline, champion, champion_version, decision = judge(
        chosen_predictor, candidate, train_raw, holdout, clean, settings
    )
    plots = plot_evaluation(holdout, predicted, paths["reports"])
    # What monitoring compares live traffic with: the training split as this model saw it.
    reference = build_reference(train_raw, train_predicted, train_repairs, candidate.as_dict(), paths["model"] / REFERENCE_ARTIFACT, settings.seed)
    repaired = {r.code: int(((repairs >> bit) & 1).sum()) for bit, r in enumerate(schema.REPAIRS)}
    section = {
        "candidate": candidate.as_dict()
        | {
            "with_store_features": chosen,
            "model_file": model_filename(chosen),
            "numpy_scorer": scorer_bundle.name if scorer_bundle else None,
            "scorer": chosen_predictor.scorer_note,
        },
        "with_store_features": variants[True][0].as_dict(),
        "without_store_features": variants[False][0].as_dict(),
        "baseline": baseline.as_dict() | {"coefficients": baseline_model.__dict__},
        "champion": (champion.as_dict() | {"version": champion_version}) if champion else None,
        "rmse_ratio_to_baseline": round(candidate.all.rmse / baseline.all.rmse, 4),
        "clean_rmse_ratio_to_baseline": round(candidate.clean.rmse / baseline.clean.rmse, 4),
        "max_rmse_ratio_to_baseline": settings.max_rmse_ratio_to_baseline,
        "holdout_repairs": {"rows": len(holdout), "clean_rows": int(clean.sum()), "trips_per_repair": repaired},
        "decision": decision.as_dict(),
        "plots": plots,
        "monitoring_reference": {k: reference[k] for k in ("rows", "training_rows", "sampled")},
    }
    run_report(settings, paths).update("evaluate", section)
    for reason in decision.reasons:
        log.info(reason)
    return section


# ---------------------------------------------------------------- 7. register
def register(run_id: str, settings: Settings | None = None) -> dict:
    from chicago_taxi.training import registry
    from chicago_taxi.training.reference import ARTIFACT as REFERENCE_ARTIFACT

    settings = settings or load_settings()
    paths = run_paths(settings, run_id)
    report = run_report(settings, paths)
    sections = report.read()
    evaluation = sections["evaluate"]
    decision = evaluation["decision"]
    metrics = {k: evaluation[k] for k in ("rmse_ratio_to_baseline", "clean_rmse_ratio_to_baseline") if k in evaluation}
    for prefix, key in (
        ("candidate", "candidate"),
        ("with_store", "with_store_features"),
        ("without_store", "without_store_features"),
        ("baseline", "baseline"),
        ("champion", "champion"),
    ):
        if evaluation[key]:
            metrics |= {f"{prefix}_{k}": evaluation[key][k] for k in ("rmse", "mae", "r2")}
            # The same figures on the clean holdout trips (no input repaired).
            metrics |= {f"{prefix}_clean_{k}": evaluation[key]["clean"][k] for k in ("rmse", "mae", "r2") if "clean" in evaluation[key]}
    params = {
        "rows_extracted": sections["extract"]["rows"],
        "rows_quarantined": sections["validate_raw"]["quarantined_rows"],
        "train_rows": sections["transform"]["train_rows"],
        "holdout_rows": sections["transform"]["holdout_rows"],
        "holdout_starts": sections["transform"]["holdout_starts"],
        "epochs_run": sections["train"]["epochs_run"],
        "lookback_days": settings.lookback_days,
        "seed": settings.seed,
        "store_features": evaluation["candidate"]["with_store_features"],
        "replay_offset_days": settings.replay_offset_days,
    }
    artifacts = evaluation["plots"] + [str(p) for p in sorted(paths["gate"].glob("*.json"))]
    holdout = pd.read_parquet(paths["splits"] / "holdout_raw.parquet")
    registry.configure(settings.mlflow_tracking_uri, settings.mlflow_artifacts_dir)
    result = registry.log_run(
        model_name=settings.model_name,
        params=params,
        metrics=metrics,
        artifact_files=artifacts,
        transform_dir=str(paths["transform"] / "transform_graph"),
        reference_dir=str(paths["model"] / REFERENCE_ARTIFACT),
        model_path=str(paths["model"] / evaluation["candidate"]["model_file"]),
        scorer_dir=str(paths["model"] / evaluation["candidate"]["numpy_scorer"]) if evaluation["candidate"].get("numpy_scorer") else None,
        register=decision["register"],
        alias=decision["alias"],
        input_example=holdout.drop(columns=[schema.LABEL, "tips"]).head(3).astype({f: "float64" for f in schema.STORE_FEATURES}),
        tags={"airflow_run_id": run_id, "decision": "; ".join(decision["reasons"])},
    )
    section = result.as_dict() | {"reasons": decision["reasons"]}
    report.update("register", section)
    return section

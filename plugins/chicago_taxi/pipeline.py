"""The training pipeline's steps as plain functions: one per task of the `taxi_training` DAG.

Each step takes the Airflow run id, reads what earlier steps left in the run's working
directory (`Settings.run_dir`), writes its own outputs there, records its section of the run
report, and returns a small JSON-able dict (the task's XCom). Nothing here imports Airflow.
"""
from __future__ import annotations

import json
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from chicago_taxi import schema
from chicago_taxi.config import Settings, load_settings
from chicago_taxi.report import RunReport

log = logging.getLogger(__name__)


class ExtractError(ValueError):
    """The source cannot be windowed: its file or its timestamp column is unusable."""


def _paths(settings: Settings, run_id: str) -> dict[str, Path]:
    root = settings.run_dir(run_id)
    return {
        "root": root,
        "raw": root / "raw",
        "gate": root / "gates",
        "splits": root / "splits",
        "transform": root / "transform",
        "model": root / "model",
        "evaluation": root / "evaluation",
        "reports": settings.reports_dir / root.name,
    }


def _report(settings: Settings, paths: dict[str, Path]) -> RunReport:
    return RunReport(paths["root"] / "report.json", settings.logs_dir / "runs" / f"{paths['root'].name}.json")


def _epoch_of_wall_clock(moment: datetime) -> int:
    # Trip timestamps are Chicago wall-clock time stored as if it were UTC; compare the
    # interval's wall-clock reading the same way, without converting time zones.
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return int(moment.replace(tzinfo=timezone.utc).timestamp())


def read_raw_zone(raw_dir: Path) -> pd.DataFrame:
    parts = sorted(raw_dir.glob("year_month=*/trips.parquet"))
    if not parts:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


# ---------------------------------------------------------------- 1. extract
def extract(run_id: str, data_interval_end: datetime, settings: Settings | None = None) -> dict:
    """Trips up to `data_interval_end` (and within the lookback) into Parquet partitions by month."""
    settings = settings or load_settings()
    paths = _paths(settings, run_id)
    if not settings.source_csv.exists():
        raise ExtractError(f"source file not found: {settings.source_csv}")
    trips = pd.read_csv(settings.source_csv)
    if schema.TIMESTAMP not in trips.columns:
        raise ExtractError(f"{settings.source_csv} has no {schema.TIMESTAMP!r} column, so trips cannot be windowed; columns: {list(trips.columns)}")
    stamps = pd.to_numeric(trips[schema.TIMESTAMP], errors="coerce")
    if stamps.isna().any():
        bad = trips.loc[stamps.isna(), schema.TIMESTAMP].head(3).tolist()
        raise ExtractError(f"{int(stamps.isna().sum())} rows have a non-numeric {schema.TIMESTAMP} (e.g. {bad}); expected epoch seconds")
    end = _epoch_of_wall_clock(data_interval_end)
    keep = stamps < end
    if settings.lookback_days is not None:
        keep &= stamps >= end - settings.lookback_days * 86400
    window = trips[keep]
    months = pd.to_datetime(stamps[keep], unit="s").dt.strftime("%Y-%m")
    shutil.rmtree(paths["raw"], ignore_errors=True)
    for month, part in window.groupby(months.values):
        target = paths["raw"] / f"year_month={month}"
        target.mkdir(parents=True, exist_ok=True)
        part.to_parquet(target / "trips.parquet", index=False)
    section = {
        "source": str(settings.source_csv),
        "source_rows": len(trips),
        "rows": len(window),
        "partitions": int(months.nunique()),
        "window_end_epoch": end,
        "lookback_days": settings.lookback_days,
        "raw_zone": str(paths["raw"]),
    }
    if window.empty:
        raise ExtractError(f"no trips before {data_interval_end.isoformat()} (lookback {settings.lookback_days} days) in {settings.source_csv}")
    _report(settings, paths).update("extract", section)
    log.info("extracted %d of %d trips into %d monthly partitions", len(window), len(trips), section["partitions"])
    return section


# ---------------------------------------------------------------- 2. gate 1
def validate_raw(run_id: str, settings: Settings | None = None) -> dict:
    from chicago_taxi.validation import QualityGateError, validate_raw_trips

    settings = settings or load_settings()
    paths = _paths(settings, run_id)
    report = _report(settings, paths)
    try:
        result = validate_raw_trips(read_raw_zone(paths["raw"]), paths["gate"], settings.expectations_dir, paths["reports"], settings.max_bad_row_share)
    except QualityGateError as exc:
        gate = json.loads((paths["gate"] / "validate_raw.json").read_text())
        report.update("validate_raw", _gate_section(gate) | {"error": str(exc)})
        raise
    section = _gate_section(result.as_dict())
    report.update("validate_raw", section)
    return section


def _gate_section(gate: dict) -> dict:
    failed = {o["name"]: o["unexpected_count"] for o in gate["outcomes"] if not o["success"]}
    warned = {o["name"]: o["unexpected_count"] for o in gate["outcomes"] if o["severity"] == "warn" and o["unexpected_count"]}
    return {
        "success": gate["success"],
        "rows": gate["row_count"],
        "passed_rows": gate["passed_rows"],
        "quarantined_rows": gate["quarantined_rows"],
        "bad_row_share": gate["bad_row_share"],
        "failed_expectations": failed,
        "warnings": warned,
        "blocking_failures": gate["blocking_failures"],
        "quarantine": gate.get("quarantine_path"),
        "data_docs": gate.get("data_docs"),
    }


# ---------------------------------------------------------------- 2b. feature store join
def join_store_features(run_id: str, settings: Settings | None = None) -> dict:
    """Point-in-time join of the Feast feature service onto the validated trips."""
    from chicago_taxi.features import historical_features

    settings = settings or load_settings()
    paths = _paths(settings, run_id)
    clean = pd.read_parquet(paths["gate"] / "clean.parquet")
    joined = historical_features(clean, settings)
    joined.to_parquet(paths["root"] / "trips_with_store_features.parquet", index=False)
    coverage = {f: round(float(joined[f].notna().mean()), 4) for f in schema.STORE_FEATURES}
    section = {"rows": len(joined), "feature_coverage": coverage, "replay_offset_days": settings.replay_offset_days}
    _report(settings, paths).update("join_store_features", section)
    log.info("store features joined onto %d trips; share with a value: %s", len(joined), coverage)
    return section


# ---------------------------------------------------------------- 3. transform
def transform(run_id: str, settings: Settings | None = None) -> dict:
    from chicago_taxi.transform import analyze_and_transform, split_by_time

    settings = settings or load_settings()
    paths = _paths(settings, run_id)
    trips = pd.read_parquet(paths["root"] / "trips_with_store_features.parquet")
    train, holdout = split_by_time(trips, settings.holdout_fraction)
    paths["splits"].mkdir(parents=True, exist_ok=True)
    train.to_parquet(paths["splits"] / "train_raw.parquet", index=False)
    holdout.to_parquet(paths["splits"] / "holdout_raw.parquet", index=False)
    result = analyze_and_transform(paths["splits"] / "train_raw.parquet", paths["splits"] / "holdout_raw.parquet", paths["transform"])
    section = result.as_dict() | {
        "holdout_starts": datetime.fromtimestamp(int(holdout[schema.TIMESTAMP].min()), timezone.utc).strftime("%Y-%m-%d %H:%M"),
    }
    _report(settings, paths).update("transform", section)
    return section


# ---------------------------------------------------------------- 4. gate 2
def validate_transformed(run_id: str, settings: Settings | None = None) -> dict:
    import tensorflow_transform as tft

    from chicago_taxi.validation import QualityGateError, validate_transformed as run_gate

    settings = settings or load_settings()
    paths = _paths(settings, run_id)
    output = tft.TFTransformOutput(str(paths["transform"] / "transform_graph"))
    vocabulary_sizes = {key: output.vocabulary_size_by_name(key) for key in schema.VOCAB_FEATURES}
    frame = pd.concat([pd.read_parquet(paths["transform"] / "train"), pd.read_parquet(paths["transform"] / "holdout")], ignore_index=True)
    report = _report(settings, paths)
    try:
        result = run_gate(frame, vocabulary_sizes, paths["gate"], settings.expectations_dir, paths["reports"])
    except QualityGateError as exc:
        gate = json.loads((paths["gate"] / "validate_transformed.json").read_text())
        report.update("validate_transformed", _gate_section(gate) | {"error": str(exc)})
        raise
    section = _gate_section(result.as_dict()) | {"vocabulary_sizes": vocabulary_sizes}
    report.update("validate_transformed", section)
    return section


# ---------------------------------------------------------------- 5. train
def train(run_id: str, settings: Settings | None = None) -> dict:
    from chicago_taxi.train import train_model

    settings = settings or load_settings()
    paths = _paths(settings, run_id)
    transformed = pd.read_parquet(paths["transform"] / "train")
    labels = pd.read_parquet(paths["splits"] / "train_raw.parquet", columns=[schema.LABEL])[schema.LABEL].to_numpy()
    if len(transformed) != len(labels):
        raise ValueError(f"transformed training rows ({len(transformed)}) and labels ({len(labels)}) differ")
    # The ablation (no store features) shows what the feature store adds; evaluate picks the better.
    with_store = train_model(transformed, labels, paths["model"], settings.epochs, settings.seed, with_store=True)
    without_store = train_model(transformed, labels, paths["model"], settings.epochs, settings.seed, with_store=False)
    section = with_store.as_dict() | {"without_store": without_store.as_dict()}
    _report(settings, paths).update("train", section)
    return section


# ---------------------------------------------------------------- 6. evaluate
def evaluate(run_id: str, settings: Settings | None = None) -> dict:
    from chicago_taxi import registry
    from chicago_taxi.evaluate import TariffBaseline, decide_promotion, plot_evaluation, regression_metrics
    from chicago_taxi.predictor import FarePredictor
    from chicago_taxi.train import model_filename

    settings = settings or load_settings()
    paths = _paths(settings, run_id)
    train_raw = pd.read_parquet(paths["splits"] / "train_raw.parquet")
    holdout = pd.read_parquet(paths["splits"] / "holdout_raw.parquet")
    # The candidate is scored through the same raw-trips path the pyfunc serves.
    variants = {}
    for with_store in (True, False):
        predictor = FarePredictor(paths["transform"] / "transform_graph", paths["model"] / model_filename(with_store))
        prediction = predictor.predict(holdout)
        variants[with_store] = (regression_metrics(holdout[schema.LABEL], prediction), prediction)
    # The store features must earn their place: the variant without them wins a tie or better.
    chosen = True if variants[True][0].rmse < variants[False][0].rmse else False
    candidate, predicted = variants[chosen]
    baseline_model = TariffBaseline.fit(train_raw)
    baseline = regression_metrics(holdout[schema.LABEL], baseline_model.predict(holdout))
    registry.configure(settings.mlflow_tracking_uri, settings.mlflow_artifacts_dir)
    champion, champion_version = registry.champion_metrics(settings.model_name, holdout, schema.LABEL)
    decision = decide_promotion(candidate, baseline, champion, settings.max_rmse_ratio_to_baseline)
    plots = plot_evaluation(holdout, predicted, paths["reports"])
    section = {
        "candidate": candidate.as_dict() | {"with_store_features": chosen, "model_file": model_filename(chosen)},
        "with_store_features": variants[True][0].as_dict(),
        "without_store_features": variants[False][0].as_dict(),
        "baseline": baseline.as_dict() | {"coefficients": baseline_model.__dict__},
        "champion": (champion.as_dict() | {"version": champion_version}) if champion else None,
        "rmse_ratio_to_baseline": round(candidate.rmse / baseline.rmse, 4),
        "max_rmse_ratio_to_baseline": settings.max_rmse_ratio_to_baseline,
        "decision": decision.as_dict(),
        "plots": plots,
    }
    _report(settings, paths).update("evaluate", section)
    for reason in decision.reasons:
        log.info(reason)
    return section


# ---------------------------------------------------------------- 7. register
def register(run_id: str, settings: Settings | None = None) -> dict:
    from chicago_taxi import registry

    settings = settings or load_settings()
    paths = _paths(settings, run_id)
    report = _report(settings, paths)
    sections = report.read()
    evaluation = sections["evaluate"]
    decision = evaluation["decision"]
    metrics = {"rmse_ratio_to_baseline": evaluation["rmse_ratio_to_baseline"]}
    for prefix, key in (("candidate", "candidate"), ("with_store", "with_store_features"), ("without_store", "without_store_features"),
                        ("baseline", "baseline"), ("champion", "champion")):
        if evaluation[key]:
            metrics |= {f"{prefix}_{k}": evaluation[key][k] for k in ("rmse", "mae", "r2")}
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
        model_path=str(paths["model"] / evaluation["candidate"]["model_file"]),
        register=decision["register"],
        alias=decision["alias"],
        input_example=holdout.drop(columns=[schema.LABEL, "tips"]).head(3).astype({f: "float64" for f in schema.STORE_FEATURES}),
        tags={"airflow_run_id": run_id, "decision": "; ".join(decision["reasons"])},
    )
    section = result.as_dict() | {"reasons": decision["reasons"]}
    report.update("register", section)
    return section


# ---------------------------------------------------------------- 8. build the Bento
def build_bento(run_id: str, settings: Settings | None = None) -> dict:
    from chicago_taxi.serving import build_bento as build

    settings = settings or load_settings()
    paths = _paths(settings, run_id)
    report = _report(settings, paths)
    registration = report.read()["register"]
    if not registration.get("version"):
        section = {"built": False, "reason": "no model version was registered in this run"}
    else:
        tag = build(settings.repo_root, settings.model_name, registration["version"], registration["run_id"], settings.bentoml_home)
        section = {"built": True, "bento_tag": tag, "model_version": registration["version"]}
    report.update("build_bento", section)
    return section


# ---------------------------------------------------------------- taxi_features DAG
def build_offline_store(run_id: str, settings: Settings | None = None) -> dict:
    """Point-in-time aggregates of the validated trips into the Feast offline store (Parquet)."""
    from chicago_taxi.features import write_offline_store

    settings = settings or load_settings()
    paths = _paths(settings, run_id)
    written = write_offline_store(pd.read_parquet(paths["gate"] / "clean.parquet"), settings.features_dir)
    _report(settings, paths).update("build_offline_store", written)
    return written


def feast_apply(run_id: str, settings: Settings | None = None) -> dict:
    from chicago_taxi.features import apply_definitions

    settings = settings or load_settings()
    section = apply_definitions(settings)
    _report(settings, _paths(settings, run_id)).update("feast_apply", section)
    return section

"""The taxi_monitoring DAG's steps as plain functions (nothing here imports Airflow).

One window [start, end) at a time (the run's data interval, or a window given as run
parameters), always recomputed from the landed logs, so reruns and backfills give the same
window summary:

1. `land_logs`: the prediction log and the labels from Kafka into the Parquet stores (store.py).
2. `monitor_window`: the window's predictions joined with their fares; model quality per model
   version and variant; drift per feature and of the predictions against the training
   reference of the version that answered; an Evidently report (HTML) and the trend plots (PNG)
   under `<monitoring_reports_dir>`; every threshold of config/monitoring.yaml checked. Metrics go
   to MLflow (experiment `chicago_taxi_monitoring`, one run per model version, one step per
   window) and to `taxi-model-metrics`; breaches to `taxi-alerts`.
3. `retraining_due`: whether this window's breaches should schedule a retrain (the DAG's task
   then emits the `taxi_model_degraded` asset event, or skips); one event per cooldown.
4. `compare_variants`: champion vs challenger on the same labelled trips (paired bootstrap);
   promotion moves the `champion` alias, and the service and the stream pick it up.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from chicago_taxi.core import monitoring_schema as C
from chicago_taxi.core.config import Settings, load_settings
from chicago_taxi.core.jsonable import iso
from chicago_taxi.core.monitoring_config import MonitoringConfig, load_monitoring_config
from chicago_taxi.monitoring import store

log = logging.getLogger(__name__)

EXPERIMENT = "chicago_taxi_monitoring"
SUMMARY, REPORT, TRENDS = C.SUMMARY_FILE, C.REPORT_FILE, C.TRENDS_DIR
RETRAINING_STATE = "retraining.json"
METRICS_KIND = "model_quality_window"
ALERT_KIND = "model_monitoring_breach"
PROMOTION_KIND = "model_promotion"


def window_id(start: datetime) -> str:
    return start.astimezone(UTC).strftime("%Y%m%dT%H%M%S")


def as_utc(moment) -> datetime:
    """A plain UTC datetime from a datetime, a pendulum DateTime or an ISO string."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return datetime.fromtimestamp(moment.timestamp(), tz=UTC)


# ---------------------------------------------------------------- 1. land
def land_logs(settings: Settings | None = None) -> dict:
    settings = settings or load_settings()
    landed = store.land(settings)
    return {name: {k: v for k, v in result.items() if k != "files"} | {"files": len(result["files"])} for name, result in landed.items()}


# ---------------------------------------------------------------- 2. monitor one window
def _breach(rule: str, value: float, threshold: float, wid: str, report: str | None, version: str | None, feature: str | None = None) -> dict:
    alert_id = hashlib.sha256(f"{rule}|{wid}|{version}|{feature}".encode()).hexdigest()[:16]
    return {
        "rule": rule,
        "value": round(float(value), 4),
        "threshold": threshold,
        "window": wid,
        "report": report,
        "model_version": version,
        "feature": feature,
        "alert_id": alert_id,
    }


def quality_breaches(quality: list[dict], references: dict[str, dict | None], config: MonitoringConfig, wid: str, report: str | None) -> list[dict]:
    """The quality rules for each model version with enough labelled trips (shadow predictions
    included: a challenger is judged as well). Ratios need the version's reference."""
    breaches = []
    q = config.quality
    for entry in quality:
        if not entry.get("count") or entry["count"] < config.min_labelled:
            continue
        version = entry["model_version"]
        holdout = (references.get(version) or {}).get("holdout")
        if holdout:
            if entry.get("mae") is not None and holdout.get("mae"):
                ratio = entry["mae"] / holdout["mae"]
                if ratio > q.mae_ratio_max:
                    breaches.append(_breach("mae_ratio_to_holdout", ratio, q.mae_ratio_max, wid, report, version))
            clean_holdout = (holdout.get("clean") or {}).get("rmse")
            if entry.get("clean_rmse") is not None and clean_holdout and (entry.get("clean_count") or 0) >= config.min_labelled:
                ratio = entry["clean_rmse"] / clean_holdout
                if ratio > q.clean_rmse_ratio_max:
                    breaches.append(_breach("clean_rmse_ratio_to_holdout", ratio, q.clean_rmse_ratio_max, wid, report, version))
        if entry.get("bias") is not None and abs(entry["bias"]) > q.abs_bias_max:
            breaches.append(_breach("abs_bias", entry["bias"], q.abs_bias_max, wid, report, version))
    return breaches


def drift_breaches(drift: dict, config: MonitoringConfig, wid: str, report: str | None, version: str | None) -> list[dict]:
    if not drift.get("judged"):
        return []
    breaches = [
        _breach("feature_drift_psi", row["psi"], config.drift.psi_max, wid, report, version, row["feature"])
        for row in drift["features"]
        if row["drifted"] and row.get("alerting", True)
    ]
    prediction = drift.get("prediction")
    if prediction and prediction.get("drifted"):
        breaches.append(_breach("prediction_drift_psi", prediction["psi"], config.drift.prediction_psi_max, wid, report, version, C.PREDICTION))
    return breaches


def _served_version(frame: pd.DataFrame) -> tuple[str | None, str | None]:
    """The (model name, version) that answered most of the window's trips."""
    served = frame[frame[C.VARIANT] != "shadow"]
    if served.empty:
        return None, None
    top = served.groupby([C.MODEL_NAME, C.MODEL_VERSION]).size().sort_values(ascending=False).index[0]
    return str(top[0]), str(top[1])


def _references(settings: Settings, frame: pd.DataFrame) -> dict[tuple[str, str], tuple[pd.DataFrame, dict] | None]:
    from chicago_taxi.training.reference import load_reference

    found = {}
    for name, version in frame[[C.MODEL_NAME, C.MODEL_VERSION]].drop_duplicates().itertuples(index=False):
        try:
            found[(str(name), str(version))] = load_reference(settings, str(name), str(version))
        except Exception as exc:  # the registry does not know the version (deleted, another store)
            log.warning("no training reference for %s version %s: %s", name, version, exc)
            found[(str(name), str(version))] = None
    return found


def monitor_window(start, end, settings: Settings | None = None, config: MonitoringConfig | None = None, publish: bool = True) -> dict:
    """Monitor the predictions scored in [start, end): quality, drift, rules, metrics and alerts
    (the Evidently report and the trend plots are `render_reports`, the next task). Returns the
    window summary (also written to `<monitoring_reports_dir>/<window id>/summary.json`)."""
    from chicago_taxi.monitoring.drift import drift_table, prediction_drift
    from chicago_taxi.monitoring.quality import quality_by_model

    settings = settings or load_settings()
    config = config or load_monitoring_config(settings.monitoring_config)
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise ValueError(f"the window must end after it starts: [{iso(start)}, {iso(end)})")
    wid = window_id(start)
    out = settings.monitoring_reports_dir
    folder = out / wid
    folder.mkdir(parents=True, exist_ok=True)

    frame = store.window_frame(settings, start, end)
    summary: dict = {
        "window": {"id": wid, "start": iso(start), "end": iso(end)},
        "computed_at": iso(datetime.now(UTC)),
        "predictions": int((frame[C.VARIANT] != "shadow").sum()) if len(frame) else 0,
        "scored": len(frame),
        "labelled": int(frame[C.LABEL].notna().sum()) if C.LABEL in frame else 0,
        "quality": [],
        "reference": None,
        "drift": {"rows": 0, "judged": False, "features": [], "prediction": None, "drifted_features": []},
        "evidently": None,
        "breaches": [],
        "ab": None,
        "plots": [],
        "thresholds": config.as_dict(),
    }
    report_rel = None
    if len(frame):
        quality = quality_by_model(frame)
        references = _references(settings, frame)
        name, version = _served_version(frame)
        reference = references.get((name, version)) if name else None
        summary["quality"] = quality
        served = frame[frame[C.VARIANT] != "shadow"]
        if reference is not None:
            ref_frame, ref_meta = reference
            summary["reference"] = {"model_name": name, "model_version": version, "rows": len(ref_frame), "holdout": ref_meta.get("holdout")}
            judged = len(served) >= config.drift.min_rows
            features = [row | {"alerting": row["feature"] in C.DRIFT_ALERTING} for row in drift_table(ref_frame, served, config.drift)]
            prediction = prediction_drift(ref_frame[C.PREDICTION], served[C.PREDICTION], config.drift)
            summary["drift"] = {
                "rows": len(served),
                "judged": judged,
                "features": features,
                "prediction": prediction,
                "drifted_features": [row["feature"] for row in features if row["drifted"] and row["alerting"]] if judged else [],
            }
            # Rendered by the next task (render_reports); alerts name it already.
            report_rel = f"{wid}/{REPORT}"
            summary["evidently"] = {"html": report_rel, "rendered": False}
        else:
            summary["reference"] = {"model_name": name, "model_version": version, "missing": "its training run saved no monitoring reference"}
        holdouts = {v: (ref[1] if ref else None) for (_, v), ref in references.items()}
        summary["breaches"] = quality_breaches(quality, holdouts, config, wid, report_rel) + drift_breaches(
            summary["drift"], config, wid, report_rel, version
        )
    _write_json(folder / SUMMARY, summary)
    if publish:
        summary["published"] = publish_window(settings, summary)
    log.info(
        "window %s: %d prediction(s), %d labelled, quality %s, drifted %s, %d breach(es)",
        wid,
        summary["predictions"],
        summary["labelled"],
        [(q["model_version"], q["variant"], q.get("rmse")) for q in summary["quality"]],
        summary["drift"]["drifted_features"],
        len(summary["breaches"]),
    )
    return summary


def render_reports(start, settings: Settings | None = None, config: MonitoringConfig | None = None) -> dict:
    """The window's Evidently report (HTML: drift per column against the training reference,
    regression quality on the labelled trips) and the trend plots over every window (PNG), both
    recorded in the summary `monitor_window` wrote."""
    from chicago_taxi.monitoring.evidently_report import evidently_report
    from chicago_taxi.monitoring.trends import plot_trends
    from chicago_taxi.training.reference import load_reference

    settings = settings or load_settings()
    config = config or load_monitoring_config(settings.monitoring_config)
    out = settings.monitoring_reports_dir
    path = out / window_id(as_utc(start)) / SUMMARY
    if not path.exists():
        raise FileNotFoundError(f"{path}: monitor the window first (monitor_window)")
    summary = json.loads(path.read_text())
    reference = summary.get("reference") or {}
    if summary.get("evidently") and reference.get("model_version"):
        window = summary["window"]
        frame = store.window_frame(settings, as_utc(window["start"]), as_utc(window["end"]))
        ref_frame, _ = load_reference(settings, reference["model_name"], reference["model_version"])
        served = frame[frame[C.VARIANT] != "shadow"]
        evidently = evidently_report(
            ref_frame,
            served,
            out / summary["evidently"]["html"],
            title=f"Chicago taxi fares: window {window['start']} to {window['end']}, model version {reference['model_version']}",
        )
        summary["evidently"] = evidently | {"html": str(Path(evidently["html"]).relative_to(out)), "rendered": True}
    _write_json(path, summary)
    summary["plots"] = [f"{TRENDS}/{name}" for name in plot_trends(load_summaries(out), out / TRENDS, config.drift.psi_max)]
    _write_json(path, summary)
    return {"evidently": summary["evidently"], "plots": summary["plots"]}


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    tmp.replace(path)


def load_summaries(reports_dir: Path) -> list[dict]:
    """Every window summary, oldest first (unreadable ones are left out with a warning)."""
    summaries = []
    for path in sorted(reports_dir.glob(f"*/{SUMMARY}")):
        try:
            summaries.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            log.warning("skipping unreadable window summary %s: %s", path, exc)
    return sorted(summaries, key=lambda s: s["window"]["start"])


# ---------------------------------------------------------------- metrics and alerts
def window_metrics(summary: dict) -> dict[tuple[str, str], dict[str, float]]:
    """Per (model name, version): the figures MLflow and taxi-model-metrics get for the window."""
    metrics: dict[tuple[str, str], dict[str, float]] = {}
    for entry in summary["quality"]:
        key = (entry["model_name"], entry["model_version"])
        prefix = "" if entry["variant"] != "shadow" else "shadow_"
        figures = metrics.setdefault(key, {})
        for name in ("predictions", "count", "rmse", "mae", "r2", "bias", "clean_rmse", "clean_mae"):
            if entry.get(name) is not None:
                figures[f"{prefix}{'labelled' if name == 'count' else name}"] = float(entry[name])
    reference = summary.get("reference") or {}
    drift = summary["drift"]
    if drift.get("judged") and reference.get("model_version"):
        figures = metrics.setdefault((reference["model_name"], reference["model_version"]), {})
        for row in drift["features"]:
            figures[f"psi_{row['feature']}"] = float(row["psi"])
        if drift.get("prediction"):
            figures["psi_prediction"] = float(drift["prediction"]["psi"])
        figures["drifted_features"] = float(len(drift["drifted_features"]))
    return metrics


def publish_window(settings: Settings, summary: dict) -> dict:
    """Metrics to MLflow and taxi-model-metrics, breaches to taxi-alerts. Kafka failures raise
    (the task retries; the window is recomputed the same way)."""
    from chicago_taxi.ingest.topics import ALERTS, MODEL_METRICS, bootstrap_servers
    from chicago_taxi.streaming.publisher import Publisher

    metrics = window_metrics(summary)
    runs = log_to_mlflow(settings, summary, metrics)
    publisher = Publisher(bootstrap_servers(), timeout=15.0)
    wid = summary["window"]["id"]
    for (name, version), figures in metrics.items():
        publisher.send(
            MODEL_METRICS,
            f"{name}:{version}",
            {
                "kind": METRICS_KIND,
                "model_name": name,
                "model_version": version,
                "window": summary["window"],
                "metrics": figures,
                "at": summary["computed_at"],
            },
        )
    for breach in summary["breaches"]:
        publisher.send(ALERTS, breach["alert_id"], {"kind": ALERT_KIND, "source": "taxi_monitoring", **breach, "window_bounds": summary["window"]})
    publisher.flush()
    return {"mlflow_runs": runs, "metrics_records": len(metrics), "alerts": len(summary["breaches"]), "window": wid}


def log_to_mlflow(settings: Settings, summary: dict, metrics: dict[tuple[str, str], dict[str, float]]) -> dict[str, str]:
    """One MLflow run per model version in experiment `chicago_taxi_monitoring`; each window is
    a step (minutes since the epoch of its start, so a rerun writes the same step)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    if not metrics:
        return {}
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        location = (settings.mlflow_artifacts_dir / "monitoring").as_uri() if settings.mlflow_tracking_uri.startswith("sqlite") else None
        experiment_id = client.create_experiment(EXPERIMENT, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    step = int(as_utc(summary["window"]["start"]).timestamp() // 60)
    stamp = int(as_utc(summary["window"]["end"]).timestamp() * 1000)
    runs = {}
    for (name, version), figures in metrics.items():
        found = client.search_runs([experiment_id], f"tags.model_name = '{name}' and tags.model_version = '{version}'", max_results=1)
        run_id = (
            found[0].info.run_id
            if found
            else client.create_run(
                experiment_id, run_name=f"monitoring {name} v{version}", tags={"model_name": name, "model_version": version}
            ).info.run_id
        )
        client.log_batch(run_id, metrics=[Metric(key, value, stamp, step) for key, value in figures.items()])
        runs[f"{name}:{version}"] = run_id
    return runs


# ---------------------------------------------------------------- 3. retraining
def retraining_due(summary: dict, settings: Settings | None = None, config: MonitoringConfig | None = None, now: datetime | None = None) -> dict:
    """Whether this window's breaches schedule a retrain: yes when there is a breach and no
    retrain was asked for within the cooldown (state in `<monitoring_dir>/retraining.json`,
    written when the answer is yes)."""
    settings = settings or load_settings()
    config = config or load_monitoring_config(settings.monitoring_config)
    now = now or datetime.now(UTC)
    breaches = summary.get("breaches") or []
    if not breaches:
        return {"due": False, "reason": "every figure is within its threshold"}
    state_path = settings.monitoring_dir / RETRAINING_STATE
    state = json.loads(state_path.read_text()) if state_path.exists() else None
    cooldown = timedelta(hours=config.retraining.cooldown_hours)
    if state is not None and now - as_utc(state["requested_at"]) < cooldown:
        return {
            "due": False,
            "reason": f"{len(breaches)} breach(es), but a retrain was requested at {state['requested_at']} (window {state['window']}); "
            f"cooldown {config.retraining.cooldown_hours:g} h",
            "breaches": len(breaches),
        }
    rules = sorted({f"{b['rule']}{'(' + b['feature'] + ')' if b.get('feature') else ''}" for b in breaches})
    state = {"requested_at": iso(now), "window": summary["window"]["id"], "rules": rules}
    state_path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(state_path, state)
    return {"due": True, "reason": f"window {summary['window']['id']}: {', '.join(rules)}", **state}


# ---------------------------------------------------------------- 4. champion vs challenger
def compare_variants(start, end, settings: Settings | None = None, config: MonitoringConfig | None = None, promote: bool = True) -> dict:
    """Champion vs challenger on the labelled trips both scored in the trailing
    `ab.lookback_hours` up to `end`; promote the challenger when the paired bootstrap interval of
    the RMSE difference lies below 0 and enough pairs exist (monitoring.ab.decide_promotion)."""
    from mlflow import MlflowClient

    from chicago_taxi.monitoring.ab import decide_promotion, paired_bootstrap, paired_frame
    from chicago_taxi.serving.fare_service import alias_version

    settings = settings or load_settings()
    config = config or load_monitoring_config(settings.monitoring_config)
    end = as_utc(end)
    start = min(as_utc(start), end - timedelta(hours=config.ab.lookback_hours))
    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    versions = {alias: alias_version(settings, alias) for alias in ("champion", "challenger")}
    result: dict = {"champion_version": versions["champion"], "challenger_version": versions["challenger"], "promoted": False}
    if versions["champion"] is None or versions["challenger"] is None or versions["champion"] == versions["challenger"]:
        result["reason"] = "no challenger to compare (the `challenger` alias is not set on another version)"
        return result
    frame = store.window_frame(settings, start, end)
    pairs = paired_frame(frame, versions["champion"], versions["challenger"]) if len(frame) else None
    comparison = None
    if pairs is not None and len(pairs):
        ab = config.ab
        comparison = paired_bootstrap(
            pairs[C.LABEL].to_numpy(),
            pairs["champion"].to_numpy(),
            pairs["challenger"].to_numpy(),
            resamples=ab.bootstrap_resamples,
            confidence=ab.confidence,
            seed=ab.seed,
            champion_version=versions["champion"],
            challenger_version=versions["challenger"],
        )
    verdict = decide_promotion(comparison, config.ab)
    result |= verdict.as_dict() | {"from": iso(start), "to": iso(end)}
    if verdict.promote and promote:
        client.set_registered_model_alias(settings.model_name, "champion", versions["challenger"])
        client.delete_registered_model_alias(settings.model_name, "challenger")
        client.set_model_version_tag(settings.model_name, versions["challenger"], "promoted_by", f"taxi_monitoring {iso(end)}: {verdict.reason}")
        result["promoted"] = True
        log.info("promoted %s version %s to champion: %s", settings.model_name, versions["challenger"], verdict.reason)
        _publish_promotion(result)
    else:
        log.info("champion %s kept: %s", versions["champion"], verdict.reason)
    return result


def _publish_promotion(result: dict) -> None:
    from chicago_taxi.ingest.topics import MODEL_METRICS, bootstrap_servers
    from chicago_taxi.streaming.publisher import Publisher

    publisher = Publisher(bootstrap_servers(), timeout=15.0)
    publisher.send(MODEL_METRICS, "promotion", {"kind": PROMOTION_KIND, **result, "at": iso(datetime.now(UTC))})
    publisher.flush()


def record_ab(settings: Settings, start, result: dict) -> None:
    """Keep the comparison in the window's summary (the Monitoring page shows it)."""
    path = settings.monitoring_reports_dir / window_id(as_utc(start)) / SUMMARY
    if path.exists():
        summary = json.loads(path.read_text())
        summary["ab"] = result
        _write_json(path, summary)


def run_window(params: dict | None, data_interval_start, data_interval_end) -> tuple[datetime, datetime]:
    """The window of a DAG run: its `window_start`/`window_end` parameters when given, else its
    data interval; a manual run with neither monitors the last full hour."""
    params = params or {}
    if params.get("window_start") or params.get("window_end"):
        if not (params.get("window_start") and params.get("window_end")):
            raise ValueError("give both window_start and window_end (ISO 8601), or neither")
        return as_utc(params["window_start"]), as_utc(params["window_end"])
    if data_interval_start is not None and data_interval_end is not None and data_interval_end > data_interval_start:
        return as_utc(data_interval_start), as_utc(data_interval_end)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return end - timedelta(hours=1), end

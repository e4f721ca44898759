"""taxi_monitoring: model quality on labelled trips, drift, champion vs challenger, alerts.

Hourly on its data interval (cron data intervals), backfillable and idempotent: every run
recomputes its window [data_interval_start, data_interval_end) from the landed logs. A manual
run may name another window with the `window_start` / `window_end` parameters (ISO 8601).

    land_logs -> monitor_window -> request_retraining   (emits `taxi_model_degraded`, or skips)
                               \\-> render_reports -> compare_variants   (promotes the challenger only on evidence)

- land_logs: `taxi-predictions` (group taxi-monitoring) and the fares on `taxi-raw-data` into
  the Parquet prediction and label stores (var/monitoring/, by hour).
- monitor_window: RMSE, MAE, R^2, bias per model version and variant; PSI/KS drift per feature
  and of the predictions against the training reference; metrics to MLflow (experiment
  chicago_taxi_monitoring) and `taxi-model-metrics`; breaches of config/monitoring.yaml to
  `taxi-alerts`. Alerts and the retraining check do not wait for the report.
- render_reports: the window's Evidently HTML report and the trend PNGs under reports/monitoring/.
- request_retraining: a breach emits the asset event that schedules taxi_training, at most once
  per cooldown (retraining.cooldown_hours); in bounds, the task skips and nothing is emitted.
- compare_variants: paired bootstrap of RMSE(challenger) - RMSE(champion) on the same labelled
  trips; the `champion` alias moves only when the whole interval lies below 0.

Backfill: `airflow backfill create --dag-id taxi_monitoring --from-date ... --to-date ...`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, Param, chain, dag, task

from chicago_taxi.orchestration.assets import MODEL_DEGRADED

DEFAULT_ARGS = {"owner": "mlops", "retries": 2, "retry_delay": timedelta(seconds=30)}


@dag(
    dag_id="taxi_monitoring",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={
        "window_start": Param(None, type=["null", "string"], description="ISO 8601 start of the window (default: the data interval's)"),
        "window_end": Param(None, type=["null", "string"], description="ISO 8601 end of the window (default: the data interval's)"),
    },
    tags=["chicago-taxi", "monitoring"],
    doc_md=__doc__,
)
def taxi_monitoring():
    @task
    def land_logs():
        from chicago_taxi.monitoring.steps import land_logs

        return land_logs()

    @task
    def monitor_window(params=None, data_interval_start=None, data_interval_end=None):
        from chicago_taxi.monitoring.steps import monitor_window, run_window

        start, end = run_window(params, data_interval_start, data_interval_end)
        summary = monitor_window(start, end)
        return {k: summary[k] for k in ("window", "predictions", "labelled", "quality", "breaches", "evidently", "published")}

    @task(outlets=[MODEL_DEGRADED])
    def request_retraining(summary: dict, outlet_events=None):
        from airflow.sdk.exceptions import AirflowSkipException

        from chicago_taxi.monitoring.steps import retraining_due

        decision = retraining_due(summary)
        if not decision["due"]:
            raise AirflowSkipException(decision["reason"])
        outlet_events[MODEL_DEGRADED].extra = {"window": summary["window"]["id"], "rules": decision["rules"]}
        return decision

    @task
    def render_reports(summary: dict):
        from chicago_taxi.monitoring.steps import render_reports

        return render_reports(summary["window"]["start"])

    @task
    def compare_variants(summary: dict):
        from chicago_taxi.core.config import load_settings
        from chicago_taxi.monitoring.steps import compare_variants, record_ab

        settings = load_settings()
        result = compare_variants(summary["window"]["start"], summary["window"]["end"], settings)
        record_ab(settings, summary["window"]["start"], result)
        return result

    summary = monitor_window()
    chain(land_logs(), summary)
    request_retraining(summary)
    chain(render_reports(summary), compare_variants(summary))


taxi_monitoring()

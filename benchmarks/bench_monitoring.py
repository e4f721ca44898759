"""How long taxi_monitoring's window task takes on a window of 10,000 predictions.

Goal (issue 12): a window of 10,000 predictions is monitored in at most 10 s of task time.

The window is built from the vendored sample (no broker, no model needed): the reference is the
earliest 80% of trips with a tariff's predictions (as a training run would save it), the window
10,000 trips drawn from the rest with a noisy copy of those predictions, every one labelled,
written to a temp prediction and label store exactly as the landing writes them. Then:

- the full step, `monitor_window(..., publish=False)` plus `log_to_mlflow` on a temp SQLite
  store (Kafka publishing is a flush of a few records and is left out);
- its stages one by one (read + join, quality, drift, Evidently report, trend plots);
- the baseline, measured in the same run: the floor of the same figures computed directly with
  pandas/numpy on the joined frame (RMSE/MAE/bias per version and a PSI per column).

    python benchmarks/bench_monitoring.py [--rows 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

GOAL_SECONDS = 10.0


def build_stores(tmp: Path, rows: int, seed: int = 0) -> tuple[datetime, datetime]:
    """A reference cache for model version "1" and a one-hour window of `rows` labelled predictions."""
    from chicago_taxi.core import monitoring_schema as C
    from chicago_taxi.core import schema
    from chicago_taxi.monitoring import store
    from chicago_taxi.training import reference
    from chicago_taxi.training.evaluate import HoldoutMetrics, TariffBaseline

    trips = pd.read_csv(ROOT / "data" / "chicago_taxi_trips.csv").sort_values(schema.TIMESTAMP).reset_index(drop=True)
    trips = trips[trips[schema.LABEL].between(*C.LABEL_RANGE)].reset_index(drop=True)
    cut = int(len(trips) * 0.8)
    train, rest = trips.iloc[:cut], trips.iloc[cut:]
    tariff = TariffBaseline.fit(train)
    rng = np.random.default_rng(seed)
    holdout = HoldoutMetrics.of(rest[schema.LABEL], tariff.predict(rest), np.ones(len(rest), dtype=bool))
    for name in schema.STORE_FEATURES:
        train = train.assign(**{name: rng.normal(10, 2, len(train))})
    reference.build_reference(train, tariff.predict(train), np.zeros(len(train), dtype=int), holdout.as_dict(), tmp / "ref")
    cache = tmp / "monitoring" / "references" / "chicago_taxi_fare" / "1"
    cache.parent.mkdir(parents=True, exist_ok=True)
    (tmp / "ref").rename(cache)

    start = datetime(2026, 12, 1, 10, tzinfo=UTC)
    window = rest.sample(rows, replace=rows > len(rest), random_state=seed).reset_index(drop=True)
    trip_ids = [f"bench-{i}" for i in range(rows)]
    scored = [start + timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, 3599, rows))]
    frame = pd.DataFrame(
        {
            C.TRIP_ID: trip_ids,
            C.MODEL_NAME: "chicago_taxi_fare",
            C.MODEL_VERSION: "1",
            C.VARIANT: "champion",
            C.SERVED: True,
            C.PREDICTION: tariff.predict(window) + rng.normal(0, 1.0, rows),
            C.DEGRADED: False,
            C.INPUT_WARNINGS: "",
            C.FEATURES_DEFAULTED: "",
            C.SOURCE: "stream",
            C.SCORED_AT: pd.to_datetime(scored, utc=True),
            schema.TIMESTAMP: window[schema.TIMESTAMP].astype(float),
            "kafka_partition": 0,
            "kafka_offset": np.arange(rows),
        }
    )
    for name in schema.MODEL_INPUT_COLUMNS:
        frame[name] = window[name].to_numpy()
    for name in schema.STORE_FEATURES:
        frame[name] = rng.normal(10, 2, rows)
    store.write_by_hour(frame, tmp / "monitoring" / store.PREDICTIONS_DIR, C.SCORED_AT, "part-bench")
    labels = pd.DataFrame(
        {C.TRIP_ID: trip_ids, C.LABEL: window[schema.LABEL].to_numpy(), schema.TIMESTAMP: frame[schema.TIMESTAMP], store.LABEL_AT: frame[C.SCORED_AT]}
    )
    store.write_by_hour(labels, tmp / "monitoring" / store.LABELS_DIR, store.LABEL_AT, "part-bench")
    return start, start + timedelta(hours=1)


def cold_task(code: str, start: datetime, end: datetime) -> float:
    """Wall time of `code` in a fresh Python process, imports included (as a task process)."""
    import subprocess

    script = (
        "from datetime import datetime\n"
        "from chicago_taxi.core.config import load_settings\n"
        "from chicago_taxi.monitoring import steps\n"
        f"start, end = datetime.fromisoformat({start.isoformat()!r}), datetime.fromisoformat({end.isoformat()!r})\n" + code
    )
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")}, capture_output=True)
    return time.perf_counter() - began


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-monitoring-"))
    os.environ.update(
        TAXI_MONITORING_DIR=str(tmp / "monitoring"),
        TAXI_MONITORING_REPORTS_DIR=str(tmp / "reports"),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db",
        TAXI_MLFLOW_ARTIFACTS=str(tmp / "mlartifacts"),
        EVIDENTLY_DISABLE_TELEMETRY="1",
    )
    from chicago_taxi.core import monitoring_schema as C
    from chicago_taxi.core.config import load_settings
    from chicago_taxi.core.monitoring_config import load_monitoring_config
    from chicago_taxi.monitoring import drift, quality, steps, store
    from chicago_taxi.monitoring.evidently_report import evidently_report
    from chicago_taxi.monitoring.trends import plot_trends
    from chicago_taxi.training.reference import load_reference

    start, end = build_stores(tmp, args.rows)
    settings, config = load_settings(), load_monitoring_config()
    print(f"window of {args.rows:,} labelled predictions; median of {args.repeat} run(s) each\n")

    # Warm the imports (a task process pays them once; they are not the window's work).
    frame = store.window_frame(settings, start, end)
    ref, meta = load_reference(settings, "chicago_taxi_fare", "1")
    evidently_report(ref.head(500), frame.head(500), tmp / "warm.html", title="warm-up")

    def full():
        summary = steps.monitor_window(start, end, settings, config, publish=False)
        steps.log_to_mlflow(settings, summary, steps.window_metrics(summary))
        return summary

    monitor_s, summary = timed(full, args.repeat)
    report_s, _ = timed(lambda: steps.render_reports(start, settings, config), args.repeat)
    # As Airflow runs them: each task in a fresh process, imports included (Evidently's alone
    # takes 6-7 s here).
    cold = {
        "monitor_window": "s = steps.monitor_window(start, end, publish=False); steps.log_to_mlflow(load_settings(), s, steps.window_metrics(s))",
        "render_reports": "steps.render_reports(start)",
    }
    cold_s = {name: cold_task(code, start, end) for name, code in cold.items()}
    stages = {
        "read + join": timed(lambda: store.window_frame(settings, start, end), args.repeat)[0],
        "quality": timed(lambda: quality.quality_by_model(frame), args.repeat)[0],
        "drift (PSI/KS)": timed(lambda: drift.drift_table(ref, frame, config.drift), args.repeat)[0],
        "evidently HTML": timed(lambda: evidently_report(ref, frame, tmp / "r.html", title="bench"), args.repeat)[0],
        "trend PNGs": timed(lambda: plot_trends(steps.load_summaries(settings.monitoring_reports_dir), tmp / "t", config.drift.psi_max), args.repeat)[
            0
        ],
    }

    def floor():
        labelled = frame[frame[C.LABEL].between(*C.LABEL_RANGE)]
        errors = labelled[C.PREDICTION] - labelled[C.LABEL]
        figures = {"rmse": float(np.sqrt((errors**2).mean())), "mae": float(errors.abs().mean()), "bias": float(errors.mean())}
        for name in C.MONITORED_NUMERIC:
            edges = np.unique(np.nanquantile(ref[name].astype(float), np.linspace(0, 1, 11)))
            r = np.histogram(ref[name].astype(float).dropna(), edges)[0] / max(1, ref[name].notna().sum()) + 1e-4
            c = np.histogram(frame[name].astype(float).dropna(), edges)[0] / max(1, frame[name].notna().sum()) + 1e-4
            figures[name] = float(np.sum((c - r) * np.log(c / r)))
        for name in C.MONITORED_CATEGORICAL:
            r = ref[name].astype(str).value_counts(normalize=True)
            c = frame[name].astype(str).value_counts(normalize=True)
            r, c = r.align(c, fill_value=0)
            figures[name] = float(np.sum((c + 1e-4 - r - 1e-4) * np.log((c + 1e-4) / (r + 1e-4))))
        return figures

    floor_s, _ = timed(floor, args.repeat)
    print(f"{'stage (warm process)':<40}{'seconds':>10}")
    for name, seconds in stages.items():
        print(f"  {name:<38}{seconds:>10.3f}")
    print(f"{'monitor_window task, warm (incl. MLflow)':<40}{monitor_s:>10.3f}")
    print(f"{'render_reports task, warm':<40}{report_s:>10.3f}")
    for name, seconds in cold_s.items():
        verdict = f"   goal <= {GOAL_SECONDS:g} s: {'met' if seconds <= GOAL_SECONDS else 'NOT met'}" if name == "monitor_window" else ""
        print(f"{name + ' task, cold process':<40}{seconds:>10.3f}{verdict}")
    print(f"{'baseline: bare pandas figures':<40}{floor_s:>10.3f}   the warm monitor task is {monitor_s / floor_s:,.0f}x the floor")
    served = [q for q in summary["quality"] if q["variant"] != "shadow"][0]
    print(
        f"\nwindow figures: RMSE {served['rmse']:.3f}, MAE {served['mae']:.3f}, {summary['labelled']:,} labelled, breaches {len(summary['breaches'])}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

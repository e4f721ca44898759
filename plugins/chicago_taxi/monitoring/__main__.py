"""Monitor a window now, from a shell (the taxi_monitoring DAG's land and monitor steps, without
Airflow: no asset event, no promotion unless asked).

    python -m chicago_taxi.monitoring --last 30          # land the logs, monitor the last 30 minutes
    python -m chicago_taxi.monitoring --start 2026-12-01T10:00:00Z --end 2026-12-01T11:00:00Z
    python -m chicago_taxi.monitoring --since-last          # from the end of the latest monitored window to now
    python -m chicago_taxi.monitoring --last 60 --compare   # also champion vs challenger (may promote)
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta


def _figure(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chicago_taxi.monitoring", description=__doc__.splitlines()[0])
    parser.add_argument("--last", type=float, default=None, help="monitor the last N minutes up to now")
    parser.add_argument("--since-last", action="store_true", help="monitor from the end of the latest monitored window up to now")
    parser.add_argument("--start", default=None, help="window start, ISO 8601")
    parser.add_argument("--end", default=None, help="window end, ISO 8601")
    parser.add_argument("--no-land", action="store_true", help="do not land Kafka first (use what the stores hold)")
    parser.add_argument("--no-publish", action="store_true", help="no MLflow metrics, nothing to taxi-model-metrics / taxi-alerts")
    parser.add_argument("--compare", action="store_true", help="also compare champion and challenger (promotes on evidence)")
    parser.add_argument("--json", action="store_true", help="print the window summary as JSON")
    args = parser.parse_args(argv)
    if args.last is not None:
        end = datetime.now(UTC)
        start = end - timedelta(minutes=args.last)
    elif args.since_last:
        from chicago_taxi.core.config import load_settings
        from chicago_taxi.monitoring.steps import as_utc, load_summaries

        summaries = load_summaries(load_settings().monitoring_reports_dir)
        if not summaries:
            parser.error("--since-last: no window has been monitored yet; start with --last MINUTES")
        start, end = max(as_utc(s["window"]["end"]) for s in summaries), datetime.now(UTC)
    elif args.start and args.end:
        from chicago_taxi.monitoring.steps import as_utc

        start, end = as_utc(args.start), as_utc(args.end)
    else:
        parser.error("give --last MINUTES, --since-last, or --start and --end")

    from chicago_taxi.core.config import load_settings
    from chicago_taxi.monitoring.steps import SUMMARY, compare_variants, land_logs, monitor_window, record_ab, render_reports

    settings = load_settings()
    if not args.no_land:
        landed = land_logs(settings)
        print(
            f"landed {landed['predictions'].get('rows', 0)} prediction(s) and {landed['labels'].get('rows', 0)} label(s)",
            file=sys.stderr,
        )
    summary = monitor_window(start, end, settings, publish=not args.no_publish)
    summary |= render_reports(start, settings)
    if args.compare:
        summary["ab"] = compare_variants(start, end, settings)
        record_ab(settings, start, summary["ab"])
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    window = summary["window"]
    print(f"window {window['start']} -> {window['end']}: {summary['predictions']} prediction(s), {summary['labelled']} labelled")
    for q in summary["quality"]:
        print(
            f"  {q['model_name']} v{q['model_version']} ({q['variant']}): {q.get('count') or 0} labelled, RMSE {_figure(q.get('rmse'))}, "
            f"MAE {_figure(q.get('mae'))}, R^2 {_figure(q.get('r2'))}, bias {_figure(q.get('bias'))}"
        )
    drifted = summary["drift"]["drifted_features"]
    print(f"  drift: {', '.join(drifted) if drifted else 'none'}" + ("" if summary["drift"]["judged"] else " (too few rows to judge)"))
    for b in summary["breaches"]:
        print(f"  ALERT {b['rule']}{' on ' + b['feature'] if b.get('feature') else ''}: {b['value']} (threshold {b['threshold']})")
    if summary.get("ab"):
        print(f"  champion vs challenger: {summary['ab'].get('reason')}")
    reports = settings.monitoring_reports_dir
    print(f"  summary: {reports / window['id'] / SUMMARY}")
    if summary.get("evidently"):
        print(f"  drift report: {reports / summary['evidently']['html']}")
    for plot in summary["plots"]:
        print(f"  trend: {reports / plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

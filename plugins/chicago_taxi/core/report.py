"""The JSON report each pipeline run leaves (row counts, gate results, metrics, model version),
and the short human summary `make run` prints from it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path


class RunReport:
    """A JSON document with one section per pipeline step, mirrored to `logs/runs/`."""

    def __init__(self, path: Path, mirror: Path | None = None):
        self.path = path
        self.mirror = mirror

    def read(self) -> dict:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def update(self, step: str, section: dict) -> None:
        data = self.read()
        data[step] = section
        data["updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        text = json.dumps(data, indent=2, default=str)
        for target in filter(None, (self.path, self.mirror)):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)


def _metrics_line(name: str, m: dict | None) -> str:
    if not m:
        return f"  {name:<10} (none)"
    line = f"  {name:<10} RMSE {m['rmse']:7.3f}   MAE {m['mae']:7.3f}   R^2 {m['r2']:6.3f}"
    clean = m.get("clean")
    if clean:  # the same model on the clean holdout trips (no input repaired)
        line += f"   | clean trips: RMSE {clean['rmse']:7.3f}   MAE {clean['mae']:7.3f}   R^2 {clean['r2']:6.3f}"
    return line + (f"   (version {m['version']})" if m.get("version") else "")


def summarize(report: dict) -> str:
    """The few lines a person wants after a run: rows, quarantine, gates, metrics, registry, Bento."""
    lines = []
    ex = report.get("extract")
    if ex:
        lines.append(f"Rows read: {ex['rows']} of {ex['source_rows']} in {ex['source']} ({ex['partitions']} monthly partitions)")
    for gate in ("validate_raw", "validate_transformed"):
        g = report.get(gate)
        if not g:
            continue
        state = "PASSED" if g["success"] else "FAILED"
        lines.append(f"Gate {gate}: {state} on {g['rows']} rows, {g['quarantined_rows']} quarantined ({g['bad_row_share']:.2%})")
        for name, count in g.get("failed_expectations", {}).items():
            lines.append(f"    failed: {name}: {count} rows")
        for name, count in g.get("warnings", {}).items():
            lines.append(f"    warning (kept): {name}: {count} rows")
        for failure in g.get("blocking_failures", []):
            lines.append(f"    STOPPED: {failure}")
        if g.get("quarantine") and g["quarantined_rows"]:
            lines.append(f"    quarantine: {g['quarantine']}")
        if g.get("data_docs"):
            lines.append(f"    data docs: {g['data_docs']}")
    js = report.get("join_store_features")
    if js:
        lines.append(
            f"Store features (point in time, replay offset {js['replay_offset_days']} days): share of trips with a value "
            + ", ".join(f"{k} {v:.0%}" for k, v in js["feature_coverage"].items())
        )
    tr = report.get("transform")
    if tr:
        lines.append(
            f"Transform: {tr['train_rows']} train + {tr['holdout_rows']} holdout rows (holdout from {tr['holdout_starts']}), {tr['rows_per_second']} rows/s"
        )
    ev = report.get("evaluate")
    if ev:
        repairs = ev.get("holdout_repairs")
        if repairs:
            lines.append(
                f"Holdout metrics: all {repairs['rows']} trips with a usable fare | the {repairs['clean_rows']} clean ones (no input repaired)"
            )
        else:
            lines.append("Holdout metrics:")
        lines.append(_metrics_line("candidate", ev["candidate"]))
        if "with_store_features" in ev:
            lines.append(_metrics_line("+store", ev["with_store_features"]) + "   (with feature-store features)")
            lines.append(_metrics_line("-store", ev["without_store_features"]) + "   (without; candidate = the better one)")
        lines.append(_metrics_line("baseline", ev["baseline"]))
        lines.append(_metrics_line("champion", ev["champion"]))
        ratio = f"  candidate/baseline RMSE ratio {ev['rmse_ratio_to_baseline']:.3f}"
        if "clean_rmse_ratio_to_baseline" in ev:
            ratio += f", on clean trips {ev['clean_rmse_ratio_to_baseline']:.3f}"
        lines.append(f"{ratio} (each must be <= {ev['max_rmse_ratio_to_baseline']})")
        for reason in ev["decision"]["reasons"]:
            lines.append(f"  - {reason}")
    for key in ("build_offline_store", "feast_apply"):
        if report.get(key):
            lines.append(f"{key}: " + json.dumps(report[key])[:300])
    reg = report.get("register")
    if reg:
        if reg.get("version"):
            lines.append(f"Registered: {reg['model_name']} version {reg['version']} with alias '{reg['alias']}' (MLflow run {reg['run_id']})")
        else:
            lines.append(f"Not registered (MLflow run {reg['run_id']} keeps the metrics)")
    bento = report.get("build_bento")
    if bento:
        lines.append(f"Bento: {bento['bento_tag']}" if bento.get("built") else f"Bento: not built ({bento.get('reason')})")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m chicago_taxi.core.report REPORT.json")
    print(summarize(json.loads(Path(sys.argv[1]).read_text())))

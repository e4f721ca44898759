"""Where one pipeline run keeps its files and its report: every DAG step of every stage
finds what the earlier steps of the same run left through `run_paths` and records its own
section with `run_report`."""

from __future__ import annotations

from pathlib import Path

from chicago_taxi.core.config import Settings
from chicago_taxi.core.report import RunReport


def run_paths(settings: Settings, run_id: str) -> dict[str, Path]:
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


def run_report(settings: Settings, paths: dict[str, Path]) -> RunReport:
    return RunReport(paths["root"] / "report.json", settings.logs_dir / "runs" / f"{paths['root'].name}.json")

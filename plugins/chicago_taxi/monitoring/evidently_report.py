"""The Evidently report of a monitoring window: an HTML page a person reads after an alert.

The alerting rules are our own (`drift`, `quality`); Evidently draws the distributions and the
errors behind them, and gives a second opinion on drift with its own tests (Wasserstein /
Jensen-Shannon distances at these sizes). One Report holds both presets: data drift of every
monitored column and of the predictions on all the window's rows, and regression quality on the
rows whose fare is known, when there are enough of them.
"""

from __future__ import annotations

import html
import os
import warnings
from pathlib import Path

import pandas as pd

from chicago_taxi.core import monitoring_schema as C
from chicago_taxi.monitoring.drift import category_labels
from chicago_taxi.monitoring.quality import usable_label

VALUE_DRIFT_TEST = "Value Drift for column "


def _report_frame(frame: pd.DataFrame, numerical: list[str], categorical: list[str], with_label: bool) -> pd.DataFrame:
    """The columns Evidently needs, typed as it expects: numbers as floats, categories as
    strings with missing values as a category (Evidently would drop them), and the label only
    where it is usable (NaN elsewhere, which Evidently's regression metrics leave out)."""
    out = pd.DataFrame(index=frame.index)
    for column in numerical:
        out[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    for column in categorical:
        out[column] = category_labels(frame[column])
    if with_label:
        label = pd.to_numeric(frame[C.LABEL], errors="coerce").astype(float)
        out[C.LABEL] = label.where(usable_label(frame))
    return out.reset_index(drop=True)


def _header(title: str, summary: str) -> str:
    return f'<h1 style="font-family: sans-serif; margin: 16px 24px 0">{html.escape(title)}</h1>\n<p style="font-family: sans-serif; margin: 4px 24px">{html.escape(summary)}</p>'


def evidently_report(reference: pd.DataFrame, current: pd.DataFrame, html_path: Path, *, title: str, min_labelled: int = 30) -> dict:
    """Write the Evidently report of `current` (a window's served predictions) against
    `reference` (the model's training reference) to `html_path`: DataDriftPreset always,
    RegressionPreset when at least `min_labelled` current rows have a usable label. Returns the
    HTML path, the columns Evidently judged drifted and their share, whether regression quality
    is in the report (and its RMSE), and the columns left out of the drift preset because one
    side has no value in them (Evidently refuses an empty column; our PSI still judges them)."""
    if reference.empty or current.empty:
        raise ValueError(f"an Evidently report needs rows on both sides: {len(reference)} reference, {len(current)} current")
    os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")
    from evidently import DataDefinition, Dataset, Regression, Report
    from evidently.presets import DataDriftPreset, RegressionPreset
    from sklearn.exceptions import UndefinedMetricWarning

    html_path = Path(html_path)
    both = [column for column in (*C.MONITORED_NUMERIC, C.PREDICTION) if column in reference and column in current]
    numerical = [column for column in both if reference[column].notna().any() and current[column].notna().any()]
    skipped = [column for column in both if column not in numerical]
    categorical = [column for column in C.MONITORED_CATEGORICAL if column in reference and column in current]

    labelled = int(usable_label(current).sum()) if C.LABEL in current else 0
    regression = labelled >= min_labelled and C.LABEL in reference and C.PREDICTION in numerical and bool(usable_label(reference).any())
    definition = DataDefinition(
        numerical_columns=numerical + ([C.LABEL] if regression else []),
        categorical_columns=categorical,
        regression=[Regression(target=C.LABEL, prediction=C.PREDICTION)] if regression else None,
    )
    presets = [DataDriftPreset(columns=numerical + categorical)] + ([RegressionPreset()] if regression else [])
    current_data = Dataset.from_pandas(_report_frame(current, numerical, categorical, regression), data_definition=definition)
    reference_data = Dataset.from_pandas(_report_frame(reference, numerical, categorical, regression), data_definition=definition)
    with warnings.catch_warnings():
        # Evidently's plots divide by zero on constant columns and score R2 on one-row groups.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        snapshot = Report(presets, metadata={"title": title}, include_tests=True).run(current_data=current_data, reference_data=reference_data)
        page = snapshot.get_html_str(as_iframe=False)
    results = snapshot.dict()

    judged = [test for test in results["tests"] if test["name"].startswith(VALUE_DRIFT_TEST)]
    drifted = [test["name"][len(VALUE_DRIFT_TEST) :] for test in judged if test["status"] == "FAIL"]
    rmse = next((metric["value"] for metric in results["metrics"] if metric["metric_name"].startswith("RMSE(")), None) if regression else None

    summary = f"{len(current)} window rows against {len(reference)} reference rows; {labelled} with a usable fare" + (
        "." if regression else f" (regression quality needs {min_labelled})."
    )
    page = page.replace("<head>", f"<head>\n<title>{html.escape(title)}</title>", 1).replace("<body>", f"<body>\n{_header(title, summary)}", 1)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(page, encoding="utf-8")
    return {
        "html": str(html_path),
        "drifted_columns": drifted,
        "drift_share": len(drifted) / len(judged) if judged else 0.0,
        "regression": regression,
        "regression_rmse": float(rmse) if rmse is not None else None,
        "labelled_rows": labelled,
        "skipped_columns": skipped,
    }

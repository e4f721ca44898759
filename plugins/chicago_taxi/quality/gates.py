"""Great Expectations quality gates on raw trips (gate 1) and on transformed features (gate 2).

The suites are generated from the schema module (`python -m chicago_taxi.quality.suites
write-suites`, `make suites`) and versioned as files under `expectations/gx/`; a test checks the committed
files still match the schema. Each expectation carries a `severity` in its meta:

- ``batch``: about the whole batch (a column missing or retyped, null rates); any failure stops
  the run.
- ``quarantine``: about single rows; failing rows go to a quarantine Parquet with the names of
  the expectations they failed. The run stops only when their share crosses the threshold.
- ``warn``: known dirt that the model copes with (zero miles, missing company); reported only.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from chicago_taxi.core import schema

log = logging.getLogger(__name__)

RAW_SUITE = "raw_trips"
TRANSFORMED_SUITE = "transformed_trips"
ROW_ID = "_row_id"
IMPLIED_SPEED = "implied_speed_mph"
# Derived 0/1 columns: the hour, weekday or month disagrees with the timestamp; the row is an
# exact copy of an earlier one.
CALENDAR_DISAGREES = "calendar_disagrees_with_timestamp"
DUPLICATE_ROW = "duplicate_of_earlier_row"
DERIVED_COLUMNS = (ROW_ID, IMPLIED_SPEED, CALENDAR_DISAGREES, DUPLICATE_ROW)
# The raw suite's upper bound on trip_start_timestamp, given at each run (epoch seconds).
DATA_CLOCK_PARAMETER = "data_clock_epoch"
# The bound when a caller has no clock (a look at history): 2100-01-01.
NO_DATA_CLOCK = 4102444800
# Share of holdout trips whose company or payment type fell outside the training vocabulary.
MAX_OOV_SHARE = 0.10
_DATASOURCE = "taxi_frames"


class QualityGateError(RuntimeError):
    """A quality gate failed: the message names each failed expectation and its row count."""


@dataclass
class ExpectationOutcome:
    name: str
    severity: str
    success: bool
    unexpected_count: int
    detail: str = ""


@dataclass
class GateResult:
    gate: str
    success: bool
    row_count: int
    passed_rows: int
    quarantined_rows: int
    bad_row_share: float
    max_bad_row_share: float
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    blocking_failures: list[str] = field(default_factory=list)
    quarantine_path: str | None = None
    clean_path: str | None = None
    data_docs: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        state = "PASSED" if self.success else "FAILED"
        text = f"{self.gate}: {state}, {self.row_count} rows, {self.quarantined_rows} quarantined ({self.bad_row_share:.2%})"
        if self.blocking_failures:
            text += "; " + "; ".join(self.blocking_failures)
        return text


# ---------------------------------------------------------------- GX context
def _context(expectations_dir: Path):
    import great_expectations as gx

    return gx.get_context(mode="file", project_root_dir=str(expectations_dir))


def _run_checkpoint(expectations_dir: Path, suite_name: str, frame: pd.DataFrame, reports_dir: Path, gate: str, parameters: dict | None = None):
    """Run the suite's committed checkpoint on `frame`; returns the expectation results and the
    run's Data Docs, published under `reports_dir`.

    The checkpoint runs in a scratch copy of the committed GX project: GX stores every validation
    result in the project and rebuilds Data Docs from all it has stored, so in the committed
    project each run made the next one slower (52 MB and ~2x the time after one test session),
    and concurrent runs wrote into each other's results."""
    with tempfile.TemporaryDirectory(prefix="taxi-gx-") as scratch:
        project = Path(scratch)
        shutil.copytree(expectations_dir / "gx", project / "gx", ignore=shutil.ignore_patterns("uncommitted"))
        ctx = _context(project)
        checkpoint = ctx.checkpoints.get(f"{suite_name}_gate")
        result = checkpoint.run(batch_parameters={"dataframe": frame}, expectation_parameters=parameters or {})
        (validation,) = result.run_results.values()
        docs = ctx.get_docs_sites_urls()
        return validation.results, _publish_docs(docs[0]["site_url"] if docs else None, reports_dir, gate)


def expectation_label(config) -> str:
    column = config.kwargs.get("column")
    bounds = ""
    if "min_value" in config.kwargs or "max_value" in config.kwargs:
        bounds = f" [{config.kwargs.get('min_value')}, {config.kwargs.get('max_value')}]"
    return f"{config.type}({column}){bounds}" if column else config.type


def collect_results(results) -> tuple[list[ExpectationOutcome], dict[int, list[str]]]:
    """Outcomes per expectation, and for each failing row id the expectations it failed."""
    outcomes, failed_by_row = [], {}
    for res in results:
        config = res.expectation_config
        severity = (config.meta or {}).get("severity", "batch")
        label = expectation_label(config)
        info = res.result or {}
        detail = ""
        if res.exception_info and res.exception_info.get("raised_exception"):
            detail = str(res.exception_info.get("exception_message", ""))[:300]
        elif "observed_value" in info:
            detail = f"observed {info['observed_value']}"
        count = int(info.get("unexpected_count") or 0)
        outcomes.append(ExpectationOutcome(label, severity, bool(res.success), count, detail))
        if severity == "quarantine":
            for entry in info.get("unexpected_index_list") or []:
                row_id = int(entry[ROW_ID] if isinstance(entry, dict) else entry)
                failed_by_row.setdefault(row_id, []).append(label)
    return outcomes, failed_by_row


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return str(value)


def _publish_docs(docs_url: str | None, reports_dir: Path, gate: str) -> str | None:
    if not docs_url:
        return None
    source = Path(docs_url.removeprefix("file://")).parent
    target = reports_dir / "data_docs" / gate
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return str(target / "index.html")


def add_derived_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Row id (to name quarantined rows), implied speed, calendar agreement and duplicate flags,
    each only where its inputs are numeric."""
    frame = frame.reset_index(drop=True).copy()
    frame[ROW_ID] = np.arange(len(frame), dtype=np.int64)
    numeric = {
        c: frame[c] for c in ("trip_miles", "trip_seconds", schema.TIMESTAMP, *CALENDAR) if c in frame and pd.api.types.is_numeric_dtype(frame[c])
    }
    if "trip_miles" in numeric and "trip_seconds" in numeric:
        miles, hours = numeric["trip_miles"].astype(float), numeric["trip_seconds"].astype(float) / 3600.0
        speed = miles / hours.where(hours > 0)
        # Zero seconds with miles is an infinite speed; zero seconds and zero miles stays unknown.
        speed = speed.where(~((hours == 0) & (miles > 0)), np.inf)
        frame[IMPLIED_SPEED] = speed
    else:
        frame[IMPLIED_SPEED] = np.nan
    frame[CALENDAR_DISAGREES] = calendar_disagreement(frame).astype(np.int64) if len(numeric) >= 4 and schema.TIMESTAMP in numeric else 0
    columns = [c for c in schema.RAW_COLUMN_NAMES if c in frame]
    frame[DUPLICATE_ROW] = frame[columns].duplicated(keep="first").astype(np.int64) if columns else 0
    return frame


CALENDAR = ("trip_start_hour", "trip_start_day", "trip_start_month")


def calendar_disagreement(frame: pd.DataFrame) -> pd.Series:
    """True where hour, weekday (1 = Sunday) or month disagree with trip_start_timestamp (Chicago
    wall-clock time stored as UTC); rows missing one of them are left to the not-null checks."""
    stamps = pd.to_datetime(pd.to_numeric(frame[schema.TIMESTAMP], errors="coerce"), unit="s", errors="coerce")
    derived = {"trip_start_hour": stamps.dt.hour, "trip_start_day": (stamps.dt.dayofweek + 1) % 7 + 1, "trip_start_month": stamps.dt.month}
    disagrees = pd.Series(False, index=frame.index)
    for column, expected in derived.items():
        given = pd.to_numeric(frame[column], errors="coerce")
        disagrees |= given.notna() & expected.notna() & (given != expected)
    return disagrees


def validate_raw_trips(
    frame: pd.DataFrame, out_dir: Path, expectations_dir: Path, reports_dir: Path, max_bad_row_share: float, data_clock_epoch: int | None = None
) -> GateResult:
    """Gate 1. Writes clean rows, quarantined rows (with the expectations each failed) and the result.

    `data_clock_epoch`: no trip may start after it (the run's window end); None sets no bound.
    Raises QualityGateError, after writing everything, when a batch expectation fails or the
    quarantined share exceeds `max_bad_row_share`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    checked = add_derived_columns(frame)
    from chicago_taxi.quality.rows import parameters_for

    parameters = parameters_for(data_clock_epoch)
    results, data_docs = _run_checkpoint(expectations_dir, RAW_SUITE, checked, reports_dir, "validate_raw", parameters)
    outcomes, failed_by_row = collect_results(results)

    bad_ids = np.array(sorted(failed_by_row), dtype=np.int64)
    quarantine = checked[checked[ROW_ID].isin(bad_ids)].copy()
    quarantine["failed_expectations"] = quarantine[ROW_ID].map(lambda i: "; ".join(failed_by_row[i]))
    clean = checked[~checked[ROW_ID].isin(bad_ids)].drop(columns=list(DERIVED_COLUMNS))
    quarantine_path, clean_path = out_dir / "quarantine.parquet", out_dir / "clean.parquet"
    quarantine.drop(columns=[IMPLIED_SPEED, CALENDAR_DISAGREES, DUPLICATE_ROW]).astype(
        {c: "string" for c in quarantine.columns if quarantine[c].dtype == object}
    ).to_parquet(quarantine_path, index=False)
    clean.to_parquet(clean_path, index=False)

    n = len(checked)
    share = len(bad_ids) / n if n else 0.0
    blocking = [f"{o.name} failed on {o.unexpected_count} rows {o.detail}".strip() for o in outcomes if o.severity == "batch" and not o.success]
    if share > max_bad_row_share:
        worst = sorted((o for o in outcomes if o.severity == "quarantine" and o.unexpected_count), key=lambda o: -o.unexpected_count)
        blocking.append(
            f"bad-row share {share:.2%} exceeds {max_bad_row_share:.2%} (" + ", ".join(f"{o.name}: {o.unexpected_count} rows" for o in worst) + ")"
        )
    result = GateResult(
        gate="validate_raw",
        success=not blocking,
        row_count=n,
        passed_rows=len(clean),
        quarantined_rows=len(bad_ids),
        bad_row_share=round(share, 5),
        max_bad_row_share=max_bad_row_share,
        outcomes=outcomes,
        blocking_failures=blocking,
        quarantine_path=str(quarantine_path),
        clean_path=str(clean_path),
        data_docs=data_docs,
    )
    _finish(result, out_dir)
    return result


def validate_transformed(
    frame: pd.DataFrame, vocabulary_sizes: dict[str, int], out_dir: Path, expectations_dir: Path, reports_dir: Path
) -> GateResult:
    """Gate 2 on the transformed holdout (or training) features. Raises QualityGateError on any failure."""
    checked = frame.reset_index(drop=True).copy()
    checked[ROW_ID] = np.arange(len(checked), dtype=np.int64)
    # Ids at or past the vocabulary size are out-of-vocabulary buckets.
    parameters = {f"{key}_vocabulary_max_id": vocabulary_sizes[key] - 1 for key in schema.VOCAB_FEATURES}
    results, data_docs = _run_checkpoint(expectations_dir, TRANSFORMED_SUITE, checked, reports_dir, "validate_transformed", parameters)
    outcomes, _ = collect_results(results)
    blocking = [f"{o.name} failed on {o.unexpected_count} rows {o.detail}".strip() for o in outcomes if not o.success]
    result = GateResult(
        gate="validate_transformed",
        success=not blocking,
        row_count=len(checked),
        passed_rows=len(checked) if not blocking else 0,
        quarantined_rows=0,
        bad_row_share=0.0,
        max_bad_row_share=0.0,
        outcomes=outcomes,
        blocking_failures=blocking,
        data_docs=data_docs,
    )
    _finish(result, out_dir)
    return result


def _finish(result: GateResult, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{result.gate}.json").write_text(json.dumps(result.as_dict(), indent=2, default=_jsonable))
    for o in result.outcomes:
        if not o.success:
            log.warning("%s: %s [%s] failed on %d rows %s", result.gate, o.name, o.severity, o.unexpected_count, o.detail)
    log.info(result.summary())
    if not result.success:
        raise QualityGateError(
            f"quality gate {result.gate} failed: "
            + "; ".join(result.blocking_failures)
            + (f". Quarantined rows: {result.quarantine_path}" if result.quarantine_path else "")
            + (f". Data Docs: {result.data_docs}" if result.data_docs else "")
        )

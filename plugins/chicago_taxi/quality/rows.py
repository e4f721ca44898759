"""The row-level ("quarantine") expectations of the committed raw suite as a public API, for
callers that check trips outside a training gate: the stream's micro-batches and the stream's
history. The training gate (`quality.gates`) and these functions read the same suite file, so
the stream rejects exactly the rows training would quarantine.

    expectations = quarantine_expectations(settings.expectations_dir)
    failed = failed_rows_pandas(frame, expectations)          # {row position: [labels]}
    failed = GxRowValidator(expectations).failed_rows(frame)  # the same, run by GX

Deliberate differences from the gate for streaming (a micro-batch is not an extract): the
batch-level expectations are skipped, not-null is enforced only on the columns scoring needs
(`ingest.messages.REQUIRED_COLUMNS`), the label's expectations are skipped (scoring never reads
`fare` or `tips`; a message may carry them for monitoring), and duplicates are the stream's own
business (by `trip_id`). The data clock (`gates.DATA_CLOCK_PARAMETER`) is passed per call. Cost on 2 cores: importing GX ~12-15 s once per process,
then ~0.55 s per 60-row micro-batch; pandas evaluates the same expectations in ~0.03 s.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.ingest.messages import REQUIRED_COLUMNS


def quarantine_expectations(expectations_dir: Path, streaming: bool = True) -> list[dict]:
    """The row-level expectations of the committed raw suite; for streaming, not-null only on
    the columns scoring needs (see the module docstring)."""
    from chicago_taxi.quality.gates import RAW_SUITE

    path = expectations_dir / "gx" / "expectations" / f"{RAW_SUITE}.json"
    suite = json.loads(path.read_text())
    from chicago_taxi.quality.gates import DUPLICATE_ROW

    chosen = []
    for exp in suite["expectations"]:
        if (exp.get("meta") or {}).get("severity") != "quarantine":
            continue
        column = exp["kwargs"].get("column")
        if streaming and exp["type"] == "expect_column_values_to_not_be_null" and column not in REQUIRED_COLUMNS:
            continue
        if streaming and (column in schema.FORBIDDEN_INPUTS or column == DUPLICATE_ROW):
            continue
        chosen.append({"type": exp["type"], "kwargs": dict(exp["kwargs"]), "meta": dict(exp.get("meta") or {})})
    return chosen


def label_of(exp: dict) -> str:
    from chicago_taxi.quality.gates import expectation_label

    return expectation_label(SimpleNamespace(type=exp["type"], kwargs=exp["kwargs"]))


def parameters_for(data_clock_epoch: int | None) -> dict:
    """The suite's run parameters: the data clock (None: no bound, for a look at history)."""
    from chicago_taxi.quality.gates import DATA_CLOCK_PARAMETER, NO_DATA_CLOCK

    # A float, as Great Expectations reports its bounds (labels read the same from both).
    return {DATA_CLOCK_PARAMETER: float(int(data_clock_epoch) if data_clock_epoch is not None else NO_DATA_CLOCK)}


def _resolved(kwargs: dict, parameters: dict) -> dict:
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, dict) and "$PARAMETER" in value:
            if value["$PARAMETER"] not in parameters:
                raise KeyError(f"expectation parameter {value['$PARAMETER']!r} not given")
            value = parameters[value["$PARAMETER"]]
        out[key] = value
    return out


def failed_rows_pandas(frame: pd.DataFrame, expectations: list[dict], data_clock_epoch: int | None = None) -> dict[int, list[str]]:
    """Row position -> labels of the expectations it fails, evaluated with pandas exactly as GX
    does for these three types (nulls pass "between" and "in set"; NaN counts as null)."""
    failed: dict[int, list[str]] = {}
    checked = with_derived_columns(frame)
    parameters = parameters_for(data_clock_epoch)
    for exp in expectations:
        # Labels carry the resolved bounds, as Great Expectations' own results do.
        exp = exp | {"kwargs": _resolved(exp["kwargs"], parameters)}
        column, kind = exp["kwargs"]["column"], exp["type"]
        if column not in checked:
            continue
        values = checked[column]
        if kind == "expect_column_values_to_not_be_null":
            bad = values.isna()
        elif kind == "expect_column_values_to_be_between":
            numbers = pd.to_numeric(values, errors="coerce").astype(float)
            low, high = exp["kwargs"].get("min_value"), exp["kwargs"].get("max_value")
            bad = pd.Series(False, index=values.index)
            if low is not None:
                bad |= numbers < low
            if high is not None:
                bad |= numbers > high
            bad &= values.notna()
        elif kind == "expect_column_values_to_be_in_set":
            bad = values.notna() & ~values.isin(exp["kwargs"]["value_set"])
        else:
            raise ValueError(f"no pandas evaluation for {kind}; run with TAXI_STREAM_GX=1")
        label = label_of(exp)
        for position in np.flatnonzero(bad.to_numpy()):
            failed.setdefault(int(position), []).append(label)
    return failed


def with_derived_columns(frame: pd.DataFrame) -> pd.DataFrame:
    from chicago_taxi.quality.gates import add_derived_columns

    frame = frame.copy()
    for name in schema.RAW_COLUMN_NAMES:
        if name not in frame:
            frame[name] = None
    # Numeric columns of parsed trips can hold None: make them float (NaN) like a read CSV.
    for column in schema.COLUMNS:
        if column.kind != "string":
            frame[column.name] = pd.to_numeric(frame[column.name], errors="coerce").astype(float)
    return add_derived_columns(frame)


class GxRowValidator:
    """The same expectations run by Great Expectations in an ephemeral context (nothing is written
    to expectations/: no data docs, no stored results), built once per process."""

    def __init__(self, expectations: list[dict]):
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        suite = gx.ExpectationSuite(name="raw_trips_stream")
        for exp in expectations:
            suite.add_expectation(ExpectationConfiguration(type=exp["type"], kwargs=exp["kwargs"], meta=exp["meta"]).to_domain_obj())
        suite = context.suites.add(suite)
        batch = context.data_sources.add_pandas("stream").add_dataframe_asset("trips").add_batch_definition_whole_dataframe("micro_batch")
        self.definition = context.validation_definitions.add(gx.ValidationDefinition(name="raw_trips_stream", data=batch, suite=suite))

    def failed_rows(self, frame: pd.DataFrame, data_clock_epoch: int | None = None) -> dict[int, list[str]]:
        from chicago_taxi.quality.gates import ROW_ID, collect_results

        checked = with_derived_columns(frame)
        result = self.definition.run(
            batch_parameters={"dataframe": checked},
            expectation_parameters=parameters_for(data_clock_epoch),
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW_ID]},
        )
        broken = [r for r in result.results if r.exception_info and r.exception_info.get("raised_exception")]
        if broken:
            detail = broken[0].exception_info.get("exception_message")
            raise RuntimeError(f"Great Expectations could not evaluate {broken[0].expectation_config.type}: {detail}")
        _, failed = collect_results(result.results)
        return failed

"""The Great Expectations suites and checkpoints of both gates, generated from the schema module
and versioned as files under expectations/gx/ (`make suites`). Ids are pinned, so regenerating
unchanged suites leaves the files unchanged; a test checks the committed files match the schema.

Each expectation carries a `severity` in its meta: ``batch`` (about the whole batch; a failure
stops the run), ``quarantine`` (about single rows; failing rows are quarantined) or ``warn``
(known dirt the model copes with; reported only).
"""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

from chicago_taxi.core import schema
from chicago_taxi.core.schema import transformed_feature_kinds
from chicago_taxi.quality.gates import (
    _DATASOURCE,
    CALENDAR_DISAGREES,
    DATA_CLOCK_PARAMETER,
    DUPLICATE_ROW,
    IMPLIED_SPEED,
    MAX_OOV_SHARE,
    RAW_SUITE,
    ROW_ID,
    TRANSFORMED_SUITE,
    _context,
)

# A repaired kind of dirt is a warning; on more than 1% of rows it is reported as a failed warning.
REPAIRED_MOSTLY = 0.99


def _expectation(kind: str, severity: str, why: str, **kwargs) -> dict:
    # An open bound is left out (GX drops null kwargs when it stores a suite).
    return {"type": kind, "kwargs": {k: v for k, v in kwargs.items() if v is not None}, "meta": {"severity": severity, "why": why}}


def raw_suite_expectations() -> list[dict]:
    """Gate 1, derived from the schema: schema adherence, types, nulls, ranges, dirty-row facts.

    A row is quarantined only when it cannot be used: a bad label, an unreadable or future start
    time, a calendar that disagrees with it, a duplicate. Dirt in a model input (a column whose
    `out_of_range` is "repair", zero seconds or miles, an implausible speed) is counted as a
    warning and kept: the transform graph repairs it (schema.REPAIRS), as it will at serving."""
    exps = [_expectation("expect_table_row_count_to_be_between", "batch", "an empty extract means an upstream failure", min_value=1)]
    for col in schema.COLUMNS:
        exps.append(_expectation("expect_column_to_exist", "batch", "schema adherence", column=col.name))
        exps.append(
            _expectation(
                "expect_column_values_to_be_in_type_list", "batch", f"{col.name} is a {col.kind}", column=col.name, type_list=col.pandas_types
            )
        )
        if not col.nullable:
            exps.append(_expectation("expect_column_values_to_not_be_null", "quarantine", f"{col.name} is required", column=col.name))
        repair = {"mostly": REPAIRED_MOSTLY} if col.out_of_range == "repair" else {}
        severity = "warn" if repair else "quarantine"
        if col.name == schema.TIMESTAMP:
            # No trip starts after the run's data clock (the extract's window end, or the stream's
            # data time plus its tolerance): such a time is a clock fault, and it would let one
            # trip move every trailing window forward.
            exps.append(
                _expectation(
                    "expect_column_values_to_be_between",
                    "quarantine",
                    f"{col.why}, not after the data clock",
                    column=col.name,
                    min_value=col.min_value,
                    max_value={"$PARAMETER": DATA_CLOCK_PARAMETER},
                )
            )
        elif col.min_value is not None or col.max_value is not None:
            exps.append(
                _expectation(
                    "expect_column_values_to_be_between",
                    severity,
                    col.why,
                    column=col.name,
                    min_value=col.min_value,
                    max_value=col.max_value,
                    **repair,
                )
            )
        if col.allowed:
            exps.append(_expectation("expect_column_values_to_be_in_set", severity, col.why, column=col.name, value_set=list(col.allowed), **repair))
    exps += [
        # The calendar columns must say what the timestamp says (1 = disagrees).
        _expectation(
            "expect_column_values_to_be_in_set",
            "quarantine",
            "hour, weekday and month agree with trip_start_timestamp",
            column=CALENDAR_DISAGREES,
            value_set=[0],
        ),
        # An exact copy of an earlier row is one trip recorded twice: it would count twice.
        _expectation("expect_column_values_to_be_in_set", "quarantine", "a trip is recorded once", column=DUPLICATE_ROW, value_set=[0]),
        # Distance over duration: an odometer glitch (the 1,710-mile trips). Repaired, not quarantined.
        _expectation(
            "expect_column_values_to_be_between",
            "warn",
            f"no taxi averages more than {schema.MAX_SPEED_MPH:.0f} mph: the graph does not trust such a distance",
            column=IMPLIED_SPEED,
            min_value=0,
            max_value=schema.MAX_SPEED_MPH,
            mostly=REPAIRED_MOSTLY,
        ),
        # Null rates: a sudden jump means a broken upstream feed, not dirty rows.
        _expectation(
            "expect_column_proportion_of_non_null_values_to_be_between",
            "batch",
            "company is missing on about a third of trips",
            column="company",
            min_value=0.4,
        ),
        _expectation(
            "expect_column_proportion_of_non_null_values_to_be_between",
            "batch",
            "dropoff coordinates are nearly always present",
            column="dropoff_latitude",
            min_value=0.8,
        ),
        # Known dirt the model copes with: reported, never quarantined.
        # (GX keeps one expectation per type and column, so these are not a second "between".)
        _expectation(
            "expect_column_values_to_not_be_in_set", "warn", "27% of meters record no miles", column="trip_miles", value_set=[0], mostly=0.6
        ),
        _expectation(
            "expect_column_values_to_not_be_in_set", "warn", "3.6% of meters record no duration", column="trip_seconds", value_set=[0], mostly=0.9
        ),
        _expectation("expect_column_values_to_not_be_null", "warn", "seconds are rarely missing", column="trip_seconds", mostly=0.99),
        _expectation("expect_column_values_to_not_be_null", "warn", "miles are rarely missing", column="trip_miles", mostly=0.99),
        _expectation("expect_column_values_to_not_be_null", "warn", "company is often missing", column="company", mostly=0.6),
    ]
    return exps


def transformed_suite_expectations() -> list[dict]:
    """Gate 2: every transformed feature finite, inside its id space, and vocabularies covering the data."""
    exps = []
    for name, (kind, size) in transformed_feature_kinds().items():
        exps.append(_expectation("expect_column_to_exist", "batch", "transform output complete", column=name))
        exps.append(_expectation("expect_column_values_to_not_be_null", "batch", "no NaN after transform", column=name))
        if kind == "dense":
            # z-scores beyond +-100 or inf mean a broken scale, not an unusual trip.
            exps.append(
                _expectation("expect_column_values_to_be_between", "batch", "finite, sane z-scores", column=name, min_value=-100, max_value=100)
            )
        elif kind == "scale":
            low, high = schema.FARE_SCALE_RANGE
            exps.append(
                _expectation(
                    "expect_column_values_to_be_between", "batch", "a multiplier inside its clip range", column=name, min_value=low, max_value=high
                )
            )
        else:
            exps.append(
                _expectation("expect_column_values_to_be_between", "batch", "inside the id space", column=name, min_value=0, max_value=size - 1)
            )
    for key in schema.VOCAB_FEATURES:
        exps.append(
            _expectation(
                "expect_column_values_to_be_between",
                "batch",
                f"vocabulary covers at least {1 - MAX_OOV_SHARE:.0%} of trips",
                column=schema.transformed_name(key),
                min_value=0,
                max_value={"$PARAMETER": f"{key}_vocabulary_max_id"},
                mostly=1 - MAX_OOV_SHARE,
            )
        )
    return exps


def write_suites(expectations_dir: Path) -> list[Path]:
    """(Re)generate the versioned suite and checkpoint files from the schema module."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    ctx = _context(expectations_dir)
    datasource = ctx.data_sources.add_or_update_pandas(_DATASOURCE)
    written = []
    for suite_name, expectations in ((RAW_SUITE, raw_suite_expectations()), (TRANSFORMED_SUITE, transformed_suite_expectations())):
        suite = gx.ExpectationSuite(name=suite_name, meta={"generated_by": "python -m chicago_taxi.quality.suites write-suites"})
        for exp in expectations:
            # add_expectation_configuration() would keep a single expect_column_to_exist.
            suite.add_expectation(ExpectationConfiguration(**exp).to_domain_obj())
        suite = ctx.suites.add_or_update(suite)
        try:
            asset = datasource.get_asset(suite_name)
        except LookupError:
            asset = datasource.add_dataframe_asset(suite_name)
        try:
            batch_definition = asset.get_batch_definition("whole_frame")
        except KeyError:
            batch_definition = asset.add_batch_definition_whole_dataframe("whole_frame")
        validation = ctx.validation_definitions.add_or_update(gx.ValidationDefinition(name=suite_name, data=batch_definition, suite=suite))
        ctx.checkpoints.add_or_update(
            gx.Checkpoint(
                name=f"{suite_name}_gate",
                validation_definitions=[validation],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW_ID]},
            )
        )
        written.append(expectations_dir / "gx" / "expectations" / f"{suite_name}.json")
    pin_ids(expectations_dir / "gx")
    return written


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def pin_ids(gx_dir: Path) -> None:
    """GX gives every suite, expectation, asset and definition a random id on each write; replace
    them (consistently across the files that reference them) by ids derived from where they first
    appear, so regenerating unchanged suites leaves the versioned files unchanged."""
    files = [gx_dir / "great_expectations.yml"] + sorted(
        p for folder in ("expectations", "validation_definitions", "checkpoints") for p in (gx_dir / folder).glob("*.json")
    )
    texts = {path: path.read_text() for path in files if path.exists()}
    pinned: dict[str, str] = {}
    for path, text in texts.items():
        for position, found in enumerate(dict.fromkeys(_UUID.findall(text))):
            pinned.setdefault(found, str(uuid.uuid5(uuid.NAMESPACE_URL, f"chicago_taxi/{path.relative_to(gx_dir)}#{position}")))
    for path, text in texts.items():
        pinned_text = _UUID.sub(lambda m: pinned[m.group(0)], text)
        if pinned_text != text:
            path.write_text(pinned_text)


if __name__ == "__main__":
    from chicago_taxi.core.config import load_settings

    if sys.argv[1:] != ["write-suites"]:
        sys.exit("usage: python -m chicago_taxi.quality.suites write-suites")
    for path in write_suites(load_settings().expectations_dir):
        print(f"wrote {path}")

"""The quality gates as DAG steps: gate 1 on the raw zone (both DAGs), gate 2 on the transformed
features (taxi_training). A failed gate records its section in the run report, then raises."""

from __future__ import annotations

import json

import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.core.config import Settings, load_settings
from chicago_taxi.core.runs import run_paths, run_report
from chicago_taxi.ingest.extract import read_raw_zone


def validate_raw(run_id: str, settings: Settings | None = None) -> dict:
    from chicago_taxi.quality.gates import QualityGateError, validate_raw_trips

    settings = settings or load_settings()
    paths = run_paths(settings, run_id)
    report = run_report(settings, paths)
    try:
        # The data clock is the extract's window end: nothing in the raw zone may start after it.
        clock = (report.read().get("extract") or {}).get("window_end_epoch")
        result = validate_raw_trips(
            read_raw_zone(paths["raw"]), paths["gate"], settings.expectations_dir, paths["reports"], settings.max_bad_row_share, clock
        )
    except QualityGateError as exc:
        gate = json.loads((paths["gate"] / "validate_raw.json").read_text())
        report.update("validate_raw", _gate_section(gate) | {"error": str(exc)})
        raise
    section = _gate_section(result.as_dict())
    report.update("validate_raw", section)
    return section


def _gate_section(gate: dict) -> dict:
    failed = {o["name"]: o["unexpected_count"] for o in gate["outcomes"] if not o["success"]}
    warned = {o["name"]: o["unexpected_count"] for o in gate["outcomes"] if o["severity"] == "warn" and o["unexpected_count"]}
    return {
        "success": gate["success"],
        "rows": gate["row_count"],
        "passed_rows": gate["passed_rows"],
        "quarantined_rows": gate["quarantined_rows"],
        "bad_row_share": gate["bad_row_share"],
        "failed_expectations": failed,
        "warnings": warned,
        "blocking_failures": gate["blocking_failures"],
        "quarantine": gate.get("quarantine_path"),
        "data_docs": gate.get("data_docs"),
    }


def validate_transformed(run_id: str, settings: Settings | None = None) -> dict:
    import tensorflow_transform as tft

    from chicago_taxi.quality.gates import QualityGateError
    from chicago_taxi.quality.gates import validate_transformed as run_gate

    settings = settings or load_settings()
    paths = run_paths(settings, run_id)
    output = tft.TFTransformOutput(str(paths["transform"] / "transform_graph"))
    vocabulary_sizes = {key: output.vocabulary_size_by_name(key) for key in schema.VOCAB_FEATURES}
    frame = pd.concat([pd.read_parquet(paths["transform"] / "train"), pd.read_parquet(paths["transform"] / "holdout")], ignore_index=True)
    report = run_report(settings, paths)
    try:
        result = run_gate(frame, vocabulary_sizes, paths["gate"], settings.expectations_dir, paths["reports"])
    except QualityGateError as exc:
        gate = json.loads((paths["gate"] / "validate_transformed.json").read_text())
        report.update("validate_transformed", _gate_section(gate) | {"error": str(exc)})
        raise
    section = _gate_section(result.as_dict()) | {"vocabulary_sizes": vocabulary_sizes}
    report.update("validate_transformed", section)
    return section

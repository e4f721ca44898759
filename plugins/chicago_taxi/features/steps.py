"""The taxi_features DAG's own steps (after extract and gate 1): the offline store and `feast apply`."""

from __future__ import annotations

import pandas as pd

from chicago_taxi.core.config import Settings, load_settings
from chicago_taxi.core.runs import run_paths, run_report


def build_offline_store(run_id: str, settings: Settings | None = None) -> dict:
    """Point-in-time aggregates of the validated trips into the Feast offline store (Parquet)."""
    from chicago_taxi.features.aggregates import write_offline_store

    settings = settings or load_settings()
    paths = run_paths(settings, run_id)
    written = write_offline_store(pd.read_parquet(paths["gate"] / "clean.parquet"), settings.features_dir)
    run_report(settings, paths).update("build_offline_store", written)
    return written


def feast_apply(run_id: str, settings: Settings | None = None) -> dict:
    from chicago_taxi.features.store import apply_definitions

    settings = settings or load_settings()
    section = apply_definitions(settings)
    run_report(settings, run_paths(settings, run_id)).update("feast_apply", section)
    return section

"""Feast data sources: the Parquet files the taxi_features DAG writes, and a push source
through which streaming trips update the online store."""

from feast import FileSource, PushSource

from chicago_taxi.core import schema
from chicago_taxi.core.config import load_settings
from chicago_taxi.features.aggregates import CREATED, EVENT_TIMESTAMP
from chicago_taxi.features.push import PUSH_SOURCE

FEATURES_DIR = load_settings().features_dir
_VIEWS = {v.name: v for v in schema.STORE_VIEWS}


def _file_source(view_name: str) -> FileSource:
    return FileSource(
        name=f"{view_name}_source",
        path=str(FEATURES_DIR / f"{view_name}.parquet"),
        timestamp_field=EVENT_TIMESTAMP,
        created_timestamp_column=CREATED,
        description=f"Point-in-time aggregates for {view_name}, written by the taxi_features DAG",
        owner="mlops",
        tags={"cadence": _VIEWS[view_name].cadence},
    )


area_hourly_source = _file_source("area_hourly_stats")
city_fare_index_source = _file_source("city_hourly_fare_index")
company_half_hourly_source = _file_source("company_half_hourly_stats")

# Streaming updates of company statistics (Kafka ingestion pushes here).
company_stats_push = PushSource(
    name=PUSH_SOURCE,
    batch_source=company_half_hourly_source,
    description="Company statistics pushed by the streaming ingestion",
    owner="mlops",
    tags={"cadence": "half_hourly", "mode": "push"},
)

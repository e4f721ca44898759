"""Feast data sources: the Parquet files the taxi_features DAG writes, and a push source
through which streaming trips update the online store."""
import os

from feast import FileSource, PushSource

from chicago_taxi import schema

FEATURES_DIR = os.environ.get("TAXI_FEATURES_DIR", "var/features")
_VIEWS = {v.name: v for v in schema.STORE_VIEWS}


def _file_source(view_name: str) -> FileSource:
    return FileSource(
        name=f"{view_name}_source",
        path=os.path.join(FEATURES_DIR, f"{view_name}.parquet"),
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
        description=f"Point-in-time aggregates for {view_name}, written by the taxi_features DAG",
        owner="mlops",
        tags={"cadence": _VIEWS[view_name].cadence},
    )


area_hourly_source = _file_source("area_hourly_stats")
city_fare_index_source = _file_source("city_hourly_fare_index")
company_half_hourly_source = _file_source("company_half_hourly_stats")

# Streaming updates of company statistics (Kafka ingestion pushes here).
company_stats_push = PushSource(
    name="company_stats_push",
    batch_source=company_half_hourly_source,
    description="Company statistics pushed by the streaming ingestion",
    owner="mlops",
    tags={"cadence": "half_hourly", "mode": "push"},
)

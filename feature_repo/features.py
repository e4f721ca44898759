"""Feast feature views, derived from chicago_taxi.schema.STORE_VIEWS (one source of truth).
The `cadence` tag tells the materialization DAGs which views are theirs."""
from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float32, Int64

from chicago_taxi import schema
from data_sources import area_hourly_source, city_fare_index_source, company_stats_push
from entities import city, company, pickup_area

_VIEWS = {v.name: v for v in schema.STORE_VIEWS}


def _fields(view_name: str) -> list[Field]:
    return [Field(name=f, dtype=Int64 if "_trips_" in f else Float32) for f in _VIEWS[view_name].features]


area_hourly_stats = FeatureView(
    name="area_hourly_stats",
    entities=[pickup_area],
    ttl=timedelta(minutes=_VIEWS["area_hourly_stats"].window_minutes),
    schema=_fields("area_hourly_stats"),
    source=area_hourly_source,
    online=True,
    description="Per pickup area, trailing 7 days before each hour: trips, fare per mile, mean trip seconds",
    owner="mlops",
    tags={"cadence": "hourly"},
)

city_hourly_fare_index = FeatureView(
    name="city_hourly_fare_index",
    entities=[city],
    ttl=timedelta(minutes=_VIEWS["city_hourly_fare_index"].window_minutes),
    schema=_fields("city_hourly_fare_index"),
    source=city_fare_index_source,
    online=True,
    description="City-wide fare index before each hour: median over the trailing 14 days of fare / meter fare at the reference tariff",
    owner="mlops",
    tags={"cadence": "hourly"},
)

company_half_hourly_stats = FeatureView(
    name="company_half_hourly_stats",
    entities=[company],
    ttl=timedelta(minutes=_VIEWS["company_half_hourly_stats"].window_minutes),
    schema=_fields("company_half_hourly_stats"),
    source=company_stats_push,
    online=True,
    description="Per company, trailing 24 hours before each half hour: trips and mean fare",
    owner="mlops",
    tags={"cadence": "half_hourly"},
)

"""Feast feature views, derived from chicago_taxi.core.schema.STORE_VIEWS (one source of truth).
The `cadence` tag tells the materialization DAGs which views are theirs."""

from datetime import timedelta

from data_sources import area_hourly_source, city_fare_index_source, company_stats_push
from entities import city, company, pickup_area
from feast import FeatureView, Field
from feast.types import Float32, Int64

from chicago_taxi.core import schema

_VIEWS = {v.name: v for v in schema.STORE_VIEWS}
_FEAST_TYPES = {"int64": Int64, "float32": Float32}


def _view(name: str, entity, source, description: str) -> FeatureView:
    """A view whose TTL (its window), fields and cadence tag come from schema.STORE_VIEWS."""
    spec = _VIEWS[name]
    return FeatureView(
        name=name,
        entities=[entity],
        ttl=timedelta(minutes=spec.window_minutes),
        schema=[Field(name=f.name, dtype=_FEAST_TYPES[f.dtype]) for f in spec.specs],
        source=source,
        online=True,
        description=description,
        owner="mlops",
        tags={"cadence": spec.cadence},
    )


area_hourly_stats = _view(
    "area_hourly_stats",
    pickup_area,
    area_hourly_source,
    "Per pickup area, trailing 7 days before each hour: trips, fare per mile, mean trip seconds",
)
city_hourly_fare_index = _view(
    "city_hourly_fare_index",
    city,
    city_fare_index_source,
    "City-wide fare index before each hour: median over the trailing 14 days of fare / meter fare at the reference tariff",
)
company_half_hourly_stats = _view(
    "company_half_hourly_stats",
    company,
    company_stats_push,
    "Per company, trailing 24 hours before each half hour: trips and mean fare",
)

"""Feast feature services: the set of features the fare model reads."""

from feast import FeatureService
from features import area_hourly_stats, city_hourly_fare_index, company_half_hourly_stats

fare_model_features = FeatureService(
    name="fare_model_features",
    features=[area_hourly_stats, city_hourly_fare_index, company_half_hourly_stats],
    description="Recent context per pickup area and company, and the city-wide fare index, for the fare model",
    owner="mlops",
    tags={"model": "chicago_taxi_fare"},
)

"""Feast entities: what the taxi features are keyed by."""

from feast import Entity, ValueType

from chicago_taxi.core import schema

pickup_area = Entity(
    name="pickup_community_area",
    join_keys=["pickup_community_area"],
    value_type=ValueType.INT64,
    description=f"Chicago community area (1-77) where the trip started; {schema.MISSING_AREA_KEY} = unknown",
    owner="mlops",
    tags={"domain": "geography"},
)

company = Entity(
    name="company",
    join_keys=["company"],
    value_type=ValueType.STRING,
    description=f"Taxi company; {schema.MISSING_COMPANY_KEY!r} when the trip record has none",
    owner="mlops",
    tags={"domain": "operator"},
)

city = Entity(
    name="city",
    join_keys=["city"],
    value_type=ValueType.INT64,
    description=f"The city every trip belongs to: Chicago, FIPS place code {schema.CITY_KEY}; keys city-wide statistics",
    owner="mlops",
    tags={"domain": "geography"},
)

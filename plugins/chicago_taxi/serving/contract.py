"""The prediction service's contract: its request model, derived from the trip schema (types,
ranges, required fields), and its answer. Plain pydantic, shared by the BentoML service, the
benchmark's bare app and the tests."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from chicago_taxi.core import schema
from chicago_taxi.ingest.messages import calendar_fields, from_legacy, is_legacy

log = logging.getLogger(__name__)
BENTO_NAME = "chicago_taxi_fare_service"
_PY_TYPES = {"int": int, "float": float, "string": str}


def _trip_fields() -> dict:
    fields = {}
    for name in schema.MODEL_INPUT_COLUMNS:
        col = schema.COLUMNS_BY_NAME[name]
        py_type = _PY_TYPES[col.kind]
        constraints = {}
        if col.min_value is not None:
            constraints["ge"] = col.min_value
        if col.max_value is not None:
            constraints["le"] = col.max_value
        description = col.why or name
        if col.required_for_scoring:
            fields[name] = (py_type, Field(..., description=description, **constraints))
        else:
            fields[name] = (py_type | None, Field(None, description=description, **constraints))
    return fields


def _normalize(cls, data):
    """Before validation: the legacy upstream shape (SPEC: pickup_datetime, trip_distance,
    fare_amount, ...) is mapped onto the Chicago columns; and the hour, weekday and month a
    `trip_start_timestamp` determines are derived when absent, and must agree with it when sent."""
    if not isinstance(data, dict):
        return data
    if is_legacy(data):
        data = from_legacy(data)
    stamp = data.get(schema.TIMESTAMP)
    column = schema.COLUMNS_BY_NAME[schema.TIMESTAMP]
    if isinstance(stamp, int) and not isinstance(stamp, bool) and column.min_value <= stamp <= column.max_value:
        derived = calendar_fields(datetime.fromtimestamp(stamp, UTC))  # wall clock stored as UTC
        disagree = [f"{name}={data[name]!r} (the timestamp says {value})" for name, value in derived.items() if data.get(name) not in (None, value)]
        if disagree:
            raise ValueError(f"{', '.join(disagree)} disagree(s) with trip_start_timestamp={stamp}; send matching values or leave them out")
        data = {**data, **{name: value for name, value in derived.items() if data.get(name) is None}}
    return data


# One request field per model input, with the schema's types and ranges, plus an optional
# `trip_id` echoed in the answer and the optional start timestamp; extra fields are ignored.
TripRequest: type[BaseModel] = create_model(
    "TripRequest",
    __config__=ConfigDict(extra="ignore"),
    __validators__={"normalize": model_validator(mode="before")(classmethod(_normalize))},
    trip_id=(str | None, Field(None, description="caller's id for the trip, echoed in the answer", max_length=200)),
    trip_start_timestamp=(
        int | None,
        Field(
            None,
            description="trip start, epoch seconds of Chicago wall-clock time; trip_start_hour, _day and _month are derived from it when absent",
            ge=schema.COLUMNS_BY_NAME[schema.TIMESTAMP].min_value,
            le=schema.COLUMNS_BY_NAME[schema.TIMESTAMP].max_value,
        ),
    ),
    **_trip_fields(),
)


class PredictionResponse(BaseModel):
    fare: float = Field(description="predicted fare in USD")
    model_version: str = Field(description="registered version of chicago_taxi_fare that answered")
    features_defaulted: list[str] = Field(description="store features the online store had no fresh value for; filled as in training")
    degraded: bool = Field(description="true when the online store could not be read and every store feature was defaulted")
    trip_id: str | None = None

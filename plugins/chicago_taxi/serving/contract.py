"""The prediction service's contract: its request model, derived from the trip schema (types,
ranges, required fields), and its answer. Plain pydantic, shared by the BentoML service, the
benchmark's bare app and the tests."""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from chicago_taxi.core import schema

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


def _accept_legacy(cls, data):
    """The legacy upstream shape (SPEC: pickup_datetime, trip_distance, fare_amount, ...) is
    mapped onto the Chicago columns before validation; Chicago-shaped trips pass unchanged."""
    from chicago_taxi.ingest.messages import from_legacy, is_legacy

    if isinstance(data, dict) and is_legacy(data):
        return from_legacy(data)
    return data


# One request field per model input, with the schema's types and ranges, plus an optional
# `trip_id` echoed in the answer; extra fields are ignored.
TripRequest: type[BaseModel] = create_model(
    "TripRequest",
    __config__=ConfigDict(extra="ignore"),
    __validators__={"accept_legacy": model_validator(mode="before")(classmethod(_accept_legacy))},
    trip_id=(str | None, Field(None, description="caller's id for the trip, echoed in the answer", max_length=200)),
    **_trip_fields(),
)


class PredictionResponse(BaseModel):
    fare: float = Field(description="predicted fare in USD")
    model_version: str = Field(description="registered version of chicago_taxi_fare that answered")
    features_defaulted: list[str] = Field(description="store features the online store had no fresh value for; filled as in training")
    degraded: bool = Field(description="true when the online store could not be read and every store feature was defaulted")
    trip_id: str | None = None

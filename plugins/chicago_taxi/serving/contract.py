"""The prediction service's contract: its request model, derived from the trip schema (types,
ranges, required fields), and its answers. Plain pydantic, shared by the BentoML service, the
benchmark's bare app and the tests.

A trip is scored whenever it can be interpreted; it is refused, naming each bad field, for:
- a field of the wrong type (numbers must be JSON numbers, an integer may be sent as 8.0; a
  string holds valid Unicode), a number that is not finite, a string longer than the parser's
  limit (`MAX_STRING_LENGTH`, `MAX_ID_LENGTH` for `trip_id`), a required field missing;
- a value outside the range of a column whose range the schema enforces (`out_of_range=
  "quarantine"`: negative miles or seconds, hour 25, day 8, month 13, a timestamp before 2013).
Values that occur in real data are scored: columns the transform graph repairs (`out_of_range=
"repair"`: coordinates outside Chicago, area ids outside 1..77, unknown payment types) take any
value, zero miles and seconds are valid, and the answer's `input_warnings` name each repair.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from chicago_taxi.core import schema
from chicago_taxi.ingest.messages import MAX_ID_LENGTH, MAX_STRING_LENGTH, InvalidMessage, calendar_fields, from_legacy, is_legacy

log = logging.getLogger(__name__)
BENTO_NAME = "chicago_taxi_fare_service"
_PY_TYPES = {"int": int, "float": float, "string": str}
# An integer beyond 32 bits is no area, hour or tract id: refused, so it cannot overflow the graph's inputs.
INT_BOUNDS = (-(2**31), 2**31 - 1)
# Epoch seconds after 2100-01-01 are no trip start (epoch milliseconds, most likely).
MAX_TIMESTAMP = 4102444800
CALENDAR_FIELDS = ("trip_start_hour", "trip_start_day", "trip_start_month")


def _json_number(value: Any) -> Any:
    """A number field takes a JSON number: a string or a boolean is the wrong type, not coerced."""
    if isinstance(value, (str, bytes, bool)):
        raise PydanticCustomError("number_type", "Input should be a JSON number, not {kind}", {"kind": type(value).__name__})
    return value


def _unicode_text(value: str) -> str:
    """Strings become Kafka/Redis keys and graph inputs encoded as UTF-8: a lone surrogate cannot."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("string_unicode", "Input should be valid Unicode text: it holds a lone surrogate") from None
    return value


def _number(kind: str, **constraints) -> Any:
    """A number field's type: a JSON number of `kind` ("int" or "float") within `constraints`."""
    if kind == "float":
        constraints["allow_inf_nan"] = False
    return Annotated[_PY_TYPES[kind], Field(**constraints), BeforeValidator(_json_number)]


def _text(max_length: int) -> Any:
    """A string field's type: valid Unicode text of at most `max_length` characters."""
    return Annotated[str, Field(max_length=max_length), AfterValidator(_unicode_text)]


def _bounds_text(column: schema.Column) -> str:
    low = "-inf" if column.min_value is None else f"{column.min_value:g}"
    high = "inf" if column.max_value is None else f"{column.max_value:g}"
    return f"[{low}, {high}]"


def _trip_field(column: schema.Column) -> tuple:
    """One request field for a model input: the column's type, and its range when the schema
    enforces it; a column the graph repairs takes any value and documents its normal range."""
    description = column.why or column.name
    if column.kind == "string":
        annotation = _text(MAX_STRING_LENGTH)
        if column.allowed:
            description += f"; usually one of {', '.join(column.allowed)}, any other value is scored as an unknown one"
    else:
        if column.out_of_range == "repair":
            description += f"; normally in {_bounds_text(column)}, a value outside it is repaired (see input_warnings)"
            low, high = (None, None)
        else:
            low, high = column.min_value, column.max_value
        if column.kind == "int":
            low = INT_BOUNDS[0] if low is None else low
            high = INT_BOUNDS[1] if high is None else high
        annotation = _number(column.kind, **{k: v for k, v in (("ge", low), ("le", high)) if v is not None})
    if column.name in CALENDAR_FIELDS:
        # Optional in the spec (the timestamp determines it); `_calendar_field` requires it without one.
        description += "; required unless trip_start_timestamp is sent, which determines it"
        return annotation | None, Field(None, description=description, validate_default=True)
    if column.required_for_scoring:
        return annotation, Field(..., description=description)
    return annotation | None, Field(None, description=description)


def _integral(value: Any) -> int | None:
    """The integer a JSON number stands for (1420074000 or 1420074000.0), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():  # also NaN and the infinities
        return None
    return int(value)


def _normalize(cls, data):
    """Before validation: the legacy upstream shape (SPEC: pickup_datetime, trip_distance,
    fare_amount, ...) is mapped onto the Chicago columns; and the hour, weekday and month a
    `trip_start_timestamp` determines are derived when absent (`_calendar_field` checks the ones
    sent)."""
    if not isinstance(data, dict):
        return data
    if is_legacy(data):
        try:
            data = from_legacy(data)
        except InvalidMessage as exc:
            raise ValueError("; ".join(f"{e['field']}: {e['problem']}" for e in exc.errors) or exc.reason) from None
    stamp = _integral(data.get(schema.TIMESTAMP))
    if stamp is not None and schema.COLUMNS_BY_NAME[schema.TIMESTAMP].min_value <= stamp <= MAX_TIMESTAMP:
        derived = calendar_fields(datetime.fromtimestamp(stamp, UTC))  # wall clock stored as UTC
        data = {**data, **{name: value for name, value in derived.items() if data.get(name) is None}}
    return data


def _calendar_field(cls, value: int | None, info: ValidationInfo) -> int | None:
    """A calendar field is required without a valid timestamp, and must say what it says with one."""
    stamp = info.data.get(schema.TIMESTAMP)
    if value is None:
        if stamp is None:
            raise PydanticCustomError("missing", "Field required (or send trip_start_timestamp, which determines it)")
        return value
    if stamp is None:
        return value
    expected = calendar_fields(datetime.fromtimestamp(stamp, UTC))[info.field_name]
    if value != expected:
        raise PydanticCustomError(
            "calendar_mismatch",
            "{field}={value} (the timestamp says {expected}) disagrees with trip_start_timestamp={stamp}: send the value it says or leave the field out",
            {"field": info.field_name, "value": value, "expected": expected, "stamp": stamp},
        )
    return value


# One request field per model input, with the schema's types and ranges, plus an optional
# `trip_id` echoed in the answer and the optional start timestamp; extra fields are ignored.
# (Field order matters: the timestamp is validated before the calendar fields checked against it.)
TripRequest: type[BaseModel] = create_model(
    "TripRequest",
    __config__=ConfigDict(extra="ignore"),
    __validators__={
        "normalize": model_validator(mode="before")(classmethod(_normalize)),
        "calendar_field": field_validator(*CALENDAR_FIELDS)(classmethod(_calendar_field)),
    },
    trip_id=(_text(MAX_ID_LENGTH) | None, Field(None, description="caller's id for the trip, echoed in the answer")),
    trip_start_timestamp=(
        _number("int", ge=schema.COLUMNS_BY_NAME[schema.TIMESTAMP].min_value, le=MAX_TIMESTAMP) | None,
        Field(
            None,
            description="trip start, epoch seconds of Chicago wall-clock time; trip_start_hour, _day and _month are derived from it "
            "when absent; after 2100 it is no epoch seconds (milliseconds?) and refused",
        ),
    ),
    **{name: _trip_field(schema.COLUMNS_BY_NAME[name]) for name in schema.MODEL_INPUT_COLUMNS},
)

# A /predict_batch item: any JSON object, validated on its own (`check_trip`) so that one trip
# that cannot be interpreted gets an error entry instead of refusing the batch. Documented as a
# TripRequest in the OpenAPI spec.
BatchTrip = Annotated[dict[str, Any], WithJsonSchema({**TripRequest.model_json_schema(), "title": "BatchTrip"})]


class InputWarning(BaseModel):
    code: str = Field(description="which repair, one of chicago_taxi.core.schema.REPAIRS")
    fields: list[str] = Field(description="the request fields it concerns")
    reason: str = Field(description="what was wrong with them and how the trip was priced instead")


class PredictionResponse(BaseModel):
    fare: float = Field(description="predicted fare in USD")
    model_version: str = Field(description="registered version of chicago_taxi_fare that answered")
    features_defaulted: list[str] = Field(description="store features the online store had no fresh value for; filled as in training")
    input_warnings: list[InputWarning] = Field(description="the repairs the model made to the trip's inputs before scoring it (empty: none)")
    degraded: bool = Field(description="true when the online store could not be read and every store feature was defaulted")
    trip_id: str | None = None


class FieldProblem(BaseModel):
    field: str = Field(description='the request field, "(trip)" for the trip as a whole')
    problem: str


class TripError(BaseModel):
    """The /predict_batch entry of a trip that cannot be interpreted (the other trips are scored)."""

    index: int = Field(description="the trip's position in `trips`, from 0")
    trip_id: str | None = Field(None, description="the trip's trip_id when it sent a usable one")
    errors: list[FieldProblem] = Field(description="every problem found, one per field")


class BatchAnswer(RootModel[PredictionResponse | TripError]):
    """One /predict_batch entry: the trip's answer, or its error entry when it cannot be interpreted."""

    @classmethod
    def of(cls, entry: dict) -> BatchAnswer:
        """The model of one `FareService.predict_each` entry."""
        return cls(PredictionResponse(**entry) if "fare" in entry else TripError(**entry))


def field_problems(error: ValidationError) -> list[dict[str, str]]:
    """A ValidationError as {"field", "problem"} entries (the names the Kafka parser uses)."""
    problems = []
    for e in error.errors(include_url=False, include_input=False, include_context=False):
        problem = e["msg"].removeprefix("Value error, ")
        problems.append({"field": ".".join(str(part) for part in e["loc"]) or "(trip)", "problem": problem})
    return problems


_TRIP_ID = TypeAdapter(_text(MAX_ID_LENGTH))


def _usable_trip_id(item: Any) -> str | None:
    """The item's trip_id when it is one the answer can echo, else None."""
    try:
        return _TRIP_ID.validate_python(item.get("trip_id")) if isinstance(item, dict) else None
    except ValidationError:
        return None


def check_trip(index: int, item: dict) -> tuple[dict | None, dict | None]:
    """One batch item: (the validated trip's fields, None), or (None, its error entry)."""
    try:
        return TripRequest.model_validate(item).model_dump(), None
    except ValidationError as error:
        return None, {"index": index, "trip_id": _usable_trip_id(item), "errors": field_problems(error)}

"""Parse and validate one trip message from Kafka into a Chicago-shaped row.

A message is JSON with the Chicago columns of `chicago_taxi.core.schema` plus `trip_id`, or the legacy
shape upstream teams already send (`pickup_datetime`, `trip_distance`, `fare_amount`, ...), which
`from_legacy` maps onto the Chicago columns. Types and ranges come from `schema.COLUMNS`, so the
parser, the quality gates and the model agree on what a valid trip is. A message that fails
raises `InvalidMessage` listing every problem; `dead_letter_record` turns it into what the
dead-letter topic stores.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Any

from chicago_taxi.core.schema import COLUMNS, LABEL, RAW_COLUMN_NAMES, TIMESTAMP, Column

TRIP_ID = "trip_id"
# Longest trip id and string value accepted: ids become Kafka and Redis keys; Chicago's company
# names are under 60 characters.
MAX_ID_LENGTH = 200
MAX_STRING_LENGTH = 200
# Numbers must fit what the pipeline stores them in: int64 columns, float32 model inputs.
MAX_INT = 2**63 - 1
MAX_FLOAT = 3.4028234663852886e38
# Needed to score the trip, plus its event time (windows, pushes to the feature store).
REQUIRED_COLUMNS = tuple(c.name for c in COLUMNS if c.required_for_scoring) + (TIMESTAMP,)

# The legacy shape (SPEC "Kafka topics and the trip message").
LEGACY_MARKERS = ("pickup_datetime", "trip_distance")
LEGACY_REQUIRED = ("pickup_datetime", "dropoff_datetime", "trip_distance")
LEGACY_COORDINATES = ("pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude")
# Legacy fields with no Chicago column: kept under their own name, never a model input.
LEGACY_EXTRA_FIELDS = ("passenger_count",)
# The legacy fields a Chicago column is computed from, so errors name what the sender sent
# (the first one), and a column whose sources are already reported is not reported again.
LEGACY_SOURCE_FIELDS = {
    "trip_miles": ("trip_distance",),
    LABEL: ("fare_amount",),
    "trip_seconds": ("dropoff_datetime", "pickup_datetime"),
    TIMESTAMP: ("pickup_datetime",),
    "trip_start_hour": ("pickup_datetime",),
    "trip_start_month": ("pickup_datetime",),
    "trip_start_day": ("pickup_datetime",),
}


class InvalidMessage(ValueError):
    """A trip message that cannot be used: `reason` in a few words, `errors` one per field."""

    def __init__(self, reason: str, errors: list[dict[str, str]] | None = None, trip_id: str | None = None):
        self.reason = reason
        self.errors = list(errors or [])
        self.trip_id = trip_id
        details = "; ".join(f"{e['field']}: {e['problem']}" for e in self.errors)
        super().__init__(f"{reason}: {details}" if details else reason)


def _reject_constant(name: str):
    # json.loads accepts NaN and Infinity by default; they are not JSON and not a trip value.
    raise ValueError(f"{name} is not valid JSON")


def _decode(raw: bytes | bytearray | str | None) -> dict:
    if raw is None:
        raise InvalidMessage("empty message", [{"field": "(message)", "problem": "no value (tombstone)"}])
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidMessage("not JSON", [{"field": "(message)", "problem": f"not UTF-8 text: {exc}"}]) from exc
    try:
        obj = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        # RecursionError: nesting deeper than the interpreter's stack (a trip is one flat object).
        problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise InvalidMessage("not JSON", [{"field": "(message)", "problem": f"{problem} in {_preview(raw)}"}]) from exc
    if not isinstance(obj, dict):
        raise InvalidMessage("not a JSON object", [{"field": "(message)", "problem": f"got a JSON {type(obj).__name__}: {_preview(raw)}"}])
    return obj


def _preview(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _shown(value: Any, limit: int = 80) -> str:
    """`repr(value)` for an error message, cut short (a value may be megabytes of digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    """A finite number that fits a float (JSON integers of 309 or more digits do not)."""
    try:
        return _is_number(value) and math.isfinite(value)
    except OverflowError:
        return False


def _text_problem(value: str, limit: int) -> str | None:
    """Why a string cannot travel on as a key or a value: too long, or not encodable as UTF-8
    (a lone surrogate from a JSON escape such as "\\ud800")."""
    if len(value) > limit:
        return f"{len(value)} characters, at most {limit} allowed: {_preview(value)}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"not valid Unicode text (a lone surrogate): {ascii(value[:60])}"
    return None


def _check_column(column: Column, value: Any) -> tuple[Any, str | None]:
    """The value converted to the column's kind, or the problem with it. A value outside the
    range or set of a column whose `out_of_range` is "repair" is kept: it is real dirt that the
    transform graph repairs (schema.REPAIRS), so the trip is scored. So is a fare outside its
    range: scoring never reads the label, and the stream's statistics skip such a fare
    (`features.stream_log.stats_rows`), as training quarantines it."""
    repair = column.out_of_range == "repair" or column.name == LABEL
    if column.kind == "string":
        if not isinstance(value, str):
            return None, f"expected a string, got {_shown(value)}"
        problem = _text_problem(value, MAX_STRING_LENGTH)
        if problem:
            return None, problem
        if column.allowed is not None and value not in column.allowed and not repair:
            return None, f"{_shown(value)} is not one of {', '.join(column.allowed)}"
        return value, None
    if not _is_finite(value):
        return None, f"expected {'an integer' if column.kind == 'int' else 'a number'}, got {_shown(value)}"
    original = value
    if column.kind == "int":
        if isinstance(value, float) and not value.is_integer():
            return None, f"expected an integer, got {_shown(value)}"
        value = int(value)
        if not -MAX_INT <= value <= MAX_INT:
            return None, f"{_shown(original)} does not fit a 64-bit integer"
    else:
        value = float(value)
        if abs(value) > MAX_FLOAT:
            return None, f"{_shown(original)} does not fit the model's 32-bit floats"
    if repair:
        return value, None
    low = "-inf" if column.min_value is None else f"{column.min_value:g}"
    high = "inf" if column.max_value is None else f"{column.max_value:g}"
    allowed = f"allowed [{low}, {high}]" + (f": {column.why}" if column.why else "")
    if column.min_value is not None and value < column.min_value:
        return None, f"{_shown(original)} is below the minimum ({allowed})"
    if column.max_value is not None and value > column.max_value:
        return None, f"{_shown(original)} is above the maximum ({allowed})"
    return value, None


def _parse_iso(value: Any) -> tuple[datetime | None, str | None]:
    if not isinstance(value, str):
        return None, f"expected an ISO 8601 date-time string, got {_shown(value)}"
    try:
        return datetime.fromisoformat(value.strip()), None
    except ValueError:
        return None, f"{_shown(value)} is not an ISO 8601 date-time"


def _wall_clock_epoch(moment: datetime) -> int:
    # Chicago stores local wall-clock time read as UTC: keep the wall clock, drop any offset.
    return int(moment.replace(tzinfo=UTC).timestamp())


def chicago_weekday(moment: datetime) -> int:
    """Day of week as in the Chicago data: 1 = Sunday ... 7 = Saturday."""
    return moment.isoweekday() % 7 + 1


def calendar_fields(moment: datetime) -> dict[str, int]:
    """The hour, weekday (1 = Sunday) and month columns of a trip starting at `moment` (wall clock)."""
    return {"trip_start_hour": moment.hour, "trip_start_day": chicago_weekday(moment), "trip_start_month": moment.month}


def _map_legacy(message: dict) -> tuple[dict, list[dict[str, str]]]:
    """The Chicago-shaped row of a legacy message, and the problems found while mapping it."""
    errors: list[dict[str, str]] = []
    row: dict[str, Any] = {name: message.get(name) for name in RAW_COLUMN_NAMES}
    for field in LEGACY_REQUIRED:
        if message.get(field) is None:
            errors.append({"field": field, "problem": "missing" if field not in message else "null"})
    pickup = dropoff = None
    if message.get("pickup_datetime") is not None:
        pickup, problem = _parse_iso(message["pickup_datetime"])
        if problem:
            errors.append({"field": "pickup_datetime", "problem": problem})
    if message.get("dropoff_datetime") is not None:
        dropoff, problem = _parse_iso(message["dropoff_datetime"])
        if problem:
            errors.append({"field": "dropoff_datetime", "problem": problem})
    if pickup is not None:
        row[TIMESTAMP] = _wall_clock_epoch(pickup)
        row.update(calendar_fields(pickup))
    if pickup is not None and dropoff is not None:
        both_aware = pickup.tzinfo is not None and dropoff.tzinfo is not None
        # Both with offsets: real elapsed time (right across a DST change); else wall clocks.
        seconds = (dropoff - pickup).total_seconds() if both_aware else (dropoff.replace(tzinfo=None) - pickup.replace(tzinfo=None)).total_seconds()
        if seconds <= 0:
            errors.append(
                {
                    "field": "dropoff_datetime",
                    "problem": f"{message['dropoff_datetime']!r} is not after pickup_datetime {message['pickup_datetime']!r}",
                }
            )
        else:
            row["trip_seconds"] = seconds
    row["trip_miles"] = message.get("trip_distance")
    row[LABEL] = message.get("fare_amount")
    for name in LEGACY_COORDINATES:
        row[name] = message.get(name)
    for name in LEGACY_EXTRA_FIELDS:
        if name in message:
            row[name] = message[name]
    return row, errors


def is_legacy(message: dict) -> bool:
    """Whether a decoded message has the legacy upstream shape."""
    return any(marker in message for marker in LEGACY_MARKERS)


def from_legacy(message: dict) -> dict:
    """Map a legacy message onto the Chicago columns (types and ranges are checked by `parse_trip`).

    trip_miles = trip_distance, fare = fare_amount, trip_seconds = dropoff - pickup. The start
    timestamp, hour, month and weekday (1 = Sunday) come from the pickup's wall-clock time as
    written, offset ignored: the Chicago data holds local time read as UTC, so
    "2024-01-01T10:00:00Z" and "2024-01-01T10:00:00-06:00" both mean 10:00 local. Chicago columns
    the legacy shape lacks are None unless the message carries them; passenger_count is kept.
    """
    row, errors = _map_legacy(message)
    if errors:
        raise InvalidMessage(_reason(errors), errors, trip_id=_trip_id_or_none(message))
    return {TRIP_ID: message.get(TRIP_ID), **row}


def _trip_id_or_none(message: dict) -> str | None:
    """The message's trip id when it can serve as a key: a non-empty, encodable, bounded string."""
    value = message.get(TRIP_ID)
    return value if isinstance(value, str) and value.strip() and _text_problem(value, MAX_ID_LENGTH) is None else None


def _reason(errors: list[dict[str, str]]) -> str:
    fields = list(dict.fromkeys(e["field"] for e in errors))
    return f"invalid field{'s' if len(fields) > 1 else ''}: {', '.join(fields)}"


def parse_trip(raw: bytes | bytearray | str | None) -> dict:
    """One validated trip: `trip_id`, every schema column (absent ones None), legacy extras.

    Raises `InvalidMessage` for anything else, with every problem found, each naming its field.
    """
    message = _decode(raw)
    errors: list[dict[str, str]] = []
    trip_id = _trip_id_or_none(message)
    if trip_id is None:
        value = message.get(TRIP_ID)
        if TRIP_ID not in message:
            problem = "missing"
        elif isinstance(value, str) and value.strip():
            problem = _text_problem(value, MAX_ID_LENGTH)
        else:
            problem = f"expected a non-empty string, got {_shown(value)}"
        errors.append({"field": TRIP_ID, "problem": problem})
    legacy = is_legacy(message)
    if legacy:
        row, mapping_errors = _map_legacy(message)
        errors.extend(mapping_errors)
    else:
        row = {name: message.get(name) for name in RAW_COLUMN_NAMES}
    reported = {e["field"] for e in errors}
    result: dict[str, Any] = {TRIP_ID: trip_id}
    for column in COLUMNS:
        sources = LEGACY_SOURCE_FIELDS.get(column.name, (column.name,)) if legacy else (column.name,)
        field = sources[0]
        value = row.get(column.name)
        if value is None:
            if column.name in REQUIRED_COLUMNS and not reported.intersection(sources):
                errors.append({"field": field, "problem": "missing" if field not in message else "null"})
                reported.add(field)
            result[column.name] = None
            continue
        value, problem = _check_column(column, value)
        if problem and field not in reported:
            errors.append({"field": field, "problem": problem})
            reported.add(field)
        result[column.name] = value
    if legacy:
        for name in LEGACY_EXTRA_FIELDS:
            if name not in row:
                continue
            value = row[name]
            if value is None or (_is_finite(value) and float(value).is_integer() and 0 <= value <= 1000):
                result[name] = None if value is None else int(value)
            else:
                errors.append({"field": name, "problem": f"expected a non-negative integer, got {_shown(value)}"})
    if errors:
        raise InvalidMessage(_reason(errors), errors, trip_id=trip_id)
    return result


def trip_fingerprint(trip: dict) -> str:
    """The sha256 of a parsed trip's content (every field, the id included), to tell a
    redelivery of a trip (same fingerprint) from another trip sent under the same id."""
    canonical = json.dumps(trip, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# A dead letter keeps at most this much of its payload (Kafka refuses messages past ~1 MB, and a
# dead letter must always be publishable); `payload_bytes` and `payload_sha256` identify the whole.
DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024
# Each error's text is cut to this many characters, and at most this many errors are kept.
DEAD_LETTER_PROBLEM_CHARS = 500
DEAD_LETTER_MAX_ERRORS = 50


def dead_letter_record(
    raw: bytes | bytearray | str | None,
    reason: str,
    errors: list[dict[str, str]] | None,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    trip_id: str | None = None,
    failed_at: datetime | None = None,
) -> dict:
    """What the dead-letter topic stores for a rejected message (JSON-serializable, bounded).

    The payload is kept verbatim as text, or base64 when it is not UTF-8, so it can be replayed;
    past `DEAD_LETTER_PAYLOAD_BYTES` only its head is kept (`payload_truncated`), with the whole
    message's size and sha256.
    """
    data = None if raw is None else raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    payload = encoding = digest = None
    if data is not None:
        digest = hashlib.sha256(data).hexdigest()
        head = data[:DEAD_LETTER_PAYLOAD_BYTES]
        if _is_utf8(data):
            # "ignore": a cut may split the last character; drop it rather than base64 a text message.
            payload, encoding = head.decode("utf-8", "ignore"), "utf-8"
        else:
            payload, encoding = base64.b64encode(head).decode("ascii"), "base64"
    moment = failed_at or datetime.now(UTC)
    kept = [{k: str(v)[:DEAD_LETTER_PROBLEM_CHARS] for k, v in e.items()} for e in (errors or [])[:DEAD_LETTER_MAX_ERRORS]]
    return {
        "trip_id": trip_id,
        "reason": str(reason)[:DEAD_LETTER_PROBLEM_CHARS],
        "errors": kept,
        "payload": payload,
        "payload_encoding": encoding,
        "payload_bytes": None if data is None else len(data),
        "payload_sha256": digest,
        "payload_truncated": data is not None and len(data) > DEAD_LETTER_PAYLOAD_BYTES,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "failed_at": moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def trip_id_for(row_index: int) -> str:
    """The replay's stable id of the CSV's data row `row_index` (0-based)."""
    return f"trip-{row_index:05d}"

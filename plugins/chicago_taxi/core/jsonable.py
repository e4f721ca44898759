"""JSON for records that leave the platform (Kafka messages, reports): numpy and pandas values
as plain numbers, NaN as null, times as ISO 8601 UTC with milliseconds."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd


def json_default(value):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, (datetime, pd.Timestamp)):
        return iso(value)
    return str(value)


def iso(moment: datetime | pd.Timestamp) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_ms(ms: int | None) -> str | None:
    return None if ms is None else iso(datetime.fromtimestamp(ms / 1000, UTC))


def now_ms() -> int:
    return int(time.time() * 1000)


def encoded(record: dict) -> bytes:
    """A record as the JSON bytes published to Kafka (numpy numbers, timestamps, NaN as null)."""
    return json.dumps(record, default=json_default).encode()

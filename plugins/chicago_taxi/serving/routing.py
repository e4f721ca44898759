"""Which model answers a trip when a challenger is tried (config/monitoring.yaml `ab`)."""

from __future__ import annotations

import hashlib


def challenger_serves(trip_id: str | None, share: float) -> bool:
    """True when the challenger answers this trip: a deterministic share of trip ids (the same
    trip always goes to the same model, in the stream and in the HTTP service alike). A trip
    without an id is always answered by the champion."""
    if not trip_id or share <= 0:
        return False
    if share >= 1:
        return True
    digest = hashlib.sha256(trip_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share

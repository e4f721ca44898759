"""Replay the vendored Chicago trips onto Kafka as trip messages, at a chosen rate.

Each CSV row becomes one JSON message keyed by its trip_id (the CSV has none: `trip-<row>` of
its 0-based data row, stable across replays, so consumers can de-duplicate). `--legacy` sends the
legacy upstream shape instead; `--bad-share` injects malformed messages (not JSON, a missing
required field, negative miles) at rows drawn with a seed, so a test knows the mix in advance.
Dirty rows of the real data (zero seconds, zero fares) are sent as they are: they are "good"
messages in the producer's sense, and the parser decides.

Drift on demand, so anyone can watch the monitoring loop fire: from a given message (an index)
or a given time (ISO 8601, wall clock of the send), `--drift-fare-scale` multiplies the fare
(the label monitoring joins: model quality drops) and `--drift-shift` moves a numeric input
(`trip_miles=*3` multiplies, `trip_seconds=+600` adds: data drift). Drifted messages carry the
header `taxi-replay-drift` saying what was changed.

    python -m chicago_taxi.ingest.replay --rate 20 --limit 500 --bad-share 0.1
    python -m chicago_taxi.ingest.replay --rate 50 --limit 2000 --drift-from 1000 --drift-shift trip_miles=*3 --drift-fare-scale 1.5
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, NamedTuple

from chicago_taxi.core.schema import COLUMNS, LABEL, RAW_COLUMN_NAMES, TIMESTAMP
from chicago_taxi.ingest.messages import trip_id_for
from chicago_taxi.ingest.topics import RAW_TRIPS, bootstrap_servers

DEFAULT_CSV = Path(__file__).resolve().parents[3] / "data" / "chicago_taxi_trips.csv"
BAD_KINDS = ("not-json", "missing-field", "negative-miles")
# Header on injected bad messages, so a test or a person reading the topic sees what was meant.
DEFECT_HEADER = "taxi-replay-defect"
DRIFT_HEADER = "taxi-replay-drift"
_KINDS = {c.name: c.kind for c in COLUMNS}


class Sent(NamedTuple):
    trip_id: str
    kind: str  # "good", or "bad" for an injected malformed message


class DeliveryFailed(RuntimeError):
    """Some messages were not acknowledged by the broker."""

    def __init__(self, message: str, sent: list[Sent], failed: list[tuple[str, str]]):
        super().__init__(message)
        self.sent = sent
        self.failed = failed


@dataclass(frozen=True)
class Drift:
    """What to change from which message on: `from_index` (0-based message index) or `from_time`
    (wall clock of the send); `fare_scale` multiplies the fare; `shifts` maps a numeric column to
    ("*", k) or ("+", k)."""

    from_index: int | None = None
    from_time: datetime | None = None
    fare_scale: float = 1.0
    shifts: dict[str, tuple[str, float]] = field(default_factory=dict)

    @classmethod
    def parse(cls, start: str, fare_scale: float = 1.0, shifts: list[str] | None = None) -> Drift:
        """From the command line: `start` an integer index or an ISO 8601 time; each shift
        `column=*k` or `column=+k` (a numeric column of the Chicago schema)."""
        parsed: dict[str, tuple[str, float]] = {}
        for text in shifts or []:
            column, _, rule = text.partition("=")
            if _KINDS.get(column) not in ("int", "float") or column == LABEL:
                numeric = sorted(n for n, k in _KINDS.items() if k in ("int", "float") and n != LABEL)
                raise ValueError(f"--drift-shift {text!r}: {column!r} is not a numeric input column; one of {numeric}")
            if rule[:1] not in ("*", "+"):
                raise ValueError(f"--drift-shift {text!r}: expected {column}=*FACTOR or {column}=+AMOUNT")
            try:
                parsed[column] = (rule[0], float(rule[1:]))
            except ValueError as exc:
                raise ValueError(f"--drift-shift {text!r}: {rule[1:]!r} is not a number") from exc
        if fare_scale <= 0:
            raise ValueError(f"--drift-fare-scale must be positive, got {fare_scale}")
        if start.strip().lstrip("-").isdigit():
            return cls(from_index=int(start), fare_scale=fare_scale, shifts=parsed)
        moment = datetime.fromisoformat(start.strip().replace("Z", "+00:00"))
        return cls(from_time=moment if moment.tzinfo else moment.astimezone(), fare_scale=fare_scale, shifts=parsed)

    def applies(self, index: int, now: datetime) -> bool:
        if self.from_index is not None:
            return index >= self.from_index
        return self.from_time is not None and now >= self.from_time

    def describe(self) -> str:
        parts = [f"fare*{self.fare_scale:g}"] if self.fare_scale != 1.0 else []
        parts += [f"{c}{op}{k:g}" for c, (op, k) in self.shifts.items()]
        return ",".join(parts) or "none"

    def apply(self, message: dict) -> dict:
        """The Chicago-shaped message with the drift applied (nulls stay null)."""
        drifted = dict(message)
        if self.fare_scale != 1.0 and drifted.get(LABEL) is not None:
            drifted[LABEL] = round(drifted[LABEL] * self.fare_scale, 2)
        for column, (op, k) in self.shifts.items():
            value = drifted.get(column)
            if value is None:
                continue
            value = value * k if op == "*" else value + k
            drifted[column] = int(round(value)) if _KINDS[column] == "int" else round(value, 4)
        return drifted


def _json_value(name: str, value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    kind = _KINDS[name]
    # pandas reads an int column with nulls as floats: send ints as ints.
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    return str(value)


def chicago_message(row: dict, trip_id: str) -> dict:
    """The Chicago-shaped message of one CSV row (NaN becomes null)."""
    return {"trip_id": trip_id, **{name: _json_value(name, row.get(name)) for name in RAW_COLUMN_NAMES}}


def legacy_message(message: dict) -> dict:
    """The legacy upstream shape of a Chicago message (the inverse of `messages.from_legacy`).

    Times are the Chicago wall clock, written without an offset (the data has no time zone).
    """
    start = message.get(TIMESTAMP)
    pickup = None if start is None else datetime.fromtimestamp(start, UTC).replace(tzinfo=None)
    seconds = message.get("trip_seconds")
    dropoff = None if pickup is None or seconds is None else pickup + timedelta(seconds=seconds)
    return {
        "trip_id": message["trip_id"],
        "pickup_datetime": None if pickup is None else pickup.isoformat(),
        "dropoff_datetime": None if dropoff is None else dropoff.isoformat(),
        "pickup_latitude": message.get("pickup_latitude"),
        "pickup_longitude": message.get("pickup_longitude"),
        "dropoff_latitude": message.get("dropoff_latitude"),
        "dropoff_longitude": message.get("dropoff_longitude"),
        "passenger_count": None,  # the Chicago data has none
        "trip_distance": message.get("trip_miles"),
        "fare_amount": message.get(LABEL),
    }


def corrupt(message: dict, defect: str, legacy: bool) -> bytes:
    """A malformed version of a message, of the given defect kind."""
    if defect == "not-json":
        return f"{{trip_id: {message['trip_id']}, this is not JSON".encode()
    broken = dict(message)
    miles = "trip_distance" if legacy else "trip_miles"
    if defect == "missing-field":
        broken.pop(miles)
    elif defect == "negative-miles":
        broken[miles] = -1.5
    else:
        raise ValueError(f"unknown defect {defect!r}; expected one of {BAD_KINDS}")
    return json.dumps(broken).encode()


def plan_defects(count: int, bad_share: float, seed: int) -> dict[int, str]:
    """Which of `count` messages are malformed, and how: round(count * bad_share) of them."""
    if not 0.0 <= bad_share <= 1.0:
        raise ValueError(f"bad_share must be within [0, 1], got {bad_share}")
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(count), round(count * bad_share)))
    return {index: BAD_KINDS[i % len(BAD_KINDS)] for i, index in enumerate(picked)}


def load_rows(csv: Path | str, limit: int | None) -> list[dict]:
    import pandas as pd

    frame = pd.read_csv(csv, nrows=limit)
    return frame.to_dict("records")


def replay(
    csv: Path | str = DEFAULT_CSV,
    bootstrap: str | None = None,
    topic: str = RAW_TRIPS,
    rate: float = 20.0,
    limit: int | None = None,
    legacy: bool = False,
    bad_share: float = 0.0,
    seed: int = 0,
    progress_every: int = 100,
    delivery_timeout: float = 30.0,
    out: IO[str] | None = sys.stderr,
    drift: Drift | None = None,
    skip: int = 0,
    shuffle: int | None = None,
) -> list[Sent]:
    """Send the first `limit` CSV rows (after the first `skip`) to `topic` at `rate` messages/s
    (0: as fast as possible), with `drift` applied from its start on. With `shuffle` (a seed)
    the rows are taken in a seeded random order (the sample's file order is not random: its first
    rows come from few community areas); trip ids stay `trip-<CSV row>`.

    Returns what was sent, in order. Raises DeliveryFailed (with `.sent` and `.failed`) when
    the broker did not acknowledge every message within `delivery_timeout` seconds.
    """
    from confluent_kafka import Producer

    bootstrap = bootstrap or bootstrap_servers()
    if shuffle is None:
        indices = None
        rows = load_rows(csv, None if limit is None else skip + limit)[skip:]
    else:
        rows = load_rows(csv, None)
        indices = list(range(len(rows)))
        random.Random(shuffle).shuffle(indices)
        indices = indices[skip:] if limit is None else indices[skip : skip + limit]
        rows = [rows[i] for i in indices]
    defects = plan_defects(len(rows), bad_share, seed)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,  # acks=all, no duplicates on retry
            "linger.ms": 5,
            "message.timeout.ms": int(delivery_timeout * 1000),
            "log_level": 0,  # a down broker fails every delivery: reported once below, not per retry
        }
    )
    failed: list[tuple[str, str]] = []
    pending: set[str] = set()
    delivered = 0

    def on_delivery(err, msg):
        nonlocal delivered
        pending.discard(msg.key().decode())
        if err is not None:
            failed.append((msg.key().decode(), str(err)))
        else:
            delivered += 1

    sent: list[Sent] = []
    drifted_count = 0
    started = time.monotonic()
    for index, row in enumerate(rows):
        if rate > 0:
            # Schedule against the start so the average rate holds even if one send was slow.
            # poll() returns early when it serves a delivery callback: wait out the rest.
            while (delay := started + index / rate - time.monotonic()) > 0:
                producer.poll(delay)
        trip_id = trip_id_for(skip + index if indices is None else indices[index])
        message = chicago_message(row, trip_id)
        drifted = drift is not None and drift.applies(index, datetime.now(UTC))
        if drifted:
            message = drift.apply(message)
            drifted_count += 1
        if legacy:
            message = legacy_message(message)
        defect = defects.get(index)
        value = corrupt(message, defect, legacy) if defect else json.dumps(message).encode()
        headers = [(DEFECT_HEADER, defect.encode())] if defect else []
        if drifted:
            headers.append((DRIFT_HEADER, drift.describe().encode()))
        pending.add(trip_id)
        while True:
            try:
                producer.produce(topic, key=trip_id.encode(), value=value, headers=headers or None, on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.1)
        producer.poll(0)
        sent.append(Sent(trip_id, "bad" if defect else "good"))
        if out is not None and progress_every and len(sent) % progress_every == 0:
            elapsed = time.monotonic() - started
            print(
                f"sent {len(sent)}/{len(rows)} ({sum(k == 'bad' for _, k in sent)} bad, {drifted_count} drifted) to {topic}, "
                f"{len(sent) / elapsed:.1f} msg/s, {delivered} delivered, {len(failed)} failed",
                file=out,
                flush=True,
            )
    producer.flush(delivery_timeout)
    elapsed = time.monotonic() - started
    failed.extend((trip_id, "not acknowledged before the flush timed out") for trip_id in sorted(pending))
    bad = sum(k == "bad" for _, k in sent)
    summary = (
        f"replayed {len(sent)} trips ({bad} malformed on purpose{', legacy shape' if legacy else ''}"
        f"{f', {drifted_count} drifted: {drift.describe()}' if drift is not None else ''}) onto {topic} at {bootstrap} "
        f"in {elapsed:.1f} s: {delivered} delivered, {len(failed)} failed"
    )
    if out is not None:
        print(summary, file=out, flush=True)
    if failed:
        raise DeliveryFailed(f"{summary}; first failure: {failed[0][0]}: {failed[0][1]}", sent, failed)
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chicago_taxi.ingest.replay", description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=str(DEFAULT_CSV), help="trips to replay (default: the vendored sample)")
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second; 0 = as fast as possible")
    parser.add_argument("--limit", type=int, default=None, help="send only the first N rows")
    parser.add_argument("--legacy", action="store_true", help="send the legacy upstream message shape")
    parser.add_argument("--bad-share", type=float, default=0.0, help="share of malformed messages to inject (0..1)")
    parser.add_argument("--seed", type=int, default=0, help="seed choosing which messages are malformed")
    parser.add_argument("--topic", default=RAW_TRIPS)
    parser.add_argument("--bootstrap", default=None, help="broker address (default $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")
    parser.add_argument("--progress-every", type=int, default=100, help="print a progress line every N messages")
    parser.add_argument("--delivery-timeout", type=float, default=30.0, help="seconds the broker has to acknowledge a message")
    parser.add_argument("--skip", type=int, default=0, help="start at this CSV row (trip ids stay those of the rows)")
    parser.add_argument(
        "--shuffle", type=int, default=None, metavar="SEED", help="take the rows in a seeded random order (--skip/--limit apply to it)"
    )
    parser.add_argument("--drift-from", default=None, help="inject drift from this message index (integer) or send time (ISO 8601) on")
    parser.add_argument("--drift-fare-scale", type=float, default=1.0, help="multiply the fare (the label) of drifted messages")
    parser.add_argument("--drift-shift", action="append", default=[], help="COLUMN=*FACTOR or COLUMN=+AMOUNT on drifted messages (repeatable)")
    args = parser.parse_args(argv)
    drift = None
    if args.drift_from is not None:
        try:
            drift = Drift.parse(args.drift_from, args.drift_fare_scale, args.drift_shift)
        except ValueError as exc:
            parser.error(str(exc))
    elif args.drift_shift or args.drift_fare_scale != 1.0:
        parser.error("--drift-shift / --drift-fare-scale need --drift-from (a message index, e.g. 0, or an ISO 8601 time)")
    try:
        replay(
            args.csv,
            args.bootstrap,
            args.topic,
            args.rate,
            args.limit,
            args.legacy,
            args.bad_share,
            args.seed,
            args.progress_every,
            args.delivery_timeout,
            drift=drift,
            skip=args.skip,
            shuffle=args.shuffle,
        )
    except DeliveryFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

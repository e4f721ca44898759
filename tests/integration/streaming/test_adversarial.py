"""Every consumed message ends as exactly one prediction or one dead letter, whatever its bytes.

2,000 messages on the session's Kafka broker, 10% of them adversarial (every case of issue 11:
bytes that are not JSON, integers past float range, nesting past the stack, ids that cannot be
keys, a payload near the topic's size limit, a start after the data clock, key separators in a
company name, a known trip_id with other content, a calendar that disagrees with the start,
negative miles; and real dirt that is scored: zero seconds, a fare of 0), drained by the
taxi_stream task's own entry point (`orchestration.tasks.stream_drain`) with the champion
trained in this session and a warmed Redis of this module's own. Outcomes are matched to the
produced messages by their source (partition, offset).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections import Counter

from chicago_taxi.ingest import topics
from chicago_taxi.ingest.replay import chicago_message
from chicago_taxi.orchestration.tasks import stream_drain
from chicago_taxi.streaming import batch, kafka_io
from fixtures.streams import Outputs, end_offsets, environ, future_start, new_group, produce_all

TOTAL = 2000
ADVERSARIAL = 200
SEED = 11
# Company names holding the separators of Redis keys and of the stream log's keys.
SEPARATOR_COMPANIES = ("Cab:trips", "Cab", "a:b:c", "chicago_taxi:stream:company:Cab", "Cab*{tag}[1]?", "Cab%3Atrips", "two words\tand\nlines")
# kind -> "predicted" or "dead-lettered"
EXPECTED = {
    "not-json": "dead-lettered",
    "random-bytes": "dead-lettered",
    "int-400-digits": "dead-lettered",
    "int-4000-digits": "dead-lettered",
    "deep-nesting": "dead-lettered",
    "lone-surrogate-id": "dead-lettered",
    "long-id": "dead-lettered",
    "near-size-limit": "dead-lettered",
    "future-start": "dead-lettered",
    "separator-company": "predicted",
    "other-content": "dead-lettered",
    "calendar-disagrees": "dead-lettered",
    "negative-miles": "dead-lettered",
    "zero-seconds": "predicted",  # real dirt: repaired by the graph, scored
    "unusable-fare": "predicted",  # scoring never reads the fare; no statistic counts it
    "good": "predicted",
}
KINDS = [k for k in EXPECTED if k != "good"]


def max_message_bytes(bootstrap: str) -> int:
    """The raw topic's max.message.bytes as the broker reports it."""
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, topics.RAW_TRIPS)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    return int(configs["max.message.bytes"].value)


def adversarial_messages(prefix: str, rows: list[dict], size_limit: int) -> tuple[list[tuple[str | bytes, bytes]], list[str]]:
    """TOTAL (key, value) messages and the kind of each: good trips from `rows`, and ADVERSARIAL
    ones at seeded positions, round-robin over KINDS (two near the size limit: the rest of those
    slots get random bytes)."""
    rng = random.Random(SEED)
    slots = sorted(rng.sample(range(100, TOTAL), ADVERSARIAL))  # after 100 good ones: "other content" needs a known trip
    kind_at = {slot: KINDS[n % len(KINDS)] for n, slot in enumerate(slots)}
    near_limit = [slot for slot in slots if kind_at[slot] == "near-size-limit"]
    for slot in near_limit[2:]:
        kind_at[slot] = "random-bytes"
    # The payload itself: the broker's limit counts the record's overhead too.
    big = min(2_000_000, size_limit - 4096)
    messages: list[tuple[str | bytes, bytes]] = []
    kinds: list[str] = []
    good_ids: list[str] = []
    rows = iter(rows)
    for i in range(TOTAL):
        kind = kind_at.get(i, "good")
        trip_id = f"{prefix}-{i:04d}"
        message = chicago_message(next(rows), trip_id)
        key: str | bytes = trip_id
        if kind == "good":
            good_ids.append(trip_id)
            value = json.dumps(message).encode()
        elif kind == "not-json":
            value = f"{{trip_id: {trip_id}, this is not JSON".encode()
        elif kind == "random-bytes":
            value = rng.randbytes(rng.randint(1, 4000))
        elif kind == "int-400-digits":
            value = json.dumps({**message, "trip_miles": int("9" * 400)}).encode()
        elif kind == "int-4000-digits":
            value = json.dumps({**message, "fare": 10**3999}).encode()
        elif kind == "deep-nesting":
            value = (json.dumps(message)[:-1] + ', "company": ' + "[" * 100_000 + "]" * 100_000 + "}").encode()
        elif kind == "lone-surrogate-id":
            key = trip_id.encode() + "\ud800".encode("utf-8", "surrogatepass")  # not UTF-8 either
            value = json.dumps({**message, "trip_id": "\ud800" + trip_id}).encode()  # ensure_ascii: a "\ud800" escape
        elif kind == "long-id":
            value = json.dumps({**message, "trip_id": trip_id + "x" * 5000}).encode()
        elif kind == "near-size-limit":
            padding = big - len(json.dumps(message)) - 20
            value = json.dumps({**message, "company": "C" * padding}).encode()
        elif kind == "future-start":
            value = json.dumps({**message, **future_start()}).encode()
        elif kind == "separator-company":
            value = json.dumps({**message, "company": SEPARATOR_COMPANIES[i % len(SEPARATOR_COMPANIES)]}).encode()
        elif kind == "other-content":
            # A trip accepted earlier, sent again with another fare, under its own key (same partition, later offset).
            known = rng.choice(good_ids)
            earlier = json.loads(messages[int(known.rsplit("-", 1)[1])][1])
            key, value = known, json.dumps({**earlier, "fare": round(earlier["fare"] + 5.0, 2)}).encode()
        elif kind == "calendar-disagrees":
            value = json.dumps({**message, "trip_start_hour": (message["trip_start_hour"] + 5) % 24}).encode()
        elif kind == "negative-miles":
            value = json.dumps({**message, "trip_miles": -1.5}).encode()
        elif kind == "zero-seconds":
            value = json.dumps({**message, "trip_seconds": 0.0}).encode()
        elif kind == "unusable-fare":
            value = json.dumps({**message, "fare": 0.0}).encode()
        else:
            raise AssertionError(kind)
        messages.append((key, value))
        kinds.append(kind)
    return messages, kinds


def test_every_message_ends_as_one_prediction_or_one_dead_letter_whatever_its_bytes(stream_env, clean_rows, kafka_broker):
    env, _ = stream_env
    prefix = f"adv{uuid.uuid4().hex[:6]}"
    group = new_group(kafka_broker, "adversarial")
    limit = max_message_bytes(kafka_broker)
    messages, kinds = adversarial_messages(prefix, clean_rows[1000 : 1000 + TOTAL], limit)
    assert Counter(kinds)["good"] == TOTAL - ADVERSARIAL and set(kinds) == set(EXPECTED)
    outputs = Outputs(kafka_broker)
    placed = produce_all(kafka_broker, messages, max_message_bytes=limit)
    expected = {where: EXPECTED[kind] for where, kind in zip(placed, kinds)}

    started = time.monotonic()
    with environ(env, TAXI_STREAM_GROUP=group, TAXI_STREAM_LINGER_SECONDS="2"):
        result = stream_drain({})
    seconds = time.monotonic() - started
    print(
        f"\n[adversarial] drained {result['consumed']} messages in {len(result['batches'])} batch(es), {seconds:.1f} s: "
        f"valid {result['valid']}, dead-lettered {result['dead_lettered']}, poison {result['poisoned']}",
        flush=True,
    )
    assert not result["more_pending"] and seconds < 180  # no batch stuck, no retry loop
    assert all(b["committed"] for b in result["batches"])
    assert result["consumed"] == TOTAL and result["duplicates_in_batch"] == 0
    assert result["consumed"] == result["valid"] + result["dead_lettered"]

    # Counted on the output topics: one outcome per consumed message, of the kind expected.
    predictions = [p for p in outputs.read(topics.PREDICTIONS) if (p["source"]["partition"], p["source"]["offset"]) in expected]
    dead = [d for d in outputs.read(topics.RAW_TRIPS_DLQ) if (d["source"]["partition"], d["source"]["offset"]) in expected]
    outcome = Counter()
    for record, fate in [(p, "predicted") for p in predictions] + [(d, "dead-lettered") for d in dead]:
        outcome[(record["source"]["partition"], record["source"]["offset"], fate)] += 1
    assert len(predictions) + len(dead) == result["consumed"] == TOTAL
    assert len(predictions) == result["predictions_published"] and len(dead) == result["dead_lettered"]
    wrong = {kinds[placed.index(where)]: fate for where, fate in expected.items() if outcome[(*where, fate)] != 1}
    assert not wrong, f"kinds whose message did not end as expected (kind: expected fate): {wrong}"

    by_source = {(d["source"]["partition"], d["source"]["offset"]): d for d in dead}
    for d in dead:
        assert d["reason"] and d["errors"], d
        assert len(json.dumps(d)) < 200_000  # bounded, whatever the message
    reasons = Counter()
    for where, kind in zip(placed, kinds):
        letter = by_source.get(where)
        if letter is not None:
            reasons[(kind, letter["reason"].split(":")[0])] += 1
    print(f"[adversarial] dead-letter reasons by kind: {dict(sorted(reasons.items()))}", flush=True)
    for where, (_, value), kind in zip(placed, messages, kinds):
        letter = by_source.get(where)
        if kind == "other-content":
            assert letter["reason"] == batch.CONFLICT_REASON
        elif kind == "future-start":
            assert "trip_start_timestamp" in letter["reason"]
        elif kind == "near-size-limit":
            assert letter["payload_truncated"] and letter["payload_bytes"] == len(value) > 1_000_000
            assert letter["payload_sha256"] == hashlib.sha256(value).hexdigest()

    # The scoring group's committed offsets reach the end of every partition.
    assert kafka_io.committed_offsets(kafka_broker, group) == end_offsets(kafka_broker, topics.RAW_TRIPS)

"""The streaming micro-batch against the real services: the session's Kafka broker, a Redis of this
module's own (warmed through Feast like the serving tests do), and the champion trained in this
session. `process_pending` runs in this process with the stack's environment. Its service-free
parts (the quality stage, de-duplication, the result, a down broker) are tested in
tests/unit/streaming/, the statistics as of a trip in tests/unit/features/test_stream_log.py.

Topics are shared by the whole session, so every test uses a consumer group of its own, positioned
at the topic's end before it produces, and trip ids with a prefix of its own; results are read
from the output topics from where they ended when the test started, filtered by that prefix.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from chicago_taxi.core import schema
from chicago_taxi.core.config import load_settings
from chicago_taxi.core.monitoring_config import ABSettings
from chicago_taxi.ingest import topics
from chicago_taxi.ingest.messages import calendar_fields, chicago_weekday
from chicago_taxi.serving.fare_service import FareService, LoadedModel
from chicago_taxi.serving.routing import challenger_serves
from chicago_taxi.streaming import batch, kafka_io, publisher, records
from fixtures.kafka import restart_broker
from fixtures.streams import OUTPUTS, Outputs, _redis, end_offsets, environ, messages_for, new_group, produce, produce_all


def drain(env: dict, group: str, attempts: int = 1, **kwargs) -> list[batch.BatchResult]:
    """process_pending until nothing is pending; `attempts` > 1 retries a failed call (as Airflow does)."""
    results = []
    with environ(env, TAXI_STREAM_GROUP=group):
        for _ in range(50):
            for attempt in range(attempts):
                try:
                    result = batch.process_pending(**kwargs)
                    break
                except (topics.BrokerUnavailable, publisher.PublishFailed, kafka_io.CommitFailed):
                    if attempt == attempts - 1:
                        raise
                    time.sleep(3)
            results.append(result)
            if result.consumed == 0:
                return results
    raise AssertionError("still pending after 50 micro-batches")


def committed(env: dict, group: str) -> dict[int, int | None]:
    return kafka_io.committed_offsets(env["KAFKA_BOOTSTRAP_SERVERS"], group)


def total(results: list[batch.BatchResult], name: str) -> int:
    return sum(getattr(r, name) for r in results)


# ---------------------------------------------------------------- tests
def test_mixed_batch_every_trip_is_scored_or_dead_lettered_once_and_offsets_are_committed(stream_env, clean_rows, kafka_broker):
    env, _ = stream_env
    prefix = f"mix{uuid.uuid4().hex[:6]}"
    group = new_group(kafka_broker, "mixed")
    rows = clean_rows[:60]
    # 53 Chicago-shaped (5 broken), 5 legacy (1 broken), 2 that parse but start after the data
    # clock (GX rejects them): 8 bad (13%). 4 carry real dirt (zero seconds, an odometer glitch): scored.
    bad = {3: "not-json", 11: "missing-field", 19: "negative-miles", 27: "not-json", 35: "missing-field", 56: "negative-miles"}
    messages, good, invalid = messages_for(prefix, rows, bad, legacy=set(range(53, 58)), future={58, 59}, dirty={40, 41, 42, 43})
    assert len(messages) == 60 and len(good) == 52 and len(invalid) == 8
    outputs = Outputs(kafka_broker)
    placed = produce(kafka_broker, messages)

    results = drain(env, group)
    first = results[0]
    print(f"\n60-message batch, per-stage seconds (first call in this process, cold): {json.dumps(first.seconds)}")
    assert first.validator == "pandas"  # the default; GX itself gives the same verdicts (tests/unit/streaming/test_batch.py)
    assert total(results, "consumed") == 60
    assert total(results, "consumed") == total(results, "valid") + total(results, "dead_lettered")
    assert (total(results, "valid"), total(results, "dead_lettered")) == (52, 8)
    assert total(results, "alerts") == 0
    assert results[-1].consumed == 0 and results[-1].committed is False

    predictions = outputs.read(topics.PREDICTIONS, prefix)
    counts = Counter(p["trip_id"] for p in predictions)
    assert set(counts) == good and set(counts.values()) == {1}
    for p in predictions:
        assert p["_key"] == p["trip_id"]
        assert (p["source"]["partition"], p["source"]["offset"]) == placed[p["trip_id"]]
        assert p["model_version"] == first.model_version and isinstance(p["fare"], float) and p["fare"] > 0
        assert p["degraded"] is False and isinstance(p["features_defaulted"], list)
        assert p["produced_at_ms"] <= p["scored_at_ms"] <= p["published_at_ms"]
        assert (p["variant"], p["served"], p["source"]["kind"], p["source"]["group"]) == ("champion", True, "stream", group)
        assert set(p["inputs"]) == set(schema.MODEL_INPUT_COLUMNS) and set(p["store_features"]) == set(schema.STORE_FEATURES)
    features = outputs.read(topics.FEATURES, prefix)
    assert {f["trip_id"] for f in features} == good
    assert all("company_half_hourly_stats" in f["feature_views"] for f in features)

    dead = outputs.read(topics.RAW_TRIPS_DLQ, prefix)
    assert {d["_key"] for d in dead} == invalid and len(dead) == len(invalid)
    for d in dead:
        assert d["reason"] and d["errors"] and d["payload"] is not None
        assert d["source"] == {"topic": topics.RAW_TRIPS, "partition": placed[d["_key"]][0], "offset": placed[d["_key"]][1]}
    future = [d for d in dead if d["_key"] in {f"{prefix}-058", f"{prefix}-059"}]
    assert len(future) == 2 and all(d["reason"].startswith(batch.QUALITY_REASON) and "trip_start_timestamp" in d["reason"] for d in future)
    assert {f"{prefix}-{i:03d}" for i in (40, 41, 42, 43)} <= set(counts)  # dirty but real: scored
    assert {d["reason"] for d in dead if d["_key"] == f"{prefix}-003"} == {"not JSON"}
    legacy_ok = {f"{prefix}-{i:03d}" for i in (53, 54, 55, 57)}
    assert legacy_ok <= set(counts)

    # Nothing left pending: the group's committed offsets are the raw topic's ends.
    assert committed(env, group) == end_offsets(kafka_broker, topics.RAW_TRIPS)
    assert kafka_io.pending_messages(kafka_broker, group) == {p: 0 for p in end_offsets(kafka_broker, topics.RAW_TRIPS)}


def test_a_call_with_nothing_pending_does_nothing_and_commits_nothing(stream_env, clean_rows, kafka_broker):
    env, _ = stream_env
    prefix = f"idle{uuid.uuid4().hex[:6]}"
    group = new_group(kafka_broker, "idle")
    messages, good, _ = messages_for(prefix, clean_rows[60:65])
    produce(kafka_broker, messages)
    drain(env, group)
    before = committed(env, group)
    outputs = Outputs(kafka_broker)
    with environ(env, TAXI_STREAM_GROUP=group):
        result = batch.process_pending(scorer=lambda trips: pytest.fail("nothing may be scored"))
    assert (result.consumed, result.committed, result.offsets, result.predictions_published) == (0, False, {}, 0)
    assert committed(env, group) == before
    for topic in OUTPUTS:  # tests run one at a time: nothing at all was published
        assert outputs.read(topic) == [], topic


def test_a_failing_scorer_commits_nothing_and_the_rerun_scores_every_trip(stream_env, clean_rows, kafka_broker):
    env, _ = stream_env
    prefix = f"boom{uuid.uuid4().hex[:6]}"
    group = new_group(kafka_broker, "scorer")
    messages, good, _ = messages_for(prefix, clean_rows[70:82])
    outputs = Outputs(kafka_broker)
    produce(kafka_broker, messages)
    before = committed(env, group)

    def boom(trips):
        raise RuntimeError("scorer exploded")

    with environ(env, TAXI_STREAM_GROUP=group), pytest.raises(RuntimeError, match="scorer exploded"):
        batch.process_pending(scorer=boom)
    assert committed(env, group) == before
    assert not outputs.read(topics.PREDICTIONS, prefix)

    results = drain(env, group)
    assert total(results, "valid") == len(good)
    predictions = outputs.read(topics.PREDICTIONS, prefix)
    assert Counter(p["trip_id"] for p in predictions) == Counter(good)
    assert committed(env, group) == end_offsets(kafka_broker, topics.RAW_TRIPS)


def test_a_crash_after_publishing_before_the_commit_redelivers_and_dedup_gives_each_trip_once(stream_env, clean_rows, kafka_broker, monkeypatch):
    env, _ = stream_env
    prefix = f"crash{uuid.uuid4().hex[:6]}"
    group = new_group(kafka_broker, "crash")
    messages, good, invalid = messages_for(prefix, clean_rows[90:105], bad={4: "not-json"})
    outputs = Outputs(kafka_broker)
    produce(kafka_broker, messages)
    before = committed(env, group)

    def crash(*args, **kwargs):
        raise SystemExit("killed between publish and commit")

    monkeypatch.setattr(batch, "commit", crash)
    with environ(env, TAXI_STREAM_GROUP=group), pytest.raises(SystemExit):
        batch.process_pending()
    monkeypatch.undo()
    assert committed(env, group) == before
    assert Counter(p["trip_id"] for p in outputs.read(topics.PREDICTIONS, prefix)) == Counter(good)

    results = drain(env, group)
    assert total(results, "consumed") == len(messages)  # the same messages, processed again
    predictions = outputs.read(topics.PREDICTIONS, prefix)
    assert Counter(p["trip_id"] for p in predictions) == Counter({trip_id: 2 for trip_id in good})  # at least once
    latest = {p["trip_id"]: p for p in predictions}  # what a consumer keeps after dedup by trip_id
    assert set(latest) == good
    dead = outputs.read(topics.RAW_TRIPS_DLQ, prefix)  # dead letters are at least once too: dedup by source
    assert Counter(d["_key"] for d in dead) == Counter({trip_id: 2 for trip_id in invalid})
    assert len({json.dumps(d["source"], sort_keys=True) for d in dead}) == len(invalid)
    assert committed(env, group) == end_offsets(kafka_broker, topics.RAW_TRIPS)


def test_an_unacknowledged_publish_raises_and_commits_nothing(stream_env, clean_rows, kafka_broker, monkeypatch):
    env, _ = stream_env
    prefix = f"nopub{uuid.uuid4().hex[:6]}"
    group = new_group(kafka_broker, "nopub")
    messages, good, _ = messages_for(prefix, clean_rows[100:104])
    outputs = Outputs(kafka_broker)
    produce(kafka_broker, messages)
    before = committed(env, group)
    monkeypatch.setattr(batch, "PREDICTIONS", f"taxi-no-such-topic-{prefix}")  # the broker does not auto-create topics
    with environ(env, TAXI_STREAM_GROUP=group, TAXI_STREAM_KAFKA_TIMEOUT="3"), pytest.raises(publisher.PublishFailed, match=kafka_broker):
        batch.process_pending()
    monkeypatch.undo()
    assert committed(env, group) == before
    drain(env, group)
    assert Counter(p["trip_id"] for p in outputs.read(topics.PREDICTIONS, prefix)) == Counter(good)
    assert committed(env, group) == end_offsets(kafka_broker, topics.RAW_TRIPS)


def test_a_bad_share_over_the_threshold_raises_an_alert(stream_env, clean_rows, kafka_broker):
    env, _ = stream_env
    prefix = f"alert{uuid.uuid4().hex[:6]}"
    group = new_group(kafka_broker, "alert")
    messages, good, invalid = messages_for(prefix, clean_rows[110:120], bad={i: "not-json" if i % 2 else "negative-miles" for i in range(5)})
    outputs = Outputs(kafka_broker)
    produce(kafka_broker, messages)
    results = drain(env, group)
    assert total(results, "alerts") == 1
    (alert,) = [a for a in outputs.read(topics.ALERTS) if a.get("group") == group]
    assert alert["kind"] == records.ALERT_KIND and alert["topic"] == topics.RAW_TRIPS
    assert alert["bad_share"] == 0.5 and alert["threshold"] == 0.2
    assert alert["counts"] == {"consumed": 10, "valid": 5, "dead_lettered": 5}
    assert sum(alert["reasons"].values()) == 5
    assert alert["offsets"] and all(v["first"] <= v["last"] for v in alert["offsets"].values())
    assert datetime.fromisoformat(alert["at"].replace("Z", "+00:00")) <= datetime.now(UTC)
    assert {d["_key"] for d in outputs.read(topics.RAW_TRIPS_DLQ, prefix)} == invalid


def test_a_new_companys_trips_reach_the_online_store_for_the_trips_after_them(stream_env, clean_rows, kafka_broker):
    from chicago_taxi.features import store as feast_store

    env, _ = stream_env
    prefix = f"push{uuid.uuid4().hex[:6]}"
    company = f"Streaming Test Cab {prefix}"
    group = new_group(kafka_broker, "push")
    with environ(env):
        settings = load_settings()
    data_now = settings.data_time(datetime.now(UTC)).replace(tzinfo=None)
    rows = []
    for i, moment in enumerate([data_now - timedelta(hours=2), data_now - timedelta(minutes=40), data_now - timedelta(minutes=5)]):
        stamp = int(moment.replace(tzinfo=UTC).timestamp())
        local = datetime.fromtimestamp(stamp, UTC)
        rows.append(
            {
                **clean_rows[130 + i],
                "company": company,
                "fare": 20.0 + 10 * i,
                "trip_start_timestamp": stamp,
                "trip_start_hour": local.hour,
                "trip_start_month": local.month,
                "trip_start_day": chicago_weekday(local),
            }
        )
    messages, good, _ = messages_for(prefix, rows)
    outputs = Outputs(kafka_broker)
    produce(kafka_broker, messages[:2])  # two trips, an hour and more apart, in one batch
    results = drain(env, group)
    assert total(results, "pushed_rows") >= 1

    with environ(env):
        store = feast_store.feature_store(load_settings())
        online = store.get_online_features(
            features=["company_half_hourly_stats:company_trips_1d", "company_half_hourly_stats:company_fare_1d"], entity_rows=[{"company": company}]
        ).to_dict()
    # As of the second trip: the first one (its own half hour is not in the row).
    assert online["company_trips_1d"] == [1] and online["company_fare_1d"][0] == pytest.approx(20.0)
    second = {f["trip_id"]: f for f in outputs.read(topics.FEATURES, prefix)}[f"{prefix}-001"]["feature_views"]["company_half_hourly_stats"]
    assert second["values"] == {"company_trips_1d": 1, "company_fare_1d": 20.0} and second["pushed"] is True
    assert second["entity"] == {"company": company}

    produce(kafka_broker, messages[2:])  # a later trip of the company, in the next batch
    drain(env, group)
    by_id = {p["trip_id"]: p for p in outputs.read(topics.PREDICTIONS, prefix)}
    company_features = {"company_trips_1d", "company_fare_1d"}
    # Scored before their batch's push: the first two saw nothing of the company (not even each other) ...
    assert company_features <= set(by_id[f"{prefix}-000"]["features_defaulted"])
    assert company_features <= set(by_id[f"{prefix}-001"]["features_defaulted"])
    # ... the third reads what the first batch pushed.
    assert not company_features & set(by_id[f"{prefix}-002"]["features_defaulted"])


def test_a_broker_restart_between_bursts_loses_nothing(stream_env, clean_rows, kafka_broker):
    env, _ = stream_env
    prefix = f"restart{uuid.uuid4().hex[:6]}"
    group = new_group(kafka_broker, "restart")
    first, good1, bad1 = messages_for(f"{prefix}a", clean_rows[140:160], bad={2: "not-json", 9: "missing-field"})
    second, good2, bad2 = messages_for(f"{prefix}b", clean_rows[160:180], bad={5: "negative-miles", 15: "not-json"})
    outputs = Outputs(kafka_broker)
    produce(kafka_broker, first)
    with environ(env, TAXI_STREAM_GROUP=group):
        partial = batch.process_pending(max_messages=8)  # part of the first burst, committed
    assert partial.consumed == 8 and partial.committed
    restart_broker()
    produce(kafka_broker, second)
    results = drain(env, group, attempts=10)
    assert partial.consumed + total(results, "consumed") == 40
    assert {p["trip_id"] for p in outputs.read(topics.PREDICTIONS, prefix)} == good1 | good2
    assert {d["_key"] for d in outputs.read(topics.RAW_TRIPS_DLQ, prefix)} == bad1 | bad2
    assert committed(env, group) == end_offsets(kafka_broker, topics.RAW_TRIPS)


def test_redis_down_during_the_push_fails_the_batch_uncommitted_and_the_retry_delivers(stream_env, clean_rows, kafka_broker):
    from chicago_taxi.features.store import OnlineStoreUnavailable

    env, port = stream_env
    prefix = f"redis{uuid.uuid4().hex[:6]}"
    group = new_group(kafka_broker, "redis")
    messages, good, _ = messages_for(prefix, clean_rows[190:196])
    outputs = Outputs(kafka_broker)
    produce(kafka_broker, messages)
    before = committed(env, group)
    _redis("stop", port)
    try:
        with environ(env, TAXI_STREAM_GROUP=group), pytest.raises(OnlineStoreUnavailable, match=f"127.0.0.1:{port}"):
            batch.process_pending()
        assert committed(env, group) == before
        assert not outputs.read(topics.PREDICTIONS, prefix)
    finally:
        _redis("start", port)
    results = drain(env, group)
    assert total(results, "valid") == len(good)
    assert {p["trip_id"] for p in outputs.read(topics.PREDICTIONS, prefix)} == good
    assert committed(env, group) == end_offsets(kafka_broker, topics.RAW_TRIPS)


def test_messages_that_expire_before_they_are_read_are_counted_and_alerted_once(stream_env, clean_rows, kafka_broker):
    """Retention can delete messages a stalled group never read: the next batch says how many,
    per partition, on taxi-alerts, scores the rest, and commits past the gap (reported once)."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    env, _ = stream_env
    prefix = f"gap{uuid.uuid4().hex[:6]}"
    group = new_group(kafka_broker, "gap")
    messages, good, _ = messages_for(prefix, clean_rows[130:145])
    outputs = Outputs(kafka_broker)
    placed = produce(kafka_broker, messages)
    # As retention would: delete each partition's first message of this test (before the group read it).
    first = {}
    for trip_id, (partition, offset) in placed.items():
        if offset < first.get(partition, (None, float("inf")))[1]:
            first[partition] = (trip_id, offset)
    admin = AdminClient({"bootstrap.servers": kafka_broker})  # kept referenced: its futures complete only while it lives
    deleted = admin.delete_records([TopicPartition(topics.RAW_TRIPS, p, o + 1) for p, (_, o) in first.items()])
    for future in deleted.values():
        future.result(timeout=30)
    expired = {trip_id for trip_id, _ in first.values()}

    results = drain(env, group)
    assert total(results, "expired_messages") == len(expired)
    alerts = [a for a in outputs.read(topics.ALERTS) if a.get("group") == group]
    assert [a["kind"] for a in alerts] == [records.GAP_ALERT_KIND], alerts
    assert alerts[0]["expired_messages"] == len(expired)
    assert {int(p): v["expired"] for p, v in alerts[0]["partitions"].items()} == dict.fromkeys(first, 1)
    assert {p["trip_id"] for p in outputs.read(topics.PREDICTIONS, prefix)} == good - expired
    assert drain(env, group)[-1].expired_messages == 0  # committed past the gap: not reported again


def test_a_future_dated_trip_is_dead_lettered_while_its_neighbours_are_scored(stream_env, clean_rows, kafka_broker):
    env, _ = stream_env
    prefix = f"future{uuid.uuid4().hex[:6]}"
    group = new_group(kafka_broker, "future")
    with environ(env):
        settings = load_settings()
    # 90 minutes after the data time: past the data clock (data time plus 60 minutes' tolerance).
    ahead = settings.data_time(datetime.now(UTC)).replace(tzinfo=None) + timedelta(minutes=90)
    rows = clean_rows[200:205]
    rows[2] = {**rows[2], "trip_start_timestamp": int(ahead.replace(tzinfo=UTC).timestamp()), **calendar_fields(ahead)}
    messages, good, _ = messages_for(prefix, rows)
    outputs = Outputs(kafka_broker)
    produce(kafka_broker, messages)
    results = drain(env, group)
    assert (total(results, "valid"), total(results, "dead_lettered")) == (4, 1)
    assert {p["trip_id"] for p in outputs.read(topics.PREDICTIONS, prefix)} == good - {f"{prefix}-002"}
    (letter,) = outputs.read(topics.RAW_TRIPS_DLQ, prefix)
    assert letter["_key"] == f"{prefix}-002" and "trip_start_timestamp" in letter["reason"]
    assert "the data clock is" in letter["errors"][0]["problem"]
    assert committed(env, group) == end_offsets(kafka_broker, topics.RAW_TRIPS)


def test_a_known_trip_id_with_other_content_is_dead_lettered_and_an_identical_redelivery_is_scored(stream_env, clean_rows, kafka_broker):
    env, _ = stream_env
    prefix = f"conflict{uuid.uuid4().hex[:6]}"
    group = new_group(kafka_broker, "conflict")
    messages, good, _ = messages_for(prefix, clean_rows[210:214])
    first, second = messages[0], messages[1]

    def changed(value: bytes) -> bytes:
        message = json.loads(value)
        return json.dumps({**message, "fare": message["fare"] + 7.0}).encode()

    outputs = Outputs(kafka_broker)
    placed = produce_all(kafka_broker, [*messages, (second[0], changed(second[1]))])  # other content, same batch
    results = drain(env, group)
    assert (total(results, "valid"), total(results, "dead_lettered")) == (4, 1)
    placed += produce_all(kafka_broker, [first, (first[0], changed(first[1]))])  # a later batch: the same again, then other content
    results = drain(env, group)
    assert (total(results, "valid"), total(results, "dead_lettered"), total(results, "redelivered")) == (1, 1, 1)

    predictions = outputs.read(topics.PREDICTIONS, prefix)
    assert Counter(p["trip_id"] for p in predictions) == Counter({**dict.fromkeys(good, 1), first[0]: 2})
    dead = outputs.read(topics.RAW_TRIPS_DLQ, prefix)
    assert sorted((d["_key"], d["reason"]) for d in dead) == sorted([(second[0], batch.CONFLICT_REASON), (first[0], batch.CONFLICT_REASON)])
    assert {(d["source"]["partition"], d["source"]["offset"]) for d in dead} == {placed[4], placed[6]}
    assert all(json.loads(d["payload"])["fare"] != json.loads(messages[0][1])["fare"] for d in dead if d["_key"] == first[0])
    assert committed(env, group) == end_offsets(kafka_broker, topics.RAW_TRIPS)


def test_a_message_the_scorer_raises_on_is_isolated_and_the_rest_of_its_batch_commits(stream_env, clean_rows, kafka_broker):
    env, _ = stream_env
    prefix = f"poison{uuid.uuid4().hex[:6]}"
    group = new_group(kafka_broker, "poison")
    messages, good, _ = messages_for(prefix, clean_rows[220:240])
    poison = f"{prefix}-007"
    outputs = Outputs(kafka_broker)
    produce(kafka_broker, messages)
    with environ(env):
        champion = batch.default_scorer(load_settings())

    def scorer(trips):
        if any(t["trip_id"] == poison for t in trips):
            raise ValueError(f"cannot score {poison}")
        return champion(trips)

    results = drain(env, group, scorer=scorer)
    assert (total(results, "valid"), total(results, "dead_lettered"), total(results, "poisoned")) == (19, 1, 1)
    assert {p["trip_id"] for p in outputs.read(topics.PREDICTIONS, prefix)} == good - {poison}
    (letter,) = outputs.read(topics.RAW_TRIPS_DLQ, prefix)
    assert letter["_key"] == poison and letter["reason"] == f"score failed on this message: ValueError: cannot score {poison}"
    assert committed(env, group) == end_offsets(kafka_broker, topics.RAW_TRIPS)


def test_with_ab_split_every_trip_publishes_its_served_and_its_shadow_prediction(stream_env, clean_rows, kafka_broker):
    env, _ = stream_env
    prefix = f"ab{uuid.uuid4().hex[:6]}"
    group = new_group(kafka_broker, "ab")
    messages, good, _ = messages_for(prefix, clean_rows[240:270])
    outputs = Outputs(kafka_broker)
    placed = produce(kafka_broker, messages)
    with environ(env):
        settings = load_settings()
        champion = batch.default_scorer(settings).__self__  # the stream's FareService
        # The champion's own model under another version: both predictions of a trip must then agree.
        challenger = LoadedModel(champion.model.predictor, champion.model.name, "challenger-under-test", "registry", "challenger")
        ab = FareService(
            settings, model=champion.model, store=champion.store, challenger=challenger, ab=ABSettings(mode="split", challenger_share=0.5)
        )
    results = drain(env, group, scorer=ab.predict)
    assert (total(results, "predictions_published"), total(results, "shadow_predictions_published")) == (30, 30)
    by_trip = defaultdict(list)
    for record in outputs.read(topics.PREDICTIONS, prefix):
        by_trip[record["trip_id"]].append(record)
    assert set(by_trip) == good
    versions = {champion.model.version, "challenger-under-test"}
    for trip_id, (served, shadow) in by_trip.items():  # served first, then its shadow, on the trip's partition
        assert served["_key"] == shadow["_key"] == trip_id
        assert served["variant"] == ("challenger" if challenger_serves(trip_id, 0.5) else "champion") and served["served"] is True
        assert (shadow["variant"], shadow["served"]) == ("shadow", False) and {served["model_version"], shadow["model_version"]} == versions
        assert served["fare"] == shadow["fare"]  # one lookup, the same inputs and store features for both models
        for key in ("inputs", "store_features", "features_defaulted", "source", "scored_at_ms"):
            assert served[key] == shadow[key], key
        assert served["source"] == {
            "kind": "stream",
            "topic": topics.RAW_TRIPS,
            "partition": placed[trip_id][0],
            "offset": placed[trip_id][1],
            "group": group,
        }
        assert [f for f, v in served["store_features"].items() if v is None] == served["features_defaulted"]
    assert {r[0]["variant"] for r in by_trip.values()} == {"champion", "challenger"}
    assert committed(env, group) == end_offsets(kafka_broker, topics.RAW_TRIPS)

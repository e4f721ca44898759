"""The streaming micro-batch against the real services: the session's Kafka broker, a Redis of this
module's own (warmed through Feast like the serving tests do), and the champion trained in this
session. `process_pending` runs in this process with the stack's environment. The last section
checks the service-free parts (quality expectations, statistics as of a trip, configuration, a
down broker); they live here and not in tests/unit/test_streaming.py because test modules have
no packages, so two files named test_streaming.py would collide at collection.

Topics are shared by the whole session, so every test uses a consumer group of its own, positioned
at the topic's end before it produces, and trip ids with a prefix of its own; results are read
from the output topics from where they ended when the test started, filtered by that prefix.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from conftest import DATA_CSV, _free_port

from chicago_taxi.core import config as core_config
from chicago_taxi.core import schema
from chicago_taxi.core.config import load_settings
from chicago_taxi.features import push, stream_log
from chicago_taxi.features.aggregates import compute_view
from chicago_taxi.ingest import topics
from chicago_taxi.ingest.messages import chicago_weekday, parse_trip
from chicago_taxi.quality import rows
from chicago_taxi.streaming import batch, cli, kafka_io, publisher, records
from fixtures.kafka import restart_broker
from fixtures.streams import OUTPUTS, Outputs, _redis, end_offsets, environ, messages_for, new_group, produce, warmed_redis


@pytest.fixture(scope="module")
def stream_env(stack, first_run, kafka_broker):
    """The training stack's env with the session broker and a warmed Redis online store of its own."""
    tmp, env = stack
    env = {
        **env,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
        "TAXI_ONLINE_STORE_RETRY_SECONDS": "1",
        "TAXI_REDIS_TIMEOUT_SECONDS": "0.5",
        "TAXI_STREAM_KAFKA_TIMEOUT": "10",
    }
    with warmed_redis(env) as (env, port):
        yield env, port


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
    # 53 Chicago-shaped (5 broken), 5 legacy (1 broken), 2 that parse but GX rejects: 8 bad (13%).
    bad = {3: "not-json", 11: "missing-field", 19: "negative-miles", 27: "not-json", 35: "missing-field", 56: "negative-miles"}
    messages, good, invalid = messages_for(prefix, rows, bad, legacy=set(range(53, 58)), too_fast={58, 59})
    assert len(messages) == 60 and len(good) == 52 and len(invalid) == 8
    outputs = Outputs(kafka_broker)
    placed = produce(kafka_broker, messages)

    results = drain(env, group)
    first = results[0]
    print(f"\n60-message batch, per-stage seconds (first call in this process, cold): {json.dumps(first.seconds)}")
    assert first.validator == "great_expectations"
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
    features = outputs.read(topics.FEATURES, prefix)
    assert {f["trip_id"] for f in features} == good
    assert all("company_half_hourly_stats" in f["feature_views"] for f in features)

    dead = outputs.read(topics.RAW_TRIPS_DLQ, prefix)
    assert {d["_key"] for d in dead} == invalid and len(dead) == len(invalid)
    for d in dead:
        assert d["reason"] and d["errors"] and d["payload"] is not None
        assert d["source"] == {"topic": topics.RAW_TRIPS, "partition": placed[d["_key"]][0], "offset": placed[d["_key"]][1]}
    too_fast = [d for d in dead if d["_key"] in {f"{prefix}-058", f"{prefix}-059"}]
    assert all(d["reason"].startswith(batch.QUALITY_REASON) and "implied_speed_mph" in d["reason"] for d in too_fast)
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


def test_pushed_statistics_equal_the_offline_store_for_replayed_sample_trips(stream_env):
    """For trips of the sample (ids `trip-<row>`), the row pushed "as of the trip" is the offline
    store's row that training joins: latest boundary at or before the trip, within the TTL."""
    env, _ = stream_env
    with environ(env):
        settings = load_settings()
    view = next(v for v in schema.STORE_VIEWS if v.name == "company_half_hourly_stats")
    offline = pd.read_parquet(settings.features_dir / f"{view.name}.parquet")
    history = stream_log.load_history(settings.source_csv, settings.expectations_dir)
    batch = history.sample(300, random_state=3).reset_index(drop=True)

    class EmptyLog:
        def read(self, *args):
            return pd.DataFrame(columns=list(stream_log.LOG_COLUMNS))

    rows = stream_log.stats_as_of(batch, stream_log.known_trips(batch, batch, history, EmptyLog(), view), view)
    compared = 0
    for i, start in enumerate(batch[schema.TIMESTAMP]):
        at = pd.Timestamp(int(start), unit="s", tz="UTC")
        mine = offline[(offline.company == rows.company[i]) & (offline.event_timestamp <= at) & (offline.event_timestamp >= at - timedelta(days=1))]
        if mine.empty:
            assert pd.isna(rows.event_timestamp[i])
            continue
        expected = mine.sort_values("event_timestamp").iloc[-1]
        assert rows.event_timestamp[i] == expected.event_timestamp
        assert rows.company_trips_1d[i] == expected.company_trips_1d
        assert rows.company_fare_1d[i] == pytest.approx(float(expected.company_fare_1d), rel=1e-5)
        compared += 1
    assert compared > 200


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


# ================================================================ service-free checks
COMPANY_VIEW = next(v for v in schema.STORE_VIEWS if v.name == "company_half_hourly_stats")
B = 1400000400  # a half-hour boundary (multiple of 1800)
DAY = 86400
LEGACY = {
    "trip_id": "legacy-1",
    "pickup_datetime": "2016-06-01T10:00:00",
    "dropoff_datetime": "2016-06-01T10:20:00",
    "pickup_latitude": 41.88,
    "pickup_longitude": -87.63,
    "dropoff_latitude": 41.89,
    "dropoff_longitude": -87.62,
    "passenger_count": 2,
    "trip_distance": 3.5,
    "fare_amount": 12.5,
}


def _trip(trip_id: str, ts: int, fare: float | None, company: str | None = "A", miles: float = 2.0, seconds: float = 600.0) -> dict:
    return {
        "trip_id": trip_id,
        "trip_start_timestamp": ts,
        "fare": fare,
        "company": company,
        "trip_miles": miles,
        "trip_seconds": seconds,
        "pickup_community_area": 8,
    }


def _record(offset: int) -> kafka_io.Record:
    return kafka_io.Record(partition=0, offset=offset, key=None, value=b"{}", timestamp_ms=None)


# ---------------------------------------------------------------- quality
@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return pd.read_csv(DATA_CSV)


def test_pandas_evaluation_equals_great_expectations_on_the_whole_sample(sample):
    settings = load_settings()
    full = rows.quarantine_expectations(settings.expectations_dir, streaming=False)
    by_pandas = rows.failed_rows_pandas(sample, full)
    started = time.perf_counter()
    by_gx = rows.GxRowValidator(full).failed_rows(sample)
    print(f"GX context + run on {len(sample)} rows: {time.perf_counter() - started:.2f} s")
    assert by_pandas == by_gx
    # The training gate quarantines these 572 rows of the sample (README): same rows here.
    assert len(by_pandas) == 572


def test_streaming_expectations_reject_impossible_speed_but_accept_legacy_trips():
    settings = load_settings()
    streaming_exps = rows.quarantine_expectations(settings.expectations_dir)
    types = {(e["type"], e["kwargs"]["column"]) for e in streaming_exps}
    assert ("expect_column_values_to_not_be_null", "payment_type") not in types  # legacy trips have none
    assert ("expect_column_values_to_not_be_null", "fare") not in types  # an upfront request has no fare
    assert ("expect_column_values_to_be_between", "implied_speed_mph") in types
    good = parse_trip(json.dumps({**_full_trip("ok"), "trip_miles": 3.0, "trip_seconds": 900}))
    fast = parse_trip(json.dumps({**_full_trip("fast"), "trip_miles": 50.0, "trip_seconds": 600}))  # 300 mph
    legacy = parse_trip(json.dumps(LEGACY))
    no_fare = parse_trip(json.dumps({**_full_trip("nofare"), "fare": None}))
    valid = [(t, _record(i)) for i, t in enumerate([good, fast, legacy, no_fare])]
    for use_gx in (True, False):
        kept, rejected, name = batch._quality(valid, settings, core_config.StreamConfig(use_gx=use_gx))
        assert name == ("great_expectations" if use_gx else "pandas")
        assert [t["trip_id"] for t, _ in kept] == ["ok", "legacy-1", "nofare"]
        ((record, error),) = rejected
        assert record.offset == 1 and error.trip_id == "fast"
        assert error.reason.startswith(batch.QUALITY_REASON) and "implied_speed_mph" in error.reason
        assert error.errors == [{"field": "implied_speed_mph", "problem": "failed expect_column_values_to_be_between(implied_speed_mph) [0.0, 80.0]"}]


def _full_trip(trip_id: str) -> dict:
    return {
        "trip_id": trip_id,
        "pickup_community_area": 8,
        "fare": 9.25,
        "trip_start_month": 5,
        "trip_start_hour": 19,
        "trip_start_day": 6,
        "trip_start_timestamp": 1400269500,
        "pickup_latitude": 41.899,
        "pickup_longitude": -87.633,
        "dropoff_latitude": 41.880,
        "dropoff_longitude": -87.642,
        "trip_miles": 1.9,
        "payment_type": "Credit Card",
        "company": "Taxi Affiliation Services",
        "trip_seconds": 540,
        "dropoff_community_area": 32,
        "tips": 2.0,
    }


# ---------------------------------------------------------------- statistics as of a trip
def test_stats_as_of_a_trip_exclude_its_own_half_hour_and_expire_after_the_window():
    known = pd.DataFrame(
        [
            _trip("x1", B - 3600, 10.0),
            _trip("x2", B - 600, 20.0),
            _trip("x3", B + 300, 40.0),
            _trip("x4", B + DAY + 100, 50.0),
            _trip("other", B - 60, 99.0, company="Other"),
        ]
    )
    batch = pd.DataFrame(
        [
            _trip("x1", B - 3600, 10.0),  # nothing before it
            _trip("x3", B + 300, 40.0),  # row at B: x1, x2 (not itself, nothing of its half hour)
            _trip("x4", B + DAY + 100, 50.0),  # row at B + 30 min: x1, x2, x3
            _trip("late", B + 3 * DAY, 5.0),  # newest row (B + 1 day + 30 min) is older than a day: none
            _trip("nofare", B + 600, None),  # scored without a fare: still has a row as of it
        ]
    )
    rows = stream_log.stats_as_of(batch, known, COMPANY_VIEW)
    stamps = rows["event_timestamp"]
    assert pd.isna(stamps[0]) and pd.isna(stamps[3])
    assert stamps[1] == pd.Timestamp(B, unit="s", tz="UTC") and stamps[4] == stamps[1]
    assert (rows.loc[1, "company_trips_1d"], rows.loc[1, "company_fare_1d"]) == (2, pytest.approx(15.0))
    assert stamps[2] == pd.Timestamp(B + 1800, unit="s", tz="UTC")
    assert (rows.loc[2, "company_trips_1d"], rows.loc[2, "company_fare_1d"]) == (3, pytest.approx(70 / 3))
    # The same numbers the offline store would hold at those boundaries.
    offline = compute_view(known, COMPANY_VIEW).set_index(["company", "event_timestamp"])
    assert offline.loc[("A", stamps[2]), "company_trips_1d"] == 3


def test_stats_as_of_use_the_missing_company_key_and_every_entity_separately():
    known = pd.DataFrame([_trip("m1", B - 100, 8.0, company=None), _trip("o1", B - 100, 30.0, company="Other")])
    batch = pd.DataFrame([_trip("m2", B + 10, 9.0, company=None), _trip("o2", B + 10, 9.0, company="Other")])
    rows = stream_log.stats_as_of(batch, known, COMPANY_VIEW)
    assert rows["company"].tolist() == [schema.MISSING_COMPANY_KEY, "Other"]
    assert rows["company_fare_1d"].tolist() == pytest.approx([8.0, 30.0])


def test_history_is_the_gate_clean_sample_with_the_producers_ids(sample):
    history = stream_log.load_history(DATA_CSV, load_settings().expectations_dir)
    assert len(history) == len(sample) - 572
    assert history["trip_id"].iloc[0].startswith("trip-") and history["trip_id"].is_unique
    row = int(history["trip_id"].iloc[0].removeprefix("trip-"))
    assert history["fare"].iloc[0] == sample["fare"].iloc[row]


def test_known_trips_count_a_replayed_trip_once():
    history = pd.DataFrame([_trip("trip-00001", B - 100, 10.0)])
    eligible = pd.DataFrame([_trip("trip-00001", B - 100, 10.0), _trip("new-1", B - 50, 20.0)])

    class Log:
        def read(self, entity, values, start, end):
            return pd.DataFrame([_trip("new-1", B - 50, 20.0)])

    known = stream_log.known_trips(eligible, eligible, history, Log(), COMPANY_VIEW)
    assert sorted(known["trip_id"]) == ["new-1", "trip-00001"]


# ---------------------------------------------------------------- batch bookkeeping
def test_a_trip_id_twice_in_one_batch_is_scored_once_with_the_later_message():
    pairs = [({"trip_id": "a", "v": 1}, _record(0)), ({"trip_id": "b"}, _record(1)), ({"trip_id": "a", "v": 2}, _record(2))]
    kept, duplicates = batch._dedup(pairs)
    assert duplicates == 1 and [(t["trip_id"], r.offset) for t, r in kept] == [("b", 1), ("a", 2)]


def test_batch_result_is_json_ready():
    result = batch.BatchResult(group="g", bootstrap="127.0.0.1:1", consumed=3, offsets={0: {"first": 1, "last": 3, "committed": 4}})
    data = json.loads(json.dumps(result.as_dict()))
    assert data["offsets"] == {"0": {"first": 1, "last": 3, "committed": 4}}
    assert set(batch.STAGES) <= set(data["seconds"])
    assert "consumed 3" in result.summary()


def test_config_reads_the_environment_and_names_a_bad_value(monkeypatch):
    monkeypatch.setenv("TAXI_STREAM_GROUP", "g1")
    monkeypatch.setenv("TAXI_STREAM_GX", "off")
    monkeypatch.setenv("TAXI_STREAM_MAX_BAD_SHARE", "0.5")
    config = core_config.StreamConfig.from_env()
    assert (config.group, config.use_gx, config.max_bad_share) == ("g1", False, 0.5)
    monkeypatch.setenv("TAXI_STREAM_MAX_BAD_SHARE", "lots")
    with pytest.raises(ValueError, match="TAXI_STREAM_MAX_BAD_SHARE"):
        core_config.StreamConfig.from_env()
    monkeypatch.delenv("TAXI_STREAM_GROUP")
    monkeypatch.delenv("TAXI_STREAM_MAX_BAD_SHARE")
    assert core_config.StreamConfig.from_env().group == "taxi-scoring"


def test_broker_down_fails_fast_naming_the_address(monkeypatch):
    monkeypatch.setenv("TAXI_STREAM_KAFKA_TIMEOUT", "1")
    address = f"127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(topics.BrokerUnavailable, match=address):
        batch.process_pending(bootstrap=address, scorer=lambda trips: pytest.fail("nothing may be scored"))
    assert time.monotonic() - started < 10
    with pytest.raises(topics.BrokerUnavailable, match=address):
        kafka_io.pending_messages(bootstrap=address, timeout=1)


def test_cli_reports_a_down_broker_as_an_error(monkeypatch, capsys):
    monkeypatch.setenv("TAXI_STREAM_KAFKA_TIMEOUT", "1")
    address = f"127.0.0.1:{_free_port()}"
    assert cli.main(["drain", "--bootstrap", address]) == 1
    assert address in capsys.readouterr().err


def test_features_record_holds_the_row_as_of_the_trip():
    rows = stream_log.stats_as_of(
        pd.DataFrame([_trip("x3", B + 300, 40.0)]), pd.DataFrame([_trip("x1", B - 3600, 10.0), _trip("x3", B + 300, 40.0)]), COMPANY_VIEW
    )
    outcome = push.PushOutcome(as_of={COMPANY_VIEW.name: rows}, pushed_keys={(COMPANY_VIEW.name, "A", rows["event_timestamp"][0])})
    trip = _trip("x3", B + 300, 40.0)
    record = records.features_record(
        trip,
        kafka_io.Record(2, 7, "x3", b"{}", 1_700_000_000_000),
        outcome,
        records.batch_entity_keys([trip])[0],
        {COMPANY_VIEW.name: rows.to_dict("records")[0]},
    )
    view = record["feature_views"][COMPANY_VIEW.name]
    assert view == {
        "entity": {"company": "A"},
        "as_of": "2014-05-13T16:30:00.000Z",  # x1 made the row at B - 30 min
        "values": {"company_trips_1d": 1, "company_fare_1d": 10.0},
        "pushed": True,
    }
    assert record["source"] == {"topic": "taxi-raw-data", "partition": 2, "offset": 7}
    json.dumps(record)
    assert np.isfinite(record["produced_at_ms"])

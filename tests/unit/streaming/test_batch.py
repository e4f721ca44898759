"""The micro-batch's service-free parts: the quality stage on parsed trips (data clock included),
de-duplication by content, isolating a poison message, the result's JSON, and a down broker (a
closed loopback port) failing fast. The batch against the real broker, Redis and the champion is
tests/integration/streaming/test_batch.py."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from chicago_taxi.core import config as core_config
from chicago_taxi.core.config import load_settings
from chicago_taxi.features.push import PushOutcome
from chicago_taxi.features.store import OnlineStoreUnavailable
from chicago_taxi.ingest import topics
from chicago_taxi.ingest.messages import calendar_fields, parse_trip, trip_fingerprint
from chicago_taxi.quality import rows
from chicago_taxi.streaming import batch, kafka_io, publisher
from fixtures.env import free_port
from fixtures.trips import VALID_MESSAGE

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
# The data time the quality tests run at, and the wall clock that gives it under the settings' offset.
DATA_NOW = datetime(2016, 6, 15, 12, 0)


def _wall_clock(settings) -> datetime:
    return DATA_NOW.replace(tzinfo=UTC) + timedelta(days=settings.replay_offset_days)


def _record(offset: int) -> kafka_io.Record:
    return kafka_io.Record(partition=0, offset=offset, key=None, value=b"{}", timestamp_ms=None)


def _full_trip(trip_id: str) -> dict:
    return {**VALID_MESSAGE, "trip_id": trip_id}


def _starting(trip_id: str, moment: datetime) -> dict:
    """A valid trip message starting at `moment` (wall clock), its calendar fields agreeing."""
    return {**_full_trip(trip_id), "trip_start_timestamp": int(moment.replace(tzinfo=UTC).timestamp()), **calendar_fields(moment)}


def _pairs(*messages: dict) -> list[tuple[dict, kafka_io.Record]]:
    return [(parse_trip(json.dumps(m)), _record(i)) for i, m in enumerate(messages)]


def test_streaming_expectations_skip_the_label_and_keep_the_data_clock():
    streaming_exps = rows.quarantine_expectations(load_settings().expectations_dir)
    types = {(e["type"], e["kwargs"]["column"]) for e in streaming_exps}
    assert ("expect_column_values_to_not_be_null", "payment_type") not in types  # legacy trips have none
    assert ("expect_column_values_to_not_be_null", "fare") not in types  # an upfront request has no fare
    assert ("expect_column_values_to_be_between", "trip_start_timestamp") in types
    assert ("expect_column_values_to_be_between", "implied_speed_mph") not in types  # repaired by the graph, not rejected


@pytest.mark.parametrize("use_gx", [True, False], ids=["gx", "pandas"])
def test_quality_scores_dirty_inputs_and_rejects_future_starts_and_a_wrong_calendar(use_gx):
    settings = load_settings()
    config = core_config.StreamConfig(use_gx=use_gx, future_tolerance_minutes=60)
    wrong_calendar = {**_starting("calendar", DATA_NOW - timedelta(days=1)), "trip_start_hour": 3}
    valid = _pairs(
        _full_trip("ok"),
        {**_full_trip("fast"), "trip_miles": 50.0, "trip_seconds": 600},  # 300 mph: repaired, scored
        {**_full_trip("zero"), "trip_seconds": 0, "trip_miles": 0},  # meter not run: repaired, scored
        LEGACY,
        {**_full_trip("nofare"), "fare": None},
        _starting("in-tolerance", DATA_NOW + timedelta(minutes=50)),
        _starting("future", DATA_NOW + timedelta(minutes=70)),
        _starting("year-2030", datetime(2030, 1, 1, 8)),
        wrong_calendar,
    )
    kept, rejected, name = batch._quality(valid, settings, config, _wall_clock(settings))
    assert name == ("great_expectations" if use_gx else "pandas")
    assert [t["trip_id"] for t, _ in kept] == ["ok", "fast", "zero", "legacy-1", "nofare", "in-tolerance"]
    by_id = {error.trip_id: (record.offset, error) for record, error in rejected}
    assert set(by_id) == {"future", "year-2030", "calendar"}
    for trip_id in ("future", "year-2030"):
        offset, error = by_id[trip_id]
        assert error.reason.startswith(batch.QUALITY_REASON) and "trip_start_timestamp" in error.reason
        ((problem,),) = [[e["problem"] for e in error.errors]]
        assert "the data clock is 2016-06-15T13:00:00 (data time plus 60 min)" in problem
    assert "calendar_disagrees_with_timestamp" in by_id["calendar"][1].reason


def test_the_data_clock_is_the_data_time_plus_the_tolerance(monkeypatch):
    monkeypatch.setenv("TAXI_REPLAY_OFFSET_DAYS", "10")
    monkeypatch.setenv("TAXI_STREAM_FUTURE_TOLERANCE_MINUTES", "30")
    settings, config = load_settings(), core_config.StreamConfig.from_env()
    assert config.future_tolerance_minutes == 30
    wall = datetime(2026, 1, 11, 9, 15, tzinfo=UTC)
    assert batch.data_clock_epoch(settings, config, wall) == int(datetime(2026, 1, 1, 9, 45, tzinfo=UTC).timestamp())
    monkeypatch.delenv("TAXI_STREAM_FUTURE_TOLERANCE_MINUTES")
    assert core_config.StreamConfig.from_env().future_tolerance_minutes == 60


# ---------------------------------------------------------------- de-duplication by content
def test_the_same_trip_twice_in_one_batch_is_scored_once_with_the_later_message():
    valid = _pairs(_full_trip("a"), _full_trip("b"), _full_trip("a"))
    kept, rejected, duplicates, redelivered, fingerprints = batch._by_content(valid, {})
    assert [(t["trip_id"], r.offset) for t, r in kept] == [("b", 1), ("a", 2)]
    assert (rejected, duplicates, redelivered) == ([], 1, 0)
    assert fingerprints == {t["trip_id"]: trip_fingerprint(t) for t, _ in kept}


def test_other_content_under_a_trip_id_of_the_same_batch_is_dead_lettered():
    valid = _pairs(_full_trip("a"), {**_full_trip("a"), "fare": 99.0}, _full_trip("b"), _full_trip("a"))
    kept, rejected, duplicates, _, _ = batch._by_content(valid, {})
    assert [(t["trip_id"], r.offset) for t, r in kept] == [("b", 2), ("a", 3)]  # the first content stays the trip's
    ((record, error),) = rejected
    assert record.offset == 1 and error.reason == batch.CONFLICT_REASON and error.trip_id == "a"
    assert error.errors[0]["field"] == "trip_id" and "accepted at taxi-raw-data[0]@0 with other content" in error.errors[0]["problem"]
    assert duplicates == 1


def test_a_trip_accepted_by_an_earlier_batch_is_scored_again_if_identical_and_dead_lettered_if_not():
    first = parse_trip(json.dumps(_full_trip("a")))
    known = {"a": trip_fingerprint(first), "z": "0" * 64}
    kept, rejected, duplicates, redelivered, _ = batch._by_content(_pairs(_full_trip("a"), _full_trip("b")), known)
    assert [t["trip_id"] for t, _ in kept] == ["a", "b"] and (rejected, duplicates, redelivered) == ([], 0, 1)
    kept, rejected, _, redelivered, _ = batch._by_content(_pairs({**_full_trip("a"), "company": "Other Cab"}, _full_trip("b")), known)
    assert [t["trip_id"] for t, _ in kept] == ["b"] and redelivered == 0
    ((_, error),) = rejected
    assert error.reason == batch.CONFLICT_REASON and "accepted by an earlier batch" in error.errors[0]["problem"]


def test_the_stream_log_remembers_accepted_contents_across_batches(tmp_path):
    settings = dataclasses.replace(load_settings(), online_store="sqlite", feast_dir=tmp_path / "feast")
    config = core_config.StreamConfig(log_retention_days=1)
    assert batch._known_contents(settings, ["a", "b"]) == {}
    batch._remember_contents(settings, config, {"a": "f" * 64, "b": "e" * 64})
    assert batch._known_contents(settings, ["a", "c", "a"]) == {"a": "f" * 64}
    ids = [f"t{i}" for i in range(1200)]  # more than one SQLite statement's parameters
    batch._remember_contents(settings, config, dict.fromkeys(ids, "d" * 64))
    assert len(batch._known_contents(settings, ids)) == 1200
    stale = time.time() - 2 * 86400  # remembered two days ago: past the 1-day retention
    log_ = batch.open_stream_log(settings)
    log_.remember_contents({"old": "c" * 64}, stale, 86400)
    log_.remember_contents({"new": "b" * 64}, time.time(), 86400)
    assert batch._known_contents(settings, ["old", "new"]) == {"new": "b" * 64}


def test_a_stream_log_that_fails_is_an_outage(tmp_path, monkeypatch):
    settings = dataclasses.replace(load_settings(), online_store="sqlite", feast_dir=tmp_path / "feast")

    def locked(_settings):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(batch, "open_stream_log", locked)
    with pytest.raises(OnlineStoreUnavailable, match="database is locked") as caught:
        batch._known_contents(settings, ["a"])
    assert batch.is_outage(caught.value)


# ---------------------------------------------------------------- isolating a poison message
def test_isolate_failures_finds_the_items_a_stage_raises_on_and_keeps_the_rest():
    calls = []

    def run(positions):
        calls.append(len(positions))
        if {3, 17} & set(positions):
            raise ValueError(f"cannot process {sorted({3, 17} & set(positions))}")
        return [p * 10 for p in positions]

    passed, failed = batch.isolate_failures("score", 40, run)
    assert set(failed) == {3, 17} and all(isinstance(e, ValueError) for e in failed.values())
    done = sorted(p for part, _ in passed for p in part)
    assert done == [p for p in range(40) if p not in (3, 17)]
    assert all(out == [p * 10 for p in part] for part, out in passed)
    assert len(calls) <= 2 * 2 * 6 + 1  # two poisons, about two runs per level each, plus the first


def test_a_stage_failing_on_every_message_fails_the_batch_with_its_first_error():
    calls = []

    def broken(positions):
        calls.append(len(positions))
        raise RuntimeError(f"no model (call {len(calls)})")

    with pytest.raises(RuntimeError, match=r"no model \(call 1\)"):
        batch.isolate_failures("score", 500, broken)
    assert len(calls) < 40  # gave up after SYSTEMIC_FAILURES isolated failures, not 999 runs
    calls.clear()
    with pytest.raises(RuntimeError, match=r"call 1\)"):  # one message that fails: cannot tell it from a broken stage
        batch.isolate_failures("score", 1, broken)
    assert calls == [1]


@pytest.mark.parametrize(
    "outage",
    [
        topics.BrokerUnavailable("Kafka broker at 127.0.0.1:1 did not answer"),
        publisher.PublishFailed("not acknowledged"),
        kafka_io.CommitFailed("commit refused"),
        RedisConnectionError("Connection refused"),
        sqlite3.OperationalError("database is locked"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_outage_fails_the_batch_at_once_without_isolating(outage):
    calls = []

    def run(positions):
        calls.append(len(positions))
        raise outage

    with pytest.raises(type(outage)):
        batch.isolate_failures("push", 50, run)
    assert calls == [50]


def _store_error(cause: Exception) -> OnlineStoreUnavailable:
    try:
        raise OnlineStoreUnavailable(f"online store failed while pushing ({cause})") from cause
    except OnlineStoreUnavailable as exc:
        return exc


def test_an_online_store_refusing_one_value_is_not_an_outage_but_a_store_down_is():
    assert batch.is_outage(_store_error(RedisConnectionError("Connection refused")))
    assert batch.is_outage(_store_error(sqlite3.OperationalError("disk I/O error")))
    assert not batch.is_outage(_store_error(ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")))
    assert not batch.is_outage(_store_error(sqlite3.InterfaceError("Error binding parameter 1")))
    assert not batch.is_outage(ValueError("bad value")) and not batch.is_outage(RecursionError())


def test_a_trip_the_scorer_raises_on_is_dead_lettered_and_the_others_are_scored():
    valid = _pairs(*[_full_trip(f"t{i}") for i in range(7)], {**_full_trip("poison"), "company": "Poison Cab"}, _full_trip("t7"))
    calls = []

    def scorer(trips):
        calls.append([t["trip_id"] for t in trips])
        if any(t["company"] == "Poison Cab" for t in trips):
            raise ValueError("cannot score Poison Cab")
        return [{"fare": float(t["trip_id"][1:])} for t in trips]

    kept, answers, rejected = batch._score(valid, scorer)
    assert [t["trip_id"] for t, _ in kept] == [f"t{i}" for i in range(8)]  # batch order kept
    assert [a["fare"] for a in answers] == [float(i) for i in range(8)]
    ((record, error),) = rejected
    assert record.offset == 7 and error.trip_id == "poison" and isinstance(error, batch.PoisonMessage)
    assert error.reason == "score failed on this message: ValueError: cannot score Poison Cab"
    assert calls[0] == [f"t{i}" for i in range(7)] + ["poison", "t7"]


def test_a_scorer_that_cannot_reach_its_store_fails_the_batch():
    def scorer(trips):
        raise _store_error(RedisConnectionError("Connection refused"))

    with pytest.raises(OnlineStoreUnavailable):
        batch._score(_pairs(_full_trip("a"), _full_trip("b")), scorer)


def test_a_trip_the_push_raises_on_is_dead_lettered_and_the_others_keep_their_rows(monkeypatch):
    import pandas as pd

    def push(trips, settings, config, store):
        if any(t["company"] == "Poison Cab" for t in trips):
            raise _store_error(ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"))
        frame = pd.DataFrame({"company": [t["company"] for t in trips], "trip": [t["trip_id"] for t in trips]})
        return PushOutcome(as_of={"company_half_hourly_stats": frame}, pushed_rows=len(trips))

    monkeypatch.setattr(batch, "push_features", push)
    valid = _pairs(_full_trip("a"), {**_full_trip("p"), "company": "Poison Cab"}, _full_trip("b"), _full_trip("c"))
    kept, answers, pushed, rows_as_of, rejected = batch._push(valid, [{"fare": 1.0}, {"fare": 2.0}, {"fare": 3.0}, {"fare": 4.0}], None, None, None)
    assert [t["trip_id"] for t, _ in kept] == ["a", "b", "c"] and [a["fare"] for a in answers] == [1.0, 3.0, 4.0]
    assert [r["company_half_hourly_stats"]["trip"] for r in rows_as_of] == ["a", "b", "c"]
    assert pushed.pushed_rows == 3
    ((record, error),) = rejected
    assert record.offset == 1 and error.reason.startswith("push failed on this message: OnlineStoreUnavailable")


def test_a_push_with_the_store_down_fails_the_batch(monkeypatch):
    def push(trips, settings, config, store):
        raise _store_error(RedisConnectionError("Connection refused"))

    monkeypatch.setattr(batch, "push_features", push)
    with pytest.raises(OnlineStoreUnavailable):
        batch._push(_pairs(_full_trip("a"), _full_trip("b")), [{}, {}], None, None, None)


def test_a_trip_whose_records_cannot_be_built_is_dead_lettered_before_anything_is_sent():
    valid = _pairs(_full_trip("a"), _full_trip("b"), _full_trip("c"))
    answers = [{"fare": 9.5, "model_version": "1"}, {"model_version": "1"}, {"fare": 7.25, "model_version": "1"}]  # b has no fare
    outgoing, rejected = batch._outgoing(valid, answers, PushOutcome(as_of={}), [{}, {}, {}], "g", 0)
    assert [trip_id for trip_id, _, _ in outgoing] == ["a", "c"]
    assert [json.loads(p)["fare"] for p in outgoing[1][1]] == [7.25] and json.loads(outgoing[1][2])["trip_id"] == "c"
    ((record, error),) = rejected
    assert record.offset == 1 and error.reason == "publish failed on this message: KeyError: 'fare'"
    with pytest.raises(KeyError):  # no trip's records can be built: the code is broken, not the trips
        batch._outgoing(valid, [{}, {}, {}], PushOutcome(as_of={}), [{}, {}, {}], "g", 0)


def test_a_trip_scored_in_shadow_too_sends_its_served_then_its_shadow_prediction():
    valid = _pairs(_full_trip("a"), _full_trip("b"))
    shadow = [{"fare": 8.0, "model_name": "m", "model_version": "2", "variant": "shadow"}]
    answers = [{"fare": 9.5, "model_name": "m", "model_version": "1", "variant": "champion", "shadow": shadow}, {"fare": 7.0, "model_version": "1"}]
    outgoing, rejected = batch._outgoing(valid, answers, PushOutcome(as_of={}), [{}, {}], "g", 0)
    assert not rejected and [(trip_id, len(predictions)) for trip_id, predictions, _ in outgoing] == [("a", 2), ("b", 1)]
    served, shadowed = (json.loads(p) for p in outgoing[0][1])
    assert (served["variant"], served["model_version"], served["served"]) == ("champion", "1", True)
    assert (shadowed["variant"], shadowed["model_version"], shadowed["served"]) == ("shadow", "2", False)
    assert served["source"] == shadowed["source"] and served["source"]["kind"] == "stream"


def test_a_trip_with_an_unusable_fare_is_scored_but_feeds_no_statistic():
    import pandas as pd

    from chicago_taxi.features.stream_log import stats_rows

    trips = [parse_trip(json.dumps({**_full_trip(f"f{fare}"), "fare": fare})) for fare in (0.0, 3.25, 12.5, 300.0, 301.0, None)]
    valid, rejected = batch._parse([kafka_io.Record(0, i, None, json.dumps(t).encode(), None) for i, t in enumerate(trips)])
    assert len(valid) == 6 and not rejected
    assert stats_rows(pd.DataFrame(trips))["trip_id"].tolist() == ["f3.25", "f12.5", "f300.0"]


def test_batch_result_is_json_ready():
    result = batch.BatchResult(group="g", bootstrap="127.0.0.1:1", consumed=3, offsets={0: {"first": 1, "last": 3, "committed": 4}})
    data = json.loads(json.dumps(result.as_dict()))
    assert data["offsets"] == {"0": {"first": 1, "last": 3, "committed": 4}}
    assert set(batch.STAGES) <= set(data["seconds"])
    assert "consumed 3" in result.summary()


def test_broker_down_fails_fast_naming_the_address(monkeypatch):
    monkeypatch.setenv("TAXI_STREAM_KAFKA_TIMEOUT", "1")
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(topics.BrokerUnavailable, match=address):
        batch.process_pending(bootstrap=address, scorer=lambda trips: pytest.fail("nothing may be scored"))
    assert time.monotonic() - started < 10
    with pytest.raises(topics.BrokerUnavailable, match=address):
        kafka_io.pending_messages(bootstrap=address, timeout=1)


def test_a_message_the_parser_fails_on_is_dead_lettered_not_raised(monkeypatch):
    # The parser's own contract is InvalidMessage (tests/unit/ingest/test_messages.py); should a
    # bug break it, the one message is dead-lettered with the error and the batch goes on.
    def parse(raw):
        if raw == b"poison":
            raise RecursionError("maximum recursion depth exceeded")
        return {"trip_id": raw.decode()}

    monkeypatch.setattr(batch, "parse_trip", parse)
    records = [kafka_io.Record(0, offset, None, value, None) for offset, value in enumerate([b"a", b"poison", b"b"])]
    valid, rejected = batch._parse(records)
    assert [trip["trip_id"] for trip, _ in valid] == ["a", "b"]
    ((record, error),) = rejected
    assert record.offset == 1 and error.reason == batch.PARSER_FAILURE and "RecursionError" in error.errors[0]["problem"]

"""The prediction and label stores without a broker: rows from records, Parquet by hour, windows."""

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from chicago_taxi.core import monitoring_schema as C
from chicago_taxi.core.config import load_settings
from chicago_taxi.monitoring import store

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def record(trip_id, minutes, fare=10.0, version="1", variant="champion", **extra):
    ms = int((T0 + timedelta(minutes=minutes)).timestamp() * 1000)
    return {
        "trip_id": trip_id,
        "fare": fare,
        "model_name": "chicago_taxi_fare",
        "model_version": version,
        "variant": variant,
        "served": variant != "shadow",
        "input_warnings": [{"code": "seconds_not_recorded", "fields": ["trip_seconds"], "reason": "..."}] if extra.pop("dirty", False) else [],
        "features_defaulted": ["company_trips_1d"],
        "inputs": {"trip_miles": 2.5, "trip_seconds": 600, "company": "Flash Cab", "trip_start_hour": 10},
        "store_features": {"company_trips_1d": None, "area_trips_7d": 12},
        "scored_at_ms": ms,
        "source": {"kind": "http", "endpoint": "/predict"},
        **extra,
    }


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("TAXI_MONITORING_DIR", str(tmp_path / "monitoring"))
    return load_settings()


def test_prediction_row_flattens_inputs_store_features_and_repairs():
    row = store.prediction_row(record("t1", 5, dirty=True), 0, 7, "m")
    assert row[C.TRIP_ID] == "t1" and row[C.MODEL_VERSION] == "1" and row[C.VARIANT] == "champion" and row[C.SERVED]
    assert row["trip_miles"] == 2.5 and row["company"] == "Flash Cab" and pd.isna(row["pickup_latitude"])
    assert row["area_trips_7d"] == 12 and pd.isna(row["company_trips_1d"])
    assert row[C.INPUT_WARNINGS] == "seconds_not_recorded" and row[C.SOURCE] == "http"
    assert row[C.SCORED_AT] == pd.Timestamp(T0 + timedelta(minutes=5))


def test_a_record_of_the_stream_before_variants_existed_is_the_champions():
    old = {"trip_id": "t1", "fare": 9.0, "model_version": "3", "scored_at_ms": 1_764_000_000_000, "source": {"topic": "taxi-raw-data"}}
    row = store.prediction_row(old, 1, 2, "chicago_taxi_fare")
    assert (row[C.MODEL_NAME], row[C.VARIANT], row[C.SERVED], row[C.SOURCE]) == ("chicago_taxi_fare", "champion", True, "stream")


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"fare": 3.0}).encode(), "no trip_id"),
        (json.dumps({"trip_id": "a"}).encode(), "no fare yet"),
        (json.dumps({"trip_id": "a", "fare": "12"}).encode(), "fare is not a finite number"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_a_message_without_a_usable_label_says_why(raw, reason):
    with pytest.raises(ValueError, match=reason):
        store.label_row(raw, 1)


def test_labels_come_from_either_message_shape():
    assert store.label_row(json.dumps({"trip_id": "a", "fare": 12.5}).encode(), 5)[C.LABEL] == 12.5
    assert store.label_row(json.dumps({"trip_id": "b", "fare_amount": 7}).encode(), 5)[C.LABEL] == 7.0


def _land(settings, records, labels):
    rows = pd.DataFrame([store.prediction_row(r, 0, i, "m") for i, r in enumerate(records)])
    store.write_by_hour(rows, settings.monitoring_dir / store.PREDICTIONS_DIR, C.SCORED_AT, "part-a")
    frame = pd.DataFrame([store.label_row(json.dumps({"trip_id": t, "fare": f}).encode(), ms) for t, f, ms in labels])
    store.write_by_hour(frame, settings.monitoring_dir / store.LABELS_DIR, store.LABEL_AT, "part-a")


def test_a_window_joins_labels_that_landed_before_or_after_its_predictions(settings):
    before = int((T0 - timedelta(hours=2)).timestamp() * 1000)
    after = int((T0 + timedelta(hours=3)).timestamp() * 1000)
    records = [
        record("early", 5),
        record("late", 50),
        record("none", 55),
        record("next-hour", 70),
        record("late", 50, fare=11.0, variant="shadow", version="2"),
    ]
    _land(settings, records, [("early", 12.0, before), ("late", 20.0, after), ("next-hour", 5.0, after)])
    frame = store.window_frame(settings, T0, T0 + timedelta(hours=1))
    by = {(r.trip_id, r.variant): r for r in frame.itertuples()}
    assert set(by) == {("early", "champion"), ("late", "champion"), ("late", "shadow"), ("none", "champion")}
    assert by[("early", "champion")].fare == 12.0 and by[("late", "shadow")].fare == 20.0 and pd.isna(by[("none", "champion")].fare)


def test_redelivered_predictions_and_labels_count_once(settings):
    ms = int(T0.timestamp() * 1000)
    _land(settings, [record("a", 1), record("a", 2), record("b", 3)], [("a", 10.0, ms), ("a", 10.0, ms + 5)])
    frame = store.window_frame(settings, T0, T0 + timedelta(hours=1))
    assert sorted(frame[C.TRIP_ID]) == ["a", "b"]

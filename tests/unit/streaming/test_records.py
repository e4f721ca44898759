"""The records a micro-batch publishes, built without a broker."""

import json

import numpy as np
import pandas as pd

from chicago_taxi.features import push, stream_log
from chicago_taxi.streaming import kafka_io, records
from fixtures.trips import COMPANY_VIEW, B, trip_dict


def test_features_record_holds_the_row_as_of_the_trip():
    rows = stream_log.stats_as_of(
        pd.DataFrame([trip_dict("x3", B + 300, 40.0)]), pd.DataFrame([trip_dict("x1", B - 3600, 10.0), trip_dict("x3", B + 300, 40.0)]), COMPANY_VIEW
    )
    outcome = push.PushOutcome(as_of={COMPANY_VIEW.name: rows}, pushed_keys={(COMPANY_VIEW.name, "A", rows["event_timestamp"][0])})
    trip = trip_dict("x3", B + 300, 40.0)
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


def test_prediction_records_carry_the_answer_its_input_warnings_and_the_message():
    warning = {"code": "seconds_not_recorded", "fields": ["trip_seconds"], "reason": "0 or missing"}
    answer = {"fare": 9.5, "model_version": "3", "features_defaulted": ["area_trips_7d"], "input_warnings": [warning], "degraded": False}
    trip = trip_dict("x9", B, None, seconds=0.0)
    (record,) = records.prediction_records_of(trip, kafka_io.Record(1, 42, "x9", b"{}", 1_700_000_000_000), answer, "taxi-scoring", 1_700_000_000_500)
    assert record["trip_id"] == "x9" and record["fare"] == 9.5 and record["model_version"] == "3"
    assert (record["variant"], record["served"]) == ("champion", True)
    assert record["input_warnings"] == [warning] and record["features_defaulted"] == ["area_trips_7d"]
    assert record["source"] == {"kind": "stream", "topic": "taxi-raw-data", "partition": 1, "offset": 42, "group": "taxi-scoring"}
    assert record["scored_at_ms"] - record["produced_at_ms"] == 500
    assert record["inputs"]["trip_seconds"] == 0.0 and record["inputs"]["company"] == "A"
    json.dumps(record)


def test_a_shadow_prediction_is_a_second_record_of_the_same_message():
    answer = {
        "fare": 9.5,
        "model_name": "m",
        "model_version": "3",
        "variant": "challenger",
        "shadow": [{"fare": 9.0, "model_name": "m", "model_version": "2"}],
    }
    served, shadow = records.prediction_records_of(trip_dict("x9", B, None), kafka_io.Record(1, 42, "x9", b"{}", 1), answer, "g", 2)
    assert (served["variant"], served["served"], shadow["variant"], shadow["served"]) == ("challenger", True, "shadow", False)
    assert shadow["source"] == served["source"] and (shadow["fare"], shadow["model_version"]) == (9.0, "2")

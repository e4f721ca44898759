"""The fare service's answers, with a stand-in model and online store (no TensorFlow, no Redis):
repairs become `input_warnings`, and a batch answers every trip in input order."""

from __future__ import annotations

import numpy as np
import pytest

from chicago_taxi.core import schema
from chicago_taxi.core.config import load_settings
from chicago_taxi.serving.contract import check_trip
from chicago_taxi.serving.fare_service import FareService, LoadedModel

STAMP = 1420074000
BIT = {r.code: 1 << i for i, r in enumerate(schema.REPAIRS)}


class FlaggingPredictor:
    """$2 a mile from the flag pull; flags zero seconds and more than 80 mph as the graph does."""

    def predict_features(self, features: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        miles, seconds = features["trip_miles"].astype(float), features["trip_seconds"].astype(float)
        mask = np.where(seconds <= 0, BIT["seconds_not_recorded"], 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            mask |= np.where((seconds > 0) & (miles * 3600 > schema.MAX_SPEED_MPH * seconds), BIT["implausible_speed"], 0)
        return schema.MIN_FARE + 2 * miles, mask.astype(np.int64)


class StoreWithNothing:
    address, last_error = "nowhere", None

    def lookup(self, trips):
        return {f: np.full(len(trips), np.nan) for f in schema.STORE_FEATURES}, [[]] * len(trips)


@pytest.fixture
def service(monkeypatch):
    monkeypatch.setenv("TAXI_CHAMPION_POLL_SECONDS", "0")
    return FareService(load_settings(), model=LoadedModel(FlaggingPredictor(), "fare", "3", "registry"), store=StoreWithNothing())


def trip(**fields) -> dict:
    """A trip as `FareService.predict` receives it: validated (`contract.check_trip`)."""
    item = {"trip_miles": 2.0, "trip_seconds": 600, "trip_start_timestamp": STAMP, **fields}
    validated, error = check_trip(0, item)
    return validated if error is None else item


def test_a_clean_trip_has_no_warnings_and_a_repaired_one_names_each_repair(service):
    clean, zero_seconds, glitch = service.predict([trip(), trip(trip_seconds=0.0), trip(trip_miles=115.0, trip_seconds=1260)])
    assert clean["input_warnings"] == [] and clean["fare"] == pytest.approx(7.25)
    assert zero_seconds["input_warnings"] == [schema.REPAIRS_BY_CODE["seconds_not_recorded"].warning()]
    assert zero_seconds["input_warnings"][0]["fields"] == ["trip_seconds"] and zero_seconds["input_warnings"][0]["reason"]
    assert [w["code"] for w in glitch["input_warnings"]] == ["implausible_speed"]
    assert set(clean) == {"fare", "model_name", "model_version", "variant", "features_defaulted", "input_warnings", "degraded", "store_features"}
    assert clean["variant"] == "champion" and clean["store_features"] == dict.fromkeys(schema.STORE_FEATURES)


def test_a_batch_answers_every_trip_in_input_order_with_error_entries_in_place(service):
    items = [trip(trip_id=f"t{i}", trip_miles=float(i)) for i in range(10)]
    items[3] = {**items[3], "trip_miles": -1}
    items[7] = {"trip_id": "t7", "trip_seconds": "soon"}
    answers = service.predict_each(items)
    assert len(answers) == 10
    assert [a.get("trip_id") for a in answers] == [f"t{i}" for i in range(10)]
    assert [a.get("index") for a in answers] == [None, None, None, 3, None, None, None, 7, None, None]
    assert [a["fare"] for i, a in enumerate(answers) if i not in (3, 7)] == pytest.approx([3.25 + 2 * i for i in range(10) if i not in (3, 7)])
    assert [e["field"] for e in answers[3]["errors"]] == ["trip_miles"]
    assert {"trip_miles", "trip_seconds"} <= {e["field"] for e in answers[7]["errors"]}


def test_a_batch_of_only_bad_trips_scores_nothing(service, monkeypatch):
    monkeypatch.setattr(service.model.predictor, "predict_features", lambda _: pytest.fail("the model was called"))
    assert [a["index"] for a in service.predict_each([{}, {"trip_miles": -1}])] == [0, 1]
    assert service.predict_each([]) == []

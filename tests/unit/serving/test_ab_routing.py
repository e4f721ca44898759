"""Champion vs challenger in the fare service, with stand-in models and online store (no
TensorFlow, no MLflow, no Redis): split routes a share of trips by trip id, shadow answers with the
champion, both models are always scored on the same trips, and A/B stays inactive (saying why)
without a challenger of its own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chicago_taxi.core import schema
from chicago_taxi.core.config import load_settings
from chicago_taxi.core.monitoring_config import ABSettings
from chicago_taxi.serving import fare_service
from chicago_taxi.serving.contract import check_trip
from chicago_taxi.serving.fare_service import FareService, LoadedModel
from chicago_taxi.serving.routing import challenger_serves

STAMP = 1420074000


class RecordingPredictor:
    """`base` plus $2 a mile; keeps every input it was asked to score (as a frame)."""

    def __init__(self, base: float):
        self.base, self.frames = base, []

    def predict_features(self, features: dict[str, np.ndarray]):
        self.frames.append(pd.DataFrame(features))
        return self.base + 2 * features["trip_miles"].astype(float), np.zeros(len(features["trip_miles"]), dtype=np.int64)


class BrokenPredictor:
    def predict_features(self, features):
        raise RuntimeError("challenger exploded")


class StoreWithOneCompany:
    """Company "A" has its day's statistics; everything else is defaulted."""

    address, last_error = "nowhere", None

    def __init__(self):
        self.calls = 0

    def lookup(self, trips):
        self.calls += 1
        values = {f: np.full(len(trips), np.nan) for f in schema.STORE_FEATURES}
        known = np.array([trip.get("company") == "A" for trip in trips])
        values["company_trips_1d"][known] = 7.0
        values["company_fare_1d"][known] = 12.5
        defaulted = [[f for f in schema.STORE_FEATURES if not (k and f in ("company_trips_1d", "company_fare_1d"))] for k in known]
        return values, defaulted

    def ping(self):
        return True


class ListPublisher:
    enabled = True

    def __init__(self):
        self.records, self.lost = [], 0

    def publish(self, records):
        self.records += records
        return len(records)

    def record_lost(self, count, reason):
        self.lost += count

    def stats(self):
        return {"enabled": True, "published": len(self.records), "lost": self.lost}


@pytest.fixture(autouse=True)
def no_registry(monkeypatch):
    monkeypatch.setenv("TAXI_CHAMPION_POLL_SECONDS", "0")
    monkeypatch.setattr(fare_service, "alias_version", lambda settings, alias: pytest.fail("the registry was asked"))


def service(mode: str, share: float = 0.5, challenger: LoadedModel | None = None, **kwargs) -> FareService:
    champion = LoadedModel(RecordingPredictor(3.0), "chicago_taxi_fare", "1", "registry")
    challenger = challenger or LoadedModel(RecordingPredictor(5.0), "chicago_taxi_fare", "2", "registry", "challenger")
    ab = ABSettings(mode=mode, challenger_share=share)
    return FareService(load_settings(), model=champion, store=StoreWithOneCompany(), challenger=challenger, ab=ab, **kwargs)


def trips(n: int = 200) -> list[dict]:
    items = [
        {"trip_id": f"t{i:04d}", "trip_miles": float(i % 9), "trip_seconds": 600, "trip_start_timestamp": STAMP, "company": "AB"[i % 2]}
        for i in range(n)
    ]
    return [check_trip(i, item)[0] for i, item in enumerate(items)]


def test_split_sends_the_share_of_trip_ids_to_the_challenger_and_the_other_model_to_shadow():
    ab = service("split", 0.3)
    batch = trips()
    answers = ab.predict(batch)
    expected = [challenger_serves(t["trip_id"], 0.3) for t in batch]
    assert [a["variant"] == "challenger" for a in answers] == expected
    assert 0.15 < sum(expected) / len(expected) < 0.45
    for trip, answer, by_challenger in zip(batch, answers, expected, strict=True):
        champion_fare, challenger_fare = 3.0 + 2 * trip["trip_miles"], 5.0 + 2 * trip["trip_miles"]
        (shadow,) = answer["shadow"]
        assert shadow["variant"] == "shadow"
        if by_challenger:
            assert (answer["model_version"], answer["fare"], shadow["model_version"], shadow["fare"]) == ("2", challenger_fare, "1", champion_fare)
        else:
            assert (answer["model_version"], answer["fare"], shadow["model_version"], shadow["fare"]) == ("1", champion_fare, "2", challenger_fare)
    # The same trip always goes to the same model, alone or in another batch.
    assert [a["variant"] for a in ab.predict(batch[::-1])] == [a["variant"] for a in answers][::-1]
    assert ab.predict(batch[5:6])[0]["variant"] == answers[5]["variant"]


def test_both_models_score_the_same_trips_with_the_same_store_features_from_one_lookup():
    ab = service("split")
    ab.predict(trips(40))
    champion_frames, challenger_frames = ab.model.predictor.frames, ab.challenger.predictor.frames
    assert ab.store.calls == 1 and len(champion_frames) == len(challenger_frames) == 1
    pd.testing.assert_frame_equal(champion_frames[0], challenger_frames[0])
    assert set(schema.STORE_FEATURES) <= set(champion_frames[0].columns)


def test_shadow_answers_with_the_champion_and_logs_the_challenger_beside_it():
    publisher = ListPublisher()
    ab = service("shadow", share=1.0, publisher=publisher)
    batch = trips(10)
    answers = ab.predict(batch)
    assert {a["variant"] for a in answers} == {"champion"} and {a["model_version"] for a in answers} == {"1"}
    assert all([s["model_version"] for s in a["shadow"]] == ["2"] for a in answers)
    assert ab.log_predictions(batch, answers, "/predict_batch", received_ms=1) == 20
    served, shadow = publisher.records[0::2], publisher.records[1::2]
    assert [r["trip_id"] for r in served] == [r["trip_id"] for r in shadow] == [t["trip_id"] for t in batch]
    assert {(r["variant"], r["served"], r["model_version"]) for r in served} == {("champion", True, "1")}
    assert {(r["variant"], r["served"], r["model_version"]) for r in shadow} == {("shadow", False, "2")}
    assert all(r["source"] == {"kind": "http", "endpoint": "/predict_batch"} and r["produced_at_ms"] == 1 for r in publisher.records)
    assert served[0]["store_features"]["company_trips_1d"] == 7 and served[1]["store_features"]["company_trips_1d"] is None
    health = ab.health()
    assert health["ab"]["active"] and health["ab"]["why_inactive"] is None and health["ab"]["challenger"]["version"] == "2"
    assert health["ab"]["challenger"]["alias"] == "challenger" and health["model"]["alias"] == "champion"
    assert health["prediction_log"]["published"] == 20


def test_answers_name_the_store_features_used_and_none_where_defaulted():
    answers = service("off").predict(trips(2))
    assert answers[0]["store_features"]["company_trips_1d"] == 7 and isinstance(answers[0]["store_features"]["company_trips_1d"], int)
    assert answers[0]["store_features"]["company_fare_1d"] == 12.5
    assert answers[1]["store_features"] == dict.fromkeys(schema.STORE_FEATURES)
    assert [a["features_defaulted"] for a in answers][1] == list(schema.STORE_FEATURES)


def test_mode_off_answers_with_the_champion_alone_and_never_asks_the_registry():
    off = FareService(
        load_settings(),
        model=LoadedModel(RecordingPredictor(3.0), "chicago_taxi_fare", "1", "registry"),
        store=StoreWithOneCompany(),
        ab=ABSettings(mode="off"),
    )
    answers = off.predict(trips(5))
    assert all("shadow" not in a and a["variant"] == "champion" for a in answers)
    assert off.health()["ab"] == {
        "mode": "off",
        "challenger_share": 0.1,
        "active": False,
        "why_inactive": "A/B mode is off (config/monitoring.yaml ab.mode or TAXI_AB_MODE)",
        "challenger": None,
        "challenger_failures": 0,
        "last_challenger_error": None,
    }
    assert "prediction_log" not in off.health()


def test_no_challenger_alias_leaves_ab_inactive_and_health_says_why(monkeypatch):
    monkeypatch.setattr(fare_service, "alias_version", lambda settings, alias: None)
    champion = LoadedModel(RecordingPredictor(3.0), "chicago_taxi_fare", "1", "registry")
    ab = FareService(load_settings(), model=champion, store=StoreWithOneCompany(), ab=ABSettings(mode="split", challenger_share=1.0))
    answers = ab.predict(trips(5))
    assert all("shadow" not in a and a["model_version"] == "1" and a["variant"] == "champion" for a in answers)
    state = ab.health()["ab"]
    assert not state["active"] and state["challenger"] is None and "holds the alias @challenger" in state["why_inactive"]


def test_a_challenger_of_the_champion_s_version_leaves_ab_inactive():
    same = service("split", 1.0, challenger=LoadedModel(RecordingPredictor(5.0), "chicago_taxi_fare", "1", "registry", "challenger"))
    assert all("shadow" not in a and a["variant"] == "champion" for a in same.predict(trips(5)))
    assert same.challenger.predictor.frames == []
    assert "the champion itself" in same.health()["ab"]["why_inactive"]


def test_reload_loads_a_moved_challenger_beside_and_drops_a_removed_one(monkeypatch):
    aliases = {"challenger": "2"}
    loaded = []
    monkeypatch.setattr(fare_service, "champion_version", lambda settings: "1")
    monkeypatch.setattr(fare_service, "alias_version", lambda settings, alias: aliases.get(alias))

    def load_challenger(settings, version):
        loaded.append(version)
        return LoadedModel(RecordingPredictor(5.0), "chicago_taxi_fare", version, "registry", "challenger")

    monkeypatch.setattr(fare_service, "load_challenger", load_challenger)
    ab = service("shadow")
    assert ab.reload()["challenger"] == {"previous_version": "2", "version": "2", "changed": False, "why_inactive": None}
    aliases["challenger"] = "3"
    assert ab.reload()["challenger"]["version"] == "3" and loaded == ["3"]
    assert ab.predict(trips(1))[0]["shadow"][0]["model_version"] == "3"
    del aliases["challenger"]
    moved = ab.reload()["challenger"]
    assert moved["version"] is None and "holds the alias @challenger" in moved["why_inactive"]
    assert "shadow" not in ab.predict(trips(1))[0]


def test_a_challenger_that_raises_leaves_the_champion_s_answers_and_is_counted():
    broken = service("split", 1.0, challenger=LoadedModel(BrokenPredictor(), "chicago_taxi_fare", "2", "registry", "challenger"))
    answers = broken.predict(trips(4))
    assert all(a["variant"] == "champion" and a["model_version"] == "1" and "shadow" not in a for a in answers)
    state = broken.health()["ab"]
    assert state["challenger_failures"] == 1 and "challenger exploded" in state["last_challenger_error"]


def test_logging_predictions_never_raises():
    class Exploding(ListPublisher):
        def publish(self, records):
            raise RuntimeError("kafka client bug")

    publisher = Exploding()
    ab = service("shadow", publisher=publisher)
    batch = trips(3)
    assert ab.log_predictions(batch, ab.predict(batch), "/predict") == 0
    assert publisher.lost == 6 and ab.health()["prediction_log"]["build_failures"] == 1

"""The whole taxi_training DAG through Airflow (`airflow dags test`) on the real data, with a real
MLflow store (SQLite) and real BentoML build and serving, all under a temp dir."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest

from chicago_taxi.core import schema
from fixtures.env import DATA_CSV, free_port
from fixtures.training import MODEL, mlflow_client, run_dag


def test_feature_dag_builds_both_views_and_applies_the_repo(feature_store_built):
    built = feature_store_built["build_offline_store"]
    assert built["area_hourly_stats"]["rows"] > 1000 and built["company_half_hourly_stats"]["rows"] > 1000
    assert "FeatureService:fare_model_features" in feature_store_built["feast_apply"]["applied"]


def test_first_run_registers_a_champion_that_beats_the_baseline(first_run, stack):
    ev = first_run["evaluate"]
    assert first_run["extract"]["rows"] == 15002
    assert first_run["validate_raw"]["success"] and first_run["validate_raw"]["quarantined_rows"] > 0
    assert first_run["validate_transformed"]["success"]
    assert ev["rmse_ratio_to_baseline"] <= 0.6, ev
    # Judged on what serving meets: the whole holdout (dirty inputs included) and its clean trips.
    assert ev["candidate"]["rows"] == ev["holdout_repairs"]["rows"] > ev["candidate"]["clean"]["rows"] == ev["holdout_repairs"]["clean_rows"]
    assert ev["clean_rmse_ratio_to_baseline"] <= 0.6 and ev["rmse_ratio_to_baseline"] <= 0.45, ev
    assert ev["holdout_repairs"]["trips_per_repair"]["seconds_not_recorded"] > 0
    # Store features joined point in time, and both variants reported; the better one is the candidate.
    assert min(first_run["join_store_features"]["feature_coverage"].values()) > 0.3
    assert ev["candidate"]["rmse"] == min(ev["with_store_features"]["rmse"], ev["without_store_features"]["rmse"])
    assert first_run["register"]["version"] == "1" and first_run["register"]["alias"] == "champion"
    client = mlflow_client(stack)
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    run = client.get_run(first_run["register"]["run_id"])
    assert run.data.metrics["candidate_rmse"] == pytest.approx(ev["candidate"]["rmse"])
    assert run.data.metrics["candidate_clean_rmse"] == pytest.approx(ev["candidate"]["clean"]["rmse"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/predicted_vs_actual.png", "evaluation/residuals_by_hour.png", "evaluation/validate_raw.json"} <= artifacts


def test_champion_pyfunc_returns_finite_fares_for_raw_rows_dirty_ones_included(first_run, stack):
    import mlflow

    mlflow_client(stack)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    raw = pd.read_csv(DATA_CSV)
    quarantine = pd.read_parquet(first_run["validate_raw"]["quarantine"])
    dirty = raw[(raw.fare == 0) | (raw.trip_miles > 100) | (raw.trip_seconds == 0) | raw.company.isna() | raw.dropoff_latitude.isna()]
    for frame in (raw.head(500), dirty, quarantine.drop(columns=["failed_expectations", "_row_id"])):
        fares = np.asarray(model.predict(frame))
        assert len(fares) == len(frame) and np.isfinite(fares).all()
    # Only the request-time columns: the optional ones are filled as in training.
    minimal = raw[["trip_miles", "trip_seconds", "trip_start_hour", "trip_start_day", "trip_start_month"]].head(50)
    assert np.isfinite(np.asarray(model.predict(minimal))).all()


def test_champion_prices_dirty_trips_inside_the_training_range_and_glitches_by_their_duration(first_run, stack):
    import mlflow

    mlflow_client(stack)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    raw = pd.read_csv(DATA_CSV)
    cap = first_run["train"]["fare_cap"]
    fares = np.asarray(model.predict(raw))
    assert (fares >= schema.MIN_FARE).all() and (fares <= cap).all(), (fares.min(), fares.max(), cap)
    # The sample's odometer glitches (more than 80 mph; real fares): priced near their meter fare.
    speed = raw.trip_miles / (raw.trip_seconds / 3600)
    glitches = raw[(speed > schema.MAX_SPEED_MPH) & (raw.trip_seconds > 0) & raw.fare.between(schema.MIN_FARE, schema.MAX_FARE)]
    errors = np.abs(np.asarray(model.predict(glitches)) - glitches.fare.to_numpy())
    assert len(glitches) >= 50 and errors.mean() < 5.0, errors.mean()
    # 115 miles in 21 minutes (the meter said $8 to $25 for such trips): priced by its duration.
    trip = raw[raw.trip_miles.between(3, 6) & raw.trip_seconds.between(1200, 1320)].head(1).assign(trip_miles=115.0, trip_seconds=1260.0)
    same_trip_no_miles = trip.assign(trip_miles=0.0)
    glitch_fare, no_miles_fare = (float(np.asarray(model.predict(t))[0]) for t in (trip, same_trip_no_miles))
    assert 5.0 < glitch_fare < 40.0 and glitch_fare == pytest.approx(no_miles_fare, rel=1e-6)


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_built_bento_serves_the_same_fares_as_the_pyfunc(first_run, stack):
    import mlflow

    tmp, env = stack
    tag = first_run["build_bento"]["bento_tag"]
    assert first_run["build_bento"]["built"]
    port = free_port()
    server = subprocess.Popen(
        ["bentoml", "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "bento.log", "w"),
        start_new_session=True,
    )
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except OSError:
                assert server.poll() is None, (tmp / "bento.log").read_text()[-3000:]
                time.sleep(0.5)
        trips = pd.read_csv(DATA_CSV)
        # Valid requests (the service rejects 0-second trips), some without company or coordinates.
        trips = trips[(trips.trip_seconds >= 1) & (trips.trip_miles <= 100)].head(40)
        assert trips.company.isna().any() and trips.pickup_community_area.isna().any()
        columns = list(schema.MODEL_INPUT_COLUMNS)
        # Missing values travel as JSON null.
        records = [
            {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in trips[columns].to_dict("records")
        ]
        status, single = _post(f"http://127.0.0.1:{port}/predict", {"trip": records[0]})
        assert status == 200 and single["model_version"] == "1"
        status, batch = _post(f"http://127.0.0.1:{port}/predict_batch", {"trips": records})
        assert status == 200 and len(batch) == len(records)
        mlflow_client(stack)
        expected = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").predict(trips[columns])
        assert [b["fare"] for b in batch] == pytest.approx(list(np.round(expected, 2)), abs=0.011)
        assert single["fare"] == batch[0]["fare"]
        status, error = _post(f"http://127.0.0.1:{port}/predict", {"trip": {**records[0], "trip_miles": -1, "trip_start_hour": 25}})
        assert status == 400 and "trip_miles" in json.dumps(error) and "trip_start_hour" in json.dumps(error)
    finally:
        import os
        import signal

        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_second_run_moves_champion_only_when_better(first_run, stack):
    # A 3-epoch model: its metrics decide; the champion must follow the rule either way.
    proc, report = run_dag(stack, "2017-01-02", TAXI_EPOCHS="3")
    assert proc.returncode == 0, proc.stdout[-4000:]
    ev, client = report["evaluate"], mlflow_client(stack)
    assert ev["champion"]["version"] == "1"
    champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
    if not ev["decision"]["register"]:
        assert report["register"]["version"] is None and champion == "1"
        assert not report["build_bento"]["built"]
    elif ev["candidate"]["rmse"] <= ev["champion"]["rmse"]:
        assert champion == "2"
    else:
        assert champion == "1" and str(client.get_model_version_by_alias(MODEL, "challenger").version) == "2"


def test_failed_gate_stops_the_run_names_the_failures_and_registers_nothing(first_run, stack, tmp_path):
    bad = pd.read_csv(DATA_CSV).drop(columns=["payment_type"])
    bad.loc[: len(bad) // 10, "fare"] = 0.0
    csv = tmp_path / "bad_batch.csv"
    bad.to_csv(csv, index=False)
    client = mlflow_client(stack)
    versions_before = len(client.search_model_versions(f"name='{MODEL}'"))
    proc, report = run_dag(stack, "2017-01-03", TAXI_SOURCE_CSV=str(csv))
    assert proc.returncode != 0
    gate = report["validate_raw"]
    assert not gate["success"]
    assert "expect_column_to_exist(payment_type)" in gate["error"]
    assert "bad-row share" in gate["error"] and "expect_column_values_to_be_between(fare)" in gate["error"]
    quarantine = pd.read_parquet(gate["quarantine"])
    assert (quarantine.fare == 0).sum() >= len(bad) // 10
    assert "transform" not in report and "register" not in report
    assert len(client.search_model_versions(f"name='{MODEL}'")) == versions_before

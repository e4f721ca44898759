"""The monitoring loop end to end on the real broker, MLflow store and Airflow: the replay sends
sample trips (their fares are the ground truth), the stream scores them, taxi_monitoring lands
the prediction log and the labels, judges each window and, on a breach, schedules one retrain.

Windows are the wall-clock spans in which each phase was scored (the DAG's `window_start` /
`window_end` parameters), so a test needs no hour-long wait.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chicago_taxi.core import monitoring_schema as C
from chicago_taxi.ingest import topics
from chicago_taxi.ingest.messages import trip_id_for
from chicago_taxi.ingest.replay import Drift
from fixtures.airflow import AirflowStack
from fixtures.browser import check_monitoring_page
from fixtures.env import REPO_ROOT
from fixtures.monitoring import Loop, monitoring_rig
from fixtures.streams import end_offsets, read_since

PHASE = 500  # trips per window
CLEAN_WINDOWS = 3
DRIFT = "trip_miles=*3"
FARE_SCALE = 1.5


@pytest.fixture(scope="module")
def loop(stream_env, monitoring_env, tmp_path_factory) -> Loop:
    """The rig shares its stores, reports and monitoring group with the package's Airflow stack."""
    return monitoring_rig(stream_env, tmp_path_factory.mktemp("monitoring"), **monitoring_env)


@pytest.fixture(scope="module")
def clean_summaries(loop) -> list[dict]:
    windows = [loop.phase(PHASE)[:2] for _ in range(CLEAN_WINDOWS)]
    landed = loop.land()
    assert landed["predictions"]["rows"] >= CLEAN_WINDOWS * PHASE and not landed["predictions"]["skipped"], landed
    return [loop.monitor(start, end) for start, end in windows]


def test_clean_replay_over_several_windows_raises_no_alert(loop, clean_summaries):
    false_alarms = [b for s in clean_summaries for b in s["breaches"]]
    print(f"false alarms over {len(clean_summaries)} clean windows of {PHASE} trips: {len(false_alarms)}")
    assert false_alarms == [], json.dumps(false_alarms, indent=1)
    for summary in clean_summaries:
        assert summary["predictions"] == PHASE and summary["labelled"] == PHASE
        assert summary["drift"]["judged"] and summary["drift"]["drifted_features"] == []
        assert summary["published"]["metrics_records"] >= 1
        report = loop.env["TAXI_MONITORING_REPORTS_DIR"] + "/" + summary["evidently"]["html"]
        assert open(report).read(200).lower().lstrip().startswith("<!doctype html") or "<html" in open(report).read(2000).lower()
    trends = sorted(p.rsplit("/", 1)[-1] for p in clean_summaries[-1]["plots"])
    assert trends == ["drift_trend.png", "quality_trend.png"]


def test_quality_figures_equal_an_independent_pandas_computation(loop, clean_summaries):
    """The window's figures against a join done here: the predictions read back from
    taxi-predictions, the fares from the replayed CSV rows (trip-<row>, `trip_id_for`)."""
    start, end, offsets = loop.windows[0]
    records = [
        r
        for r in read_since(loop.bootstrap, topics.PREDICTIONS, offsets)
        if r.get("source", {}).get("group") == loop.env["TAXI_STREAM_GROUP"]
        and start.timestamp() * 1000 <= r["scored_at_ms"] < end.timestamp() * 1000
    ]
    predicted = pd.DataFrame({"trip_id": [r["trip_id"] for r in records], "predicted": [r["fare"] for r in records]}).drop_duplicates(
        "trip_id", keep="last"
    )
    fares = pd.DataFrame({"trip_id": [trip_id_for(i) for i in range(len(loop.rows))], "fare": loop.rows["fare"]})
    joined = predicted.merge(fares, on="trip_id")
    joined = joined[joined["fare"].between(*C.LABEL_RANGE)]
    errors = joined["predicted"] - joined["fare"]
    expected = {
        "count": len(joined),
        "rmse": float(np.sqrt((errors**2).mean())),
        "mae": float(errors.abs().mean()),
        "bias": float(errors.mean()),
        "r2": float(1 - (errors**2).sum() / ((joined["fare"] - joined["fare"].mean()) ** 2).sum()),
    }
    (served,) = [q for q in clean_summaries[0]["quality"] if q["variant"] != "shadow"]
    assert served["count"] == expected["count"]
    for name in ("rmse", "mae", "bias", "r2"):
        assert served[name] == pytest.approx(expected[name], abs=1e-3), name


# ---------------------------------------------------------------- through Airflow
def _trigger_window(stack: AirflowStack, start: datetime, end: datetime, timeout: float = 420) -> tuple[dict, dict[str, str]]:
    run = stack.api(
        "POST",
        "dags/taxi_monitoring/dagRuns",
        json={"logical_date": None, "conf": {"window_start": start.isoformat(), "window_end": end.isoformat()}},
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = stack.api("GET", f"dags/taxi_monitoring/dagRuns/{run['dag_run_id']}")["state"]
        if state in ("success", "failed"):
            break
        time.sleep(3)
    tasks = {t["task_id"]: t["state"] for t in stack.task_instances("taxi_monitoring", run["dag_run_id"])}
    assert state == "success", f"taxi_monitoring run {run['dag_run_id']} ended {state}: {tasks}\n{stack.log_tails()}"
    return run, tasks


def _asset_triggered_training_runs(stack: AirflowStack) -> list[dict]:
    return [r for r in stack.dag_runs("taxi_training") if r["run_type"] == "asset_triggered"]


def test_drifted_replay_alerts_within_one_window_and_schedules_exactly_one_retrain(loop, clean_summaries, airflow_stack):
    alerts_start = end_offsets(loop.bootstrap, topics.ALERTS)
    drift = Drift.parse("0", FARE_SCALE, [DRIFT])
    start, end, _ = loop.phase(PHASE, drift)
    _, tasks = _trigger_window(airflow_stack, start, end)
    assert tasks["request_retraining"] == "success", tasks

    from chicago_taxi.monitoring.steps import SUMMARY, window_id

    reports = loop.env["TAXI_MONITORING_REPORTS_DIR"]
    summary = json.loads(open(f"{reports}/{window_id(start)}/{SUMMARY}").read())
    assert "trip_miles" in summary["drift"]["drifted_features"]
    assert "trip_miles" in summary["evidently"]["drifted_columns"]
    assert "trip_miles" in open(f"{reports}/{summary['evidently']['html']}").read()
    rules = {b["rule"] for b in summary["breaches"]}
    assert {"feature_drift_psi", "mae_ratio_to_holdout"} <= rules, rules
    alerts = [a for a in read_since(loop.bootstrap, topics.ALERTS, alerts_start) if a.get("kind") == "model_monitoring_breach"]
    assert {a["rule"] for a in alerts} == rules and all(a["window"] == window_id(start) and a["report"] for a in alerts)

    deadline = time.monotonic() + 90
    while not _asset_triggered_training_runs(airflow_stack) and time.monotonic() < deadline:
        time.sleep(3)
    assert len(_asset_triggered_training_runs(airflow_stack)) == 1

    # The incident goes on: the next window breaches again, but within the cooldown it only alerts.
    start, end, _ = loop.phase(PHASE, drift)
    _, tasks = _trigger_window(airflow_stack, start, end)
    assert tasks["request_retraining"] == "skipped", tasks
    time.sleep(10)
    runs = _asset_triggered_training_runs(airflow_stack)
    assert len(runs) == 1, runs
    # The retrain itself is the training DAG's business (tested there): stop it here.
    airflow_stack.pause("taxi_training")
    airflow_stack.api("PATCH", f"dags/taxi_training/dagRuns/{runs[0]['dag_run_id']}", json={"state": "failed"})


def test_the_monitoring_page_shows_the_latest_window_and_its_drift_report(loop, airflow_stack, monitoring_reports_dir):
    """After the loop: log in to the Airflow UI, open the Monitoring page, read the latest
    window's RMSE (the drifted one) and open its Evidently report (names trip_miles).
    TAXI_SCREENSHOT_PATH=<png> keeps a screenshot (the README's)."""
    import os

    from chicago_taxi.monitoring.page import format_metric
    from chicago_taxi.monitoring.steps import SUMMARY, window_id

    start = loop.windows[-1][0]
    summary = json.loads((monitoring_reports_dir / window_id(start) / SUMMARY).read_text())
    (served,) = [q for q in summary["quality"] if q["variant"] != "shadow"]
    screenshot = os.environ.get("TAXI_SCREENSHOT_PATH")
    check_monitoring_page(airflow_stack, monitoring_reports_dir, format_metric(served["rmse"]), Path(screenshot) if screenshot else None)


def test_the_readme_drift_walkthrough(stream_env, tmp_path_factory):
    """The README's commands as printed: a clean replay and `make monitor` (no alert), then the
    drifted replay and `make monitor`, which names trip_miles. On a rig of its own (the README
    replays the vendored sample's rows, whose ids the other rigs used for other trips)."""
    import re
    import subprocess

    rig = monitoring_rig(stream_env, tmp_path_factory.mktemp("readme-drift"))
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("### Watching the loop fire") :]
    commands = re.findall(r"^(make (?:replay|monitor) .+)$", section, flags=re.M)
    assert [c.split()[1] for c in commands[:4]] == ["replay", "monitor", "replay", "monitor"], commands

    def run(command: str) -> str:
        proc = subprocess.run(command, shell=True, env=rig.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout + proc.stderr

    run(commands[0])
    assert rig.score()["valid"] > 300
    clean = run(commands[1])
    assert "ALERT" not in clean and "drift: none" in clean, clean
    run(commands[2])
    assert rig.score()["valid"] > 300
    drifted = run(commands[3])
    assert "ALERT feature_drift_psi on trip_miles" in drifted, drifted
    assert re.search(r"drift report: .*report\.html", drifted), drifted

"""The Monitoring page in a running Airflow 3 api-server (plugins/monitoring_ui.py), driven by a
headless Chromium (Playwright on Debian's /usr/bin/chromium; no browser download).

Airflow mounts a plugin's FastAPI app without authentication, so the page must refuse an
anonymous request itself: plain HTTP gets 401, a browser is sent to Airflow's login form and
back. After logging in through that form, the page opened from the UI's nav entry shows the
latest window's RMSE from a summary this test wrote, and its drift report link opens a real
Evidently report. Files outside the reports directory are never served.

`check_monitoring_page` is the browser part, reusable with the monitoring DAG's real output.
(The README's screenshot comes from test_monitoring_loop.py, on real monitoring output: set
TAXI_SCREENSHOT_PATH there. This module's windows are synthetic; its screenshot, if any, goes to
TAXI_SYNTHETIC_SCREENSHOT_PATH, with `<name>-in-airflow.png`,
the page framed in the Airflow UI).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from chicago_taxi.monitoring.page import format_metric
from chicago_taxi.monitoring.steps import window_id as id_of_window
from fixtures.browser import PAGE, check_monitoring_page, chromium_path

TIMINGS: dict[str, float] = {}
WINDOW_ID = "%Y%m%dT%H%M%S"  # chicago_taxi.monitoring.steps.window_id's format


# ---------------------------------------------------------------- synthetic monitoring output
def window_ids(reports_dir: Path, n: int) -> list[str]:
    """`n` hourly window ids, newest first, all newer than any window already in `reports_dir`
    (the stack is shared: the monitoring DAG's tests may have written windows before)."""
    newest = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    existing = sorted(p.parent.name for p in reports_dir.glob("*/summary.json"))
    if existing:
        newest = max(newest, datetime.strptime(existing[-1], WINDOW_ID).replace(tzinfo=UTC) + timedelta(hours=n))
    return [id_of_window(newest - timedelta(hours=i)) for i in range(n)]


def summary(window_id: str, rmse: float, breaches: list[dict]) -> dict:
    start = datetime.strptime(window_id, WINDOW_ID).replace(tzinfo=UTC)
    return {
        "window": {"id": window_id, "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()},
        "computed_at": (start + timedelta(hours=1, minutes=5)).isoformat(),
        "predictions": 300,
        "labelled": 280,
        "quality": [
            {
                "model_name": "chicago_taxi_fare",
                "model_version": "3",
                "variant": "champion",
                "predictions": 300,
                "unlabelled": 20,
                "count": 280,
                "rmse": rmse,
                "mae": 1.25,
                "r2": 0.81,
                "bias": -0.12,
                "clean_count": 270,
                "clean_rmse": 2.1,
                "clean_mae": 1.1,
            }
        ],
        "reference": {"model_version": "3", "holdout": {"rmse": 2.3, "mae": 1.2}},
        "drift": {
            "rows": 300,
            "judged": True,
            "features": [
                {"feature": "trip_miles", "kind": "numeric", "psi": 0.41, "ks_statistic": 0.3, "ks_pvalue": 0.0001, "drifted": bool(breaches)}
            ],
            "prediction": {"psi": 0.05, "drifted": False},
            "drifted_features": ["trip_miles"] if breaches else [],
        },
        "evidently": {"html": f"{window_id}/report.html", "drifted_columns": ["trip_miles"] if breaches else []},
        "breaches": breaches,
        "ab": None,
        "plots": ["trends/quality_trend.png"],
    }


def write_evidently_report(path: Path) -> None:
    """A real Evidently 0.7 drift and regression report (self-contained HTML, rendered by its scripts)."""
    os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")
    from evidently import DataDefinition, Dataset, Regression, Report
    from evidently.presets import DataDriftPreset, RegressionPreset

    rng = np.random.default_rng(0)

    def frame(shift: float) -> pd.DataFrame:
        miles = rng.gamma(2.0, 1.5 + shift, 300)
        fare = 3.25 + 2.25 * miles + rng.normal(0, 1.5, 300)
        return pd.DataFrame(
            {"trip_miles": miles, "trip_seconds": miles * 240 + rng.normal(0, 60, 300), "fare": fare, "prediction": 3.25 + 2.25 * miles}
        )

    definition = DataDefinition(numerical_columns=["trip_miles", "trip_seconds"], regression=[Regression(target="fare", prediction="prediction")])
    datasets = [Dataset.from_pandas(frame(shift), data_definition=definition) for shift in (0.0, 1.0)]
    result = Report([DataDriftPreset(), RegressionPreset()]).run(reference_data=datasets[0], current_data=datasets[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    result.save_html(str(path))


def tiny_png(width: int = 4, height: int = 3) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + b"\x20\x60\xc0" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def synthetic_windows(airflow_stack, monitoring_reports_dir):
    """Three windows: the newest with a drift breach and a real Evidently report, one in bounds,
    one with a malformed summary.json; a trend plot. Removed afterwards (the stack is shared)."""
    TIMINGS["stack start (healthy)"] = airflow_stack.start_seconds
    newest, older, broken = window_ids(monitoring_reports_dir, 3)
    breach = {
        "rule": "psi",
        "value": 0.41,
        "threshold": 0.25,
        "window": newest,
        "report": f"{newest}/report.html",
        "model_version": "3",
        "feature": "trip_miles",
    }
    written = {newest: summary(newest, 2.4681357, [breach]), older: summary(older, 2.2, [])}
    for window_id, content in written.items():
        (monitoring_reports_dir / window_id).mkdir()
        (monitoring_reports_dir / window_id / "summary.json").write_text(json.dumps(content))
    started = time.monotonic()
    write_evidently_report(monitoring_reports_dir / newest / "report.html")
    TIMINGS["evidently report"] = round(time.monotonic() - started, 1)
    (monitoring_reports_dir / broken).mkdir()
    (monitoring_reports_dir / broken / "summary.json").write_text('{"window": ')
    trends = monitoring_reports_dir / "trends"
    trends.mkdir(exist_ok=True)
    plot_existed = (trends / "quality_trend.png").exists()
    if not plot_existed:
        (trends / "quality_trend.png").write_bytes(tiny_png())
    yield {"newest": newest, "older": older, "broken": broken, "rmse": format_metric(2.4681357)}
    for window_id in (newest, older, broken):
        shutil.rmtree(monitoring_reports_dir / window_id, ignore_errors=True)
    if not plot_existed:
        (trends / "quality_trend.png").unlink(missing_ok=True)


@pytest.fixture(scope="module", autouse=True)
def report_timings():
    yield
    print("\n[timing] " + ", ".join(f"{k} {v} s" for k, v in TIMINGS.items()), flush=True)


# ---------------------------------------------------------------- tests
def test_chromium_is_installed_for_the_browser_tests():
    assert chromium_path().exists()


def test_an_anonymous_request_gets_no_monitoring_data(airflow_stack, synthetic_windows):
    with httpx.Client(base_url=airflow_stack.base_url, timeout=30) as anonymous:
        api = anonymous.get(PAGE)
        browser = anonymous.get(PAGE, headers={"Accept": "text/html"})
        report = anonymous.get(f"{PAGE}reports/{synthetic_windows['newest']}/summary.json")
    with httpx.Client(base_url=airflow_stack.base_url, timeout=30, cookies={"_token": "not-a-jwt"}) as forging:
        forged = forging.get(PAGE)
    assert api.status_code == 401 and synthetic_windows["rmse"] not in api.text
    assert report.status_code == 401 and "quality" not in report.text
    assert forged.status_code == 403 and synthetic_windows["rmse"] not in forged.text
    # A browser is sent to Airflow's login form, which returns to the page.
    assert browser.status_code == 307
    assert browser.headers["location"].startswith("/auth/login?next=") and "monitoring" in browser.headers["location"]


def test_the_page_serves_only_files_inside_the_reports_dir(airflow_stack, monitoring_reports_dir, synthetic_windows, tmp_path):
    outside = tmp_path / "secret.json"
    outside.write_text('{"secret": 1}')
    link = monitoring_reports_dir / "escape.json"
    link.symlink_to(outside)
    token = airflow_stack._get_token()
    try:
        with httpx.Client(base_url=airflow_stack.base_url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
            newest = synthetic_windows["newest"]
            assert client.get(f"{PAGE}reports/{newest}/summary.json").json()["window"]["id"] == newest
            served = client.get(f"{PAGE}reports/trends/quality_trend.png")
            assert served.status_code == 200 and served.headers["content-type"] == "image/png"
            # The report's scripts run sandboxed: an opaque origin, without the viewer's session.
            report = client.get(f"{PAGE}reports/{newest}/report.html")
            assert report.status_code == 200 and report.headers["content-security-policy"] == "sandbox allow-scripts"
            for attempt in (
                "escape.json",
                "%2e%2e/%2e%2e/secret.json",
                "..%2fsecret.json",
                f"%2F{outside}",
                f"{newest}/../../secret.json",
                "notes.txt",
            ):
                response = client.get(f"{PAGE}reports/{attempt}")
                assert response.status_code == 404, (attempt, response.status_code, response.text[:200])
                assert "secret" not in response.text
    finally:
        link.unlink()


def test_after_logging_in_the_page_shows_the_latest_window_and_opens_its_drift_report(airflow_stack, monitoring_reports_dir, synthetic_windows):
    screenshot = Path(os.environ["TAXI_SYNTHETIC_SCREENSHOT_PATH"]) if os.environ.get("TAXI_SYNTHETIC_SCREENSHOT_PATH") else None
    TIMINGS.update(check_monitoring_page(airflow_stack, monitoring_reports_dir, synthetic_windows["rmse"], screenshot))

"""The Monitoring page (chicago_taxi.monitoring.page) on synthetic window summaries, and the
plugin's FastAPI app (plugins/monitoring_ui.py) through TestClient with Airflow's login
dependency overridden (the real login is checked in tests/integration/monitoring)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chicago_taxi.monitoring import page
from chicago_taxi.monitoring.page import format_metric, load_windows, render_page, resolve_report

HOSTILE = '<script>alert("x")</script>'


def summary(window_id: str, *, rmse: float | None = 2.4681, breaches: list | None = None, **changes) -> dict:
    content = {
        "window": {"id": window_id, "start": "2026-12-01T10:00:00+00:00", "end": "2026-12-01T11:00:00+00:00"},
        "computed_at": "2026-12-01T11:05:00+00:00",
        "predictions": 1200,
        "labelled": 1100,
        "quality": [
            {
                "model_name": "chicago_taxi_fare",
                "model_version": "3",
                "variant": "champion",
                "predictions": 1200,
                "unlabelled": 100,
                "count": 1100,
                "rmse": rmse,
                "mae": 1.2,
                "r2": 0.8,
                "bias": None,
                "clean_count": 1000,
                "clean_rmse": 2.0,
                "clean_mae": 1.0,
            }
        ],
        "reference": {"model_version": "3", "holdout": {"rmse": 2.3, "mae": 1.2}},
        "drift": {
            "rows": 1200,
            "judged": True,
            "features": [{"feature": "trip_miles", "kind": "numeric", "psi": 0.4, "ks_statistic": 0.2, "ks_pvalue": 0.001, "drifted": True}],
            "prediction": None,
            "drifted_features": ["trip_miles"],
        },
        "evidently": {"html": f"{window_id}/report.html", "drifted_columns": ["trip_miles"]},
        "breaches": breaches or [],
        "ab": None,
        "plots": ["trends/quality_trend.png"],
    }
    content.update(changes)
    return content


def write(reports_dir: Path, window_id: str, content: object) -> Path:
    path = reports_dir / window_id / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.fixture
def reports_dir(tmp_path) -> Path:
    root = tmp_path / "monitoring"
    write(root, "20261201T0900", summary("20261201T0900", rmse=2.1))
    breach = {
        "rule": "psi",
        "value": 0.4,
        "threshold": 0.25,
        "window": "20261201T1000",
        "report": "20261201T1000/report.html",
        "model_version": "3",
        "feature": "trip_miles",
    }
    write(root, "20261201T1000", summary("20261201T1000", breaches=[breach]))
    (root / "20261201T1000" / "report.html").write_text("<html><body>drift report</body></html>")
    (root / "trends").mkdir()
    (root / "trends" / "quality_trend.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return root


# ---------------------------------------------------------------- loading
def test_windows_load_newest_first(reports_dir):
    windows = load_windows(reports_dir)
    assert [w["id"] for w in windows] == ["20261201T1000", "20261201T0900"]
    assert all(w["error"] is None and w["summary"]["window"]["id"] == w["id"] for w in windows)


def test_no_reports_dir_or_no_window_loads_nothing(tmp_path):
    assert load_windows(tmp_path / "missing") == []
    assert load_windows(tmp_path) == []


@pytest.mark.parametrize(
    "content, error",
    [
        ('{"window": ', "cannot be read"),
        ("[1, 2]", "holds a list"),
        (summary("x", quality={"rmse": 1}), "'quality'"),
        (summary("x", breaches=["psi"]), "every item of 'breaches'"),
        (summary("x", drift="none"), "'drift'"),
    ],
    ids=["truncated json", "not an object", "quality not a list", "breach not an object", "drift not an object"],
)
def test_a_malformed_summary_is_kept_with_its_error(reports_dir, content, error):
    write(reports_dir, "20261201T1100", content)
    newest = load_windows(reports_dir)[0]
    assert newest["id"] == "20261201T1100" and newest["summary"] is None
    assert error in newest["error"]


def test_a_summary_that_is_not_utf8_is_kept_with_its_error(reports_dir):
    (reports_dir / "20261201T1100").mkdir()
    (reports_dir / "20261201T1100" / "summary.json").write_bytes(b"\xff\xfe{")
    assert "cannot be read" in load_windows(reports_dir)[0]["error"]


# ---------------------------------------------------------------- rendering
def render(reports_dir: Path, **kwargs) -> str:
    return render_page(load_windows(reports_dir), page.ui_links(), reports_dir, **kwargs)


def test_the_page_shows_the_latest_window_its_report_alerts_and_plots(reports_dir):
    html = render(reports_dir)
    latest = html[html.index('id="latest"') : html.index('id="alerts"')]
    assert "20261201T1000" in latest and '<b data-metric="rmse">2.468</b>' in latest
    assert 'href="reports/20261201T1000/report.html"' in latest and "Open the latest drift report" in latest
    alerts = html[html.index('id="alerts"') : html.index('id="trends"')]
    assert "psi" in alerts and "trip_miles" in alerts and "0.250" in alerts
    assert '<img src="reports/trends/quality_trend.png?v=' in html
    assert html.index('id="w-20261201T1000"') < html.index('id="w-20261201T0900"')  # newest first
    assert "2.100" in html  # the older window's RMSE


def test_the_page_links_mlflow_and_the_service_docs_from_the_environment(reports_dir, monkeypatch):
    monkeypatch.setenv("MLFLOW_UI_URL", "http://mlflow.internal:5000/")
    monkeypatch.setenv("TAXI_SERVICE_URL", "http://fares.internal:3000")
    html = render(reports_dir)
    assert 'href="http://mlflow.internal:5000/"' in html
    assert 'href="http://fares.internal:3000/"' in html and 'href="http://fares.internal:3000/docs.json"' in html
    monkeypatch.delenv("MLFLOW_UI_URL")
    monkeypatch.delenv("TAXI_SERVICE_URL")
    assert page.ui_links() == {
        "mlflow": "http://127.0.0.1:5000/",
        "service_docs": "http://127.0.0.1:3000/",
        "service_openapi": "http://127.0.0.1:3000/docs.json",
    }


def test_the_empty_state_says_how_to_produce_windows(tmp_path):
    html = render_page([], page.ui_links(), tmp_path)
    assert "No monitoring windows yet" in html and "taxi_monitoring" in html and "Trigger" in html


def test_a_malformed_summary_is_listed_without_breaking_the_page(reports_dir):
    write(reports_dir, "20261201T1100", '{"window": ')
    html = render(reports_dir)
    assert "20261201T1100" in html and "unreadable" in html and "cannot be read" in html
    # The latest readable window is still the one shown prominently.
    assert 'Latest window: <a href="#w-20261201T1000">20261201T1000</a>' in html


def test_a_renderer_failure_on_one_window_leaves_the_rest_of_the_page(reports_dir, monkeypatch):
    def broken(summary):
        raise KeyError("surprise")

    monkeypatch.setattr(page, "_quality_table", broken)
    html = render(reports_dir)
    assert html.count("cannot be shown: KeyError") == 2  # both windows
    assert 'id="latest"' in html and 'id="alerts"' in html and html.endswith("</html>")


def test_everything_from_a_file_is_escaped(reports_dir):
    hostile = summary(
        "20261201T1100",
        quality=[{"model_name": HOSTILE, "model_version": HOSTILE, "variant": "champion", "rmse": HOSTILE}],
        breaches=[{"rule": HOSTILE, "value": HOSTILE, "feature": HOSTILE, "report": "javascript:alert(1)//.html"}],
        drift={"rows": 3, "judged": True, "features": [{"feature": HOSTILE, "drifted": True}], "drifted_features": [HOSTILE], "prediction": None},
        evidently={"html": '../x" onmouseover="alert(1).html'},
        ab={"promote": False, "reason": HOSTILE},
        window={"id": HOSTILE, "start": HOSTILE, "end": None},
        plots=[HOSTILE, "/etc/passwd.png"],
    )
    write(reports_dir, "20261201T1100", hostile)
    write(reports_dir, "20261201T1200<b>", "{")  # a directory name is file content too
    html = render(reports_dir)
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "javascript:" not in html and "onmouseover" not in html and "/etc/passwd" not in html


@pytest.mark.parametrize("value, shown", [(2.4681357, "2.468"), (None, "–"), (1200, "1,200"), (True, "yes"), (float("nan"), "nan"), ("3", "3")])
def test_figures_are_formatted_for_reading(value, shown):
    assert format_metric(value) == shown


def test_only_the_newest_windows_are_shown_in_full_unless_asked(reports_dir):
    for hour in range(11, 15):
        write(reports_dir, f"20261201T{hour}00", summary(f"20261201T{hour}00"))
    assert render(reports_dir, limit=2).count('class="window"') == 2
    assert "4 older windows not shown" in render(reports_dir, limit=2)
    assert render(reports_dir, limit=0).count('class="window"') == 6


# ---------------------------------------------------------------- serving files
def test_resolve_report_serves_html_png_and_json_inside_the_dir(reports_dir):
    assert resolve_report(reports_dir, "20261201T1000/report.html") == (reports_dir / "20261201T1000" / "report.html").resolve()
    assert resolve_report(reports_dir, "trends/quality_trend.png") is not None
    assert resolve_report(reports_dir, "20261201T1000/summary.json") is not None


def test_resolve_report_refuses_everything_else(reports_dir, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    (reports_dir / "out.json").symlink_to(secret)
    (reports_dir / "notes.txt").write_text("x")
    (reports_dir / "folder.json").mkdir()
    for relative in (
        "../secret.json",
        "20261201T1000/../../secret.json",
        str(secret),
        "//etc/passwd.json",
        "out.json",  # a symlink leading out of the dir
        "notes.txt",
        "folder.json",
        "missing.png",
        "",
        "20261201T1000\\..\\..\\secret.json",
        "trends/quality_trend.png\0.html",
    ):
        assert resolve_report(reports_dir, relative) is None, relative


def test_a_symlink_inside_the_dir_is_served(reports_dir):
    (reports_dir / "latest.html").symlink_to(reports_dir / "20261201T1000" / "report.html")
    assert resolve_report(reports_dir, "latest.html") is not None


# ---------------------------------------------------------------- the plugin's app
@pytest.fixture(scope="module")
def monitoring_ui():
    import monitoring_ui  # plugins/monitoring_ui.py (imports Airflow's plugin base class)

    return monitoring_ui


@pytest.fixture
def client(monitoring_ui, reports_dir, monkeypatch):
    monkeypatch.setenv("TAXI_MONITORING_REPORTS_DIR", str(reports_dir))
    app = monitoring_ui.create_app()
    app.dependency_overrides[monitoring_ui.require_airflow_user] = lambda: None
    return TestClient(app)


def test_the_app_serves_the_page_and_its_files(client):
    response = client.get("/")
    assert response.status_code == 200 and '<b data-metric="rmse">2.468</b>' in response.text
    assert "script-src" not in response.headers["content-security-policy"] and "default-src 'none'" in response.headers["content-security-policy"]
    report = client.get("/reports/20261201T1000/report.html")
    assert report.status_code == 200 and "drift report" in report.text
    assert report.headers["content-security-policy"] == "sandbox allow-scripts"
    png = client.get("/reports/trends/quality_trend.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"


def test_the_app_refuses_paths_outside_the_reports_dir(client, reports_dir, tmp_path):
    (tmp_path / "secret.json").write_text('{"secret": 1}')
    for path in ("/reports/%2e%2e/secret.json", "/reports/..%2fsecret.json", f"/reports/%2F{tmp_path}/secret.json", "/reports/notes.txt"):
        response = client.get(path)
        assert response.status_code == 404 and "secret" not in response.text, path


def test_the_app_reads_the_reports_dir_at_each_request(client, tmp_path, monkeypatch):
    assert "20261201T1000" in client.get("/").text
    monkeypatch.setenv("TAXI_MONITORING_REPORTS_DIR", str(tmp_path / "elsewhere"))
    assert "No monitoring windows yet" in client.get("/").text


def test_without_login_a_browser_goes_to_the_login_page_and_a_client_gets_401(monitoring_ui, reports_dir, monkeypatch):
    monkeypatch.setenv("TAXI_MONITORING_REPORTS_DIR", str(reports_dir))
    app = monitoring_ui.create_app(login_url=lambda request: f"/auth/login?next={request.url.path}")

    def not_logged_in():
        raise monitoring_ui.LoginRequired("Not authenticated")

    app.dependency_overrides[monitoring_ui.require_airflow_user] = not_logged_in
    anonymous = TestClient(app, follow_redirects=False)
    browser = anonymous.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert browser.status_code == 307 and browser.headers["location"] == "/auth/login?next=/"
    for path in ("/", "/reports/20261201T1000/report.html"):
        response = anonymous.get(path)
        assert response.status_code == 401 and response.json() == {"detail": "Not authenticated"}
        assert "2.468" not in response.text and "drift report" not in response.text


def test_the_plugin_registers_the_app_and_a_nav_entry(monitoring_ui):
    plugin = monitoring_ui.TaxiMonitoringPlugin
    assert [(a["url_prefix"], a["name"]) for a in plugin.fastapi_apps] == [("/monitoring", "Chicago taxi monitoring")]
    (view,) = plugin.external_views
    assert view["href"] == "monitoring/" and view["url_route"] == "monitoring" and view["destination"] == "nav"

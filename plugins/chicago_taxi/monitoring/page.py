"""The Monitoring page of the Airflow UI: the monitoring DAG's window summaries read from the
reports directory and rendered as one plain HTML page (inline CSS, no script, no CDN).

Everything that comes from a file is escaped here. No web framework is imported: the plugin at
the edge (plugins/monitoring_ui.py) serves `render_page` and the files `resolve_report` allows.

    <reports_dir>/<window_id>/summary.json   one per window ("20261201T1000"), newest first
    <reports_dir>/<window_id>/report.html    the window's Evidently drift report
    <reports_dir>/trends/*.png               the trend plots
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from html import escape
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from chicago_taxi.core.config import linked_ui_urls
from chicago_taxi.core.monitoring_schema import SUMMARY_FILE, TRENDS_DIR

# Only these are served from the reports directory, with these content types.
SERVED_TYPES = {".html": "text/html; charset=utf-8", ".png": "image/png", ".json": "application/json"}
SHOWN_WINDOWS = 48  # two days of hourly windows in full; `?limit=0` shows every window
ALERT_WINDOWS = 24  # "recent alerts": the breaches of the newest day of windows

# The shape of a summary (what the monitoring DAG writes): key -> accepted types (None = null).
SUMMARY_SHAPE: dict[str, tuple[type | None, ...]] = {
    "window": (dict,),
    "quality": (list,),
    "breaches": (list,),
    "drift": (dict, None),
    "evidently": (dict, None),
    "reference": (dict, None),
    "ab": (dict, None),
    "plots": (list,),
}


# ---------------------------------------------------------------- loading
def load_windows(reports_dir: Path) -> list[dict]:
    """Every window under `reports_dir`, newest first (by window id, which sorts by time):
    {"id", "summary": dict or None, "error": str or None}. An unreadable or malformed
    summary.json is kept with its error, so the page can list it instead of failing."""
    if not reports_dir.is_dir():
        return []
    windows = []
    for path in reports_dir.glob(f"*/{SUMMARY_FILE}"):
        window_id = path.parent.name
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            windows.append({"id": window_id, "summary": None, "error": f"{SUMMARY_FILE} cannot be read: {exc}"})
            continue
        problem = summary_problem(summary)
        windows.append({"id": window_id, "summary": None if problem else summary, "error": problem})
    windows.sort(key=lambda w: w["id"], reverse=True)
    return windows


def summary_problem(summary: object) -> str | None:
    """Why `summary` does not have the shape the page reads, or None when it does."""
    if not isinstance(summary, dict):
        return f"{SUMMARY_FILE} holds a {type(summary).__name__}, not an object"
    for key, accepted in SUMMARY_SHAPE.items():
        value = summary.get(key)
        if not any(value is None if kind is None else isinstance(value, kind) for kind in accepted):
            wanted = " or ".join("null" if kind is None else kind.__name__ for kind in accepted)
            return f"{SUMMARY_FILE}: {key!r} is {json.dumps(value)[:80]}, expected {wanted}"
    for key in ("quality", "breaches"):
        if not all(isinstance(item, dict) for item in summary[key]):
            return f"{SUMMARY_FILE}: every item of {key!r} must be an object"
    return None


def resolve_report(reports_dir: Path, relative: str) -> Path | None:
    """The file `relative` names inside `reports_dir`, or None when it must not be served:
    absolute, with `..`, not .html/.png/.json, missing, or a symlink leading out of the dir."""
    if not relative or "\\" in relative or "\0" in relative:
        return None
    path = PurePosixPath(relative)
    if path.is_absolute() or any(part in ("..", ".") for part in path.parts) or path.suffix.lower() not in SERVED_TYPES:
        return None
    try:
        root = reports_dir.resolve(strict=True)
        target = (root / path).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target


def served_type(path: Path) -> str:
    return SERVED_TYPES[path.suffix.lower()]


def ui_links() -> dict[str, str]:
    """The other UIs the page links to, from MLFLOW_UI_URL and TAXI_SERVICE_URL (read per call)."""
    urls = linked_ui_urls()
    service = urls["service"]
    return {
        "mlflow": urls["mlflow"] + "/",
        "service_docs": service + "/",  # BentoML serves Swagger UI at /
        "service_openapi": service + "/docs.json",
    }


# ---------------------------------------------------------------- formatting
def format_metric(value: object, digits: int = 3) -> str:
    """A figure as the page shows it: floats with `digits` decimals, null as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else str(value)
    return str(value)


def _e(value: object) -> str:
    return escape(format_metric(value), quote=True)


def _href(relative: object) -> str | None:
    """A link to a file of the reports dir through the page's own route, or None when the
    path could never be served (so no link points outside the reports dir)."""
    if not isinstance(relative, str):
        return None
    path = PurePosixPath(relative)
    if not relative or path.is_absolute() or ".." in path.parts or path.suffix.lower() not in SERVED_TYPES:
        return None
    return escape("reports/" + quote(relative), quote=True)


def _link(url: str | None, text: str, css: str = "") -> str:
    if url is None:
        return ""
    cls = f' class="{css}"' if css else ""
    return f'<a href="{url}"{cls}>{escape(text)}</a>'


def _time(value: object) -> str:
    if not isinstance(value, str):
        return _e(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return escape(value)
    zone = "UTC" if moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0 else (moment.strftime("%z") or "")
    return escape(f"{moment:%Y-%m-%d %H:%M} {zone}".strip())


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _table(headers: list[str], rows: list[list[str]], css: str = "") -> str:
    """`rows` hold cells already escaped."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---------------------------------------------------------------- the parts of the page
def _status(summary: dict) -> tuple[str, str]:
    """(css class, label) of a window: breached, drifted, not judged, or ok."""
    breaches = _list(summary.get("breaches"))
    drift = _dict(summary.get("drift"))
    if breaches:
        return "bad", f"{len(breaches)} breach{'es' if len(breaches) != 1 else ''}"
    if _list(drift.get("drifted_features")):
        return "warn", "drift"
    if drift and not drift.get("judged", True):
        return "muted", "not judged"
    return "ok", "ok"


def _quality_table(summary: dict) -> str:
    rows = []
    for q in _list(summary.get("quality")):
        rows.append(
            [
                _e(q.get("model_name")),
                _e(q.get("model_version")),
                _e(q.get("variant")),
                _e(q.get("predictions")),
                _e(q.get("count")),
                f'<span class="metric" data-metric="rmse">{_e(q.get("rmse"))}</span>',
                _e(q.get("mae")),
                _e(q.get("r2")),
                _e(q.get("bias")),
                _e(q.get("clean_rmse")),
            ]
        )
    reference = _dict(summary.get("reference"))
    holdout = _dict(reference.get("holdout"))
    if holdout:
        rows.append(
            [
                "<em>training holdout</em>",
                _e(reference.get("model_version")),
                "reference",
                "",
                "",
                _e(holdout.get("rmse")),
                _e(holdout.get("mae")),
                _e(holdout.get("r2")),
                _e(holdout.get("bias")),
                "",
            ]
        )
    if not rows:
        return '<p class="muted">No predictions scored in this window.</p>'
    return _table(["Model", "Version", "Variant", "Predictions", "Labelled", "RMSE", "MAE", "R²", "Bias", "Clean RMSE"], rows, "quality")


def _breach_rows(breaches: list, window_id: str | None, fallback_report: str | None) -> list[list[str]]:
    """One row per breach; the window column only when `window_id` is given (the alerts table)."""
    rows = []
    for b in breaches:
        if not isinstance(b, dict):
            continue
        report = _href(b.get("report")) or fallback_report
        rows.append(
            ([escape(window_id)] if window_id is not None else [])
            + [
                f"<strong>{_e(b.get('rule'))}</strong>",
                _e(b.get("value")),
                _e(b.get("threshold")),
                _e(b.get("model_version")),
                _e(b.get("feature")),
                _link(report, "report"),
            ]
        )
    return rows


BREACH_HEADERS = ["Rule", "Value", "Threshold", "Model version", "Feature", ""]


def _drift_block(summary: dict) -> str:
    drift = _dict(summary.get("drift"))
    if not drift:
        return '<p class="muted">No drift check in this window.</p>'
    drifted = [str(f) for f in _list(drift.get("drifted_features"))]
    prediction = _dict(drift.get("prediction"))
    parts = [
        f"<p>Rows: {_e(drift.get('rows'))}; judged: {_e(drift.get('judged'))}; drifted features: "
        + (", ".join(f'<span class="tag bad">{escape(f)}</span>' for f in drifted) or "none")
        + (f"; prediction PSI {_e(prediction.get('psi'))}{' (drifted)' if prediction.get('drifted') else ''}" if prediction else "")
        + "</p>"
    ]
    rows = [
        [
            _e(f.get("feature")),
            _e(f.get("kind")),
            _e(f.get("psi")),
            _e(f.get("ks_statistic")),
            escape(format_metric(f.get("ks_pvalue"), 4)),
            '<span class="tag bad">drifted</span>' if f.get("drifted") else "",
        ]
        for f in _list(drift.get("features"))
        if isinstance(f, dict)
    ]
    if rows:
        parts.append(
            "<details><summary>Per-feature drift</summary>"
            + _table(["Feature", "Kind", "PSI", "KS statistic", "KS p-value", ""], rows, "drift")
            + "</details>"
        )
    return "".join(parts)


def _window_section(window: dict) -> str:
    window_id = window["id"]
    anchor = escape("w-" + window_id, quote=True)
    if window["summary"] is None:
        return (
            f'<section class="window" id="{anchor}"><h3>{escape(window_id)} <span class="tag bad">unreadable</span></h3>'
            f'<p class="error">{escape(window["error"] or "")}</p></section>'
        )
    summary = window["summary"]
    span = _dict(summary.get("window"))
    css, label = _status(summary)
    evidently = _dict(summary.get("evidently"))
    report = _href(evidently.get("html"))
    ab = _dict(summary.get("ab"))
    breaches = _breach_rows(_list(summary.get("breaches")), None, report)
    return (
        f'<section class="window" id="{anchor}">'
        f'<h3>{escape(window_id)} <span class="tag {css}">{escape(label)}</span></h3>'
        f'<p class="meta">{_time(span.get("start"))} → {_time(span.get("end"))}; predictions {_e(summary.get("predictions"))}, '
        f"labelled {_e(summary.get('labelled'))}; computed {_time(summary.get('computed_at'))}"
        + (f"; {_link(report, 'drift report (Evidently)')}" if report else "; no drift report")
        + "</p>"
        + _quality_table(summary)
        + _drift_block(summary)
        + (f"<h4>Breaches</h4>{_table(BREACH_HEADERS, breaches, 'breaches')}" if breaches else "")
        + (
            f"<p>A/B: {'<strong>promote the challenger</strong>' if ab.get('promote') else 'keep the champion'} ({_e(ab.get('reason'))})</p>"
            if ab
            else ""
        )
        + "</section>"
    )


def _latest_block(windows: list[dict]) -> str:
    readable = [w for w in windows if w["summary"] is not None]
    if not readable:
        return ""
    latest = readable[0]
    summary = latest["summary"]
    span = _dict(summary.get("window"))
    css, label = _status(summary)
    report = _href(_dict(summary.get("evidently")).get("html"))
    champion = next((q for q in _list(summary.get("quality")) if isinstance(q, dict) and q.get("variant") == "champion"), None)
    champion = champion or next((q for q in _list(summary.get("quality")) if isinstance(q, dict)), {})
    holdout = _dict(_dict(summary.get("reference")).get("holdout"))
    figures = "".join(
        f'<div class="figure"><span>{escape(name)}</span><b data-metric="{key}">{_e(champion.get(key))}</b>'
        + (f"<small>holdout {_e(holdout.get(key))}</small>" if holdout.get(key) is not None else "")
        + "</div>"
        for key, name in (("rmse", "RMSE"), ("mae", "MAE"), ("r2", "R²"), ("bias", "Bias"))
    )
    return (
        '<section class="latest" id="latest">'
        f'<h2>Latest window: <a href="#{escape("w-" + latest["id"], quote=True)}">{escape(latest["id"])}</a> '
        f'<span class="tag {css}">{escape(label)}</span></h2>'
        f'<p class="meta">{_time(span.get("start"))} → {_time(span.get("end"))}; predictions {_e(summary.get("predictions"))}, '
        f"labelled {_e(summary.get('labelled'))}"
        + (f"; model {_e(champion.get('model_name'))} v{_e(champion.get('model_version'))} ({_e(champion.get('variant'))})" if champion else "")
        + "</p>"
        + f'<div class="figures">{figures}</div>'
        + (_link(report, "Open the latest drift report", "button") if report else '<p class="muted">No Evidently report in this window.</p>')
        + "</section>"
    )


def _alerts_block(windows: list[dict]) -> str:
    rows = []
    for window in windows[:ALERT_WINDOWS]:
        summary = window["summary"]
        if summary is None:
            continue
        report = _href(_dict(summary.get("evidently")).get("html"))
        rows += _breach_rows(_list(summary.get("breaches")), window["id"], report)
    body = (
        _table(["Window", *BREACH_HEADERS], rows, "breaches") if rows else f'<p class="ok-text">No breach in the newest {ALERT_WINDOWS} windows.</p>'
    )
    return f'<section id="alerts"><h2>Recent alerts</h2>{body}</section>'


def _plots(reports_dir: Path, windows: list[dict]) -> list[str]:
    """The trend plots: those the newest readable summary names, then any other trends/*.png."""
    named = next((_list(w["summary"].get("plots")) for w in windows if w["summary"] is not None), [])
    found = sorted(f"{TRENDS_DIR}/{p.name}" for p in (reports_dir / TRENDS_DIR).glob("*.png")) if (reports_dir / TRENDS_DIR).is_dir() else []
    plots = []
    for plot in [*named, *found]:
        if isinstance(plot, str) and plot not in plots:
            plots.append(plot)
    return plots


def _plots_block(reports_dir: Path, windows: list[dict]) -> str:
    images = []
    for plot in _plots(reports_dir, windows):
        href = _href(plot)
        path = resolve_report(reports_dir, plot)
        if href is None or path is None:
            continue
        version = int(path.stat().st_mtime)  # a new plot after each window, not the browser's cached one
        images.append(f'<figure><img src="{href}?v={version}" alt="{escape(plot, quote=True)}"><figcaption>{escape(plot)}</figcaption></figure>')
    if not images:
        return ""
    return f'<section id="trends"><h2>Trends</h2><div class="plots">{"".join(images)}</div></section>'


def _links_block(links: dict[str, str]) -> str:
    return (
        '<nav class="links">'
        + _link(escape(links["mlflow"], quote=True), "MLflow UI (runs, registry)")
        + _link(escape(links["service_docs"], quote=True), "Prediction service API (Swagger UI)")
        + _link(escape(links["service_openapi"], quote=True), "OpenAPI spec")
        + "</nav>"
    )


STYLE = """
:root { color-scheme: light dark; --bad: #c62828; --warn: #b26a00; --ok: #2e7d32; --muted: #757575; --line: #d0d4da; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 1rem 1.5rem; max-width: 1200px; }
h1 { font-size: 1.4rem; margin: 0 0 .3rem; } h2 { font-size: 1.15rem; margin: 1.2rem 0 .4rem; } h3 { font-size: 1rem; margin: 0 0 .3rem; }
a { color: #1565c0; } .meta, .muted { color: var(--muted); } .error { color: var(--bad); font-family: monospace; white-space: pre-wrap; }
.links a { margin-right: 1.2rem; }
table { border-collapse: collapse; margin: .4rem 0; } th, td { border-bottom: 1px solid var(--line); padding: .2rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { font-weight: 600; }
.tag { display: inline-block; border-radius: .6rem; padding: 0 .5rem; font-size: .8rem; color: #fff; background: var(--muted); }
.tag.bad { background: var(--bad); } .tag.warn { background: var(--warn); } .tag.ok { background: var(--ok); }
.ok-text { color: var(--ok); }
.latest { border: 1px solid var(--line); border-radius: .5rem; padding: .6rem 1rem; }
.figures { display: flex; gap: 1rem; margin: .5rem 0; } .figure { border: 1px solid var(--line); border-radius: .4rem; padding: .3rem .8rem; }
.figure span, .figure small { display: block; color: var(--muted); font-size: .8rem; } .figure b { font-size: 1.3rem; }
h4 { font-size: .9rem; margin: .5rem 0 0; }
.button { display: inline-block; margin: .3rem 0; padding: .35rem .9rem; border-radius: .4rem; background: #1565c0; color: #fff; text-decoration: none; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; } figure { margin: 0; } img { max-width: 560px; width: 100%; border: 1px solid var(--line); }
.window { border-top: 1px solid var(--line); padding: .6rem 0; }
"""


def _safely(render, item) -> str:
    """One part of the page; a summary that passes the shape check yet trips the renderer
    becomes an error line instead of a broken page."""
    try:
        return render(item)
    except Exception as exc:  # noqa: BLE001 - any bad value in a file must leave the page usable
        where = item["id"] if isinstance(item, dict) else "latest window"
        return f'<p class="error">{escape(str(where))}: cannot be shown: {escape(type(exc).__name__)}: {escape(str(exc))}</p>'


def render_page(windows: list[dict], links: dict[str, str], reports_dir: Path, *, limit: int = SHOWN_WINDOWS) -> str:
    """The whole page: links, the latest window, recent alerts, trend plots, then the newest
    `limit` windows (0: all) with their metrics. `windows` come from `load_windows`."""
    header = (
        "<h1>Chicago taxi fares: model monitoring</h1>"
        f'<p class="meta">Hourly windows of logged predictions and their labels, from {escape(str(reports_dir))}.</p>' + _links_block(links)
    )
    if not windows:
        body = (
            '<section id="empty"><h2>No monitoring windows yet</h2>'
            "<p>Trigger the <strong>taxi_monitoring</strong> DAG (Dags → taxi_monitoring → Trigger) to produce them: each run "
            f"checks one window and writes <code>&lt;window&gt;/{SUMMARY_FILE}</code>, its drift report and the trend plots under "
            f"<code>{escape(str(reports_dir))}</code>.</p></section>"
        )
    else:
        shown = windows if limit <= 0 else windows[:limit]
        more = (
            f'<p class="muted">{len(windows) - len(shown)} older windows not shown: <a href="?limit=0">show all {len(windows)}</a>.</p>'
            if len(shown) < len(windows)
            else ""
        )
        body = (
            _safely(_latest_block, windows)
            + _alerts_block(windows)
            + _plots_block(reports_dir, windows)
            + f'<section id="windows"><h2>Windows ({len(windows)}, newest first)</h2>'
            + "".join(_safely(_window_section, w) for w in shown)
            + more
            + "</section>"
        )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Monitoring · Chicago taxi</title><style>{STYLE}</style></head><body>{header}{body}</body></html>"
    )

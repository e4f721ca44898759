"""Trend plots over the window summaries: how quality and drift move from window to window.

Two PNGs for the Monitoring page: `quality_trend.png` (RMSE, MAE and bias of the served
predictions, one line per model version) and `drift_trend.png` (PSI of each monitored feature
and of the predictions, with the alerting threshold). A window without labels or without a
drift section leaves a gap, not a zero.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

QUALITY_PNG = "quality_trend.png"
DRIFT_PNG = "drift_trend.png"
QUALITY_PANELS = (("rmse", "RMSE ($)"), ("mae", "MAE ($)"), ("bias", "bias ($): mean(prediction - fare)"))


def _start(window: dict) -> datetime:
    return datetime.fromisoformat(window["window"]["start"].replace("Z", "+00:00"))


def served_quality(window: dict) -> dict[str, dict[str, float]]:
    """Per model version: RMSE, MAE and bias of the served predictions of one window (a version
    that answered as champion and as challenger in one window gets its figures pooled exactly:
    RMSE from the count-weighted mean squared error, MAE and bias count-weighted)."""
    pooled: dict[str, dict[str, float]] = {}
    for entry in window.get("quality") or []:
        if entry.get("variant") == "shadow" or not entry.get("count") or entry.get("rmse") is None:
            continue
        n = entry["count"]
        sums = pooled.setdefault(str(entry["model_version"]), {"n": 0, "sq": 0.0, "abs": 0.0, "err": 0.0})
        sums["n"] += n
        sums["sq"] += n * entry["rmse"] ** 2
        sums["abs"] += n * entry["mae"]
        sums["err"] += n * entry["bias"]
    return {version: {"rmse": math.sqrt(s["sq"] / s["n"]), "mae": s["abs"] / s["n"], "bias": s["err"] / s["n"]} for version, s in pooled.items()}


def _drift_psi(window: dict) -> tuple[dict[str, float], float | None]:
    """PSI per feature and of the predictions in one window ({} and None without drift figures)."""
    drift = window.get("drift") or {}
    features = {row["feature"]: row["psi"] for row in drift.get("features") or [] if row.get("psi") is not None and not math.isnan(row["psi"])}
    prediction = (drift.get("prediction") or {}).get("psi")
    return features, prediction if prediction is not None and not math.isnan(prediction) else None


def _series(windows: list[dict], value_of) -> tuple[list[datetime], dict[str, list[float]]]:
    """x (window starts) and, per line name, one y per window (NaN where the window has none)."""
    x = [_start(w) for w in windows]
    values = [value_of(w) for w in windows]
    names = sorted({name for v in values for name in v})
    return x, {name: [v.get(name, math.nan) for v in values] for name in names}


def _empty_note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")


def _time_axis(ax, x: list[datetime]) -> None:
    """Dates on the x axis, padded by half an hour: a single window would otherwise be
    stretched over days of hourly ticks."""
    import matplotlib.dates as mdates

    if x:
        ax.set_xlim(min(x) - timedelta(minutes=30), max(x) + timedelta(minutes=30))
    locator = mdates.AutoDateLocator(maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)


def plot_trends(windows: list[dict], out_dir: Path, psi_max: float) -> list[str]:
    """Write QUALITY_PNG and DRIFT_PNG for `windows` (window summaries, in any order) to
    `out_dir`; returns the file names written. Works from one window up; a window without
    labelled predictions or drift figures is a gap in its lines."""
    # Figure + the Agg canvas directly: no pyplot global state in a scheduler's worker.
    import matplotlib
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    windows = sorted(windows, key=_start)

    x, by_version = _series(windows, served_quality)
    # Fixed margins: a layout engine measures every label twice and doubles the drawing time.
    fig = Figure(figsize=(10, 8))
    fig.subplots_adjust(left=0.09, right=0.97, top=0.95, bottom=0.08, hspace=0.12)
    axes = fig.subplots(len(QUALITY_PANELS), 1, sharex=True)
    for ax, (figure, label) in zip(axes, QUALITY_PANELS):
        for version, points in by_version.items():
            ax.plot(x, [p[figure] if isinstance(p, dict) else math.nan for p in points], marker="o", label=f"version {version}")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[2].axhline(0.0, color="grey", linewidth=0.8)
    if by_version:
        axes[0].legend(loc="upper left", fontsize="small")
    else:
        _empty_note(axes[0], "no labelled served prediction yet")
    axes[0].set_title("Served predictions' quality per window (labelled trips)")
    axes[-1].set_xlabel("window start (UTC)")
    _time_axis(axes[-1], x)
    _save(fig, out_dir / QUALITY_PNG)

    x, by_feature = _series(windows, lambda w: _drift_psi(w)[0])
    prediction = [_drift_psi(w)[1] for w in windows]
    fig = Figure(figsize=(12, 6))
    fig.subplots_adjust(left=0.07, right=0.78, top=0.93, bottom=0.1)
    ax = fig.subplots()
    palette = matplotlib.colormaps["tab20"]  # 20 distinct colours: the default cycle repeats after 10
    for i, (feature, points) in enumerate(by_feature.items()):
        ax.plot(x, points, marker=".", linewidth=1, color=palette(i % palette.N), label=feature)
    if any(p is not None for p in prediction):
        ax.plot(x, [math.nan if p is None else p for p in prediction], marker="o", linewidth=2.5, color="black", label="prediction")
    ax.axhline(psi_max, linestyle="--", color="red", label=f"alert above {psi_max:g}")
    if not by_feature and all(p is None for p in prediction):
        _empty_note(ax, "no drift figures yet")
    ax.set_ylabel("PSI against the training reference")
    ax.set_xlabel("window start (UTC)")
    _time_axis(ax, x)
    ax.set_title("Drift per feature per window")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    _save(fig, out_dir / DRIFT_PNG)
    return [QUALITY_PNG, DRIFT_PNG]

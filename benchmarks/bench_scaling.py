"""Scaling benchmark of the training pipeline: every task at 15k, 150k and 1.5M trips, its wall
time and peak memory, and how fast each grows with the number of trips.

Data: `chicago_taxi.ingest.resample` draws each size with replacement from the vendored sample
and moves every copy by a random 15-minute multiple within +-7 days (wrapped into the sample's
own time span, calendar columns re-derived, no two rows identical, every other cell copied as
it is); the files are cached under ~/.cache/chicago-taxi/resampled/. The 15k point is resampled
too, so the three sizes are drawn the same way.

Tasks: the functions the DAGs' tasks call, as `make bench` runs them, each in its own child
process (as Airflow runs each task), with TAXI_SOURCE_CSV pointing at the resampled file and
MLflow, BentoML, Feast and the run directories in a temp dir: extract, validate_raw,
build_offline_store and feast_apply (the taxi_features DAG's own tasks, on the same extract: its
extract and validate_raw are the same work on the same window, so they are not run twice),
join_store_features, transform, validate_transformed, train, evaluate, register (build_bento
with --with-bento: it packs the model, whose size does not depend on the trips). Wall time is
the task function's call, measured in the child (its imports of TensorFlow, GX or Feast inside
the call included, as a task pays them); peak memory is the child's own peak RSS
(getrusage(RUSAGE_SELF).ru_maxrss at the end of the task).

Baseline, same run: the I/O floor, pandas reading the resampled CSV and writing it as Parquet,
also in a child process; it grows linearly.

Growth: per task the exponent k in t ~ n^k between consecutive sizes, log(t2/t1)/log(n2/n1);
a task is "linear or better" when k <= 1.15 between the two largest sizes.

    python benchmarks/bench_scaling.py [--sizes 15000,150000,1500000] [--epochs 5] [--with-bento]
    python benchmarks/bench_scaling.py --render-only      # table and plot again from the JSON
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

DEFAULT_SIZES = (15_000, 150_000, 1_500_000)
TASKS = (
    "extract",
    "validate_raw",
    "build_offline_store",
    "feast_apply",
    "join_store_features",
    "transform",
    "validate_transformed",
    "train",
    "evaluate",
    "register",
)
IO_FLOOR = "io_floor"
# Not a pipeline task: the point-in-time join by pandas.merge_asof on the offline store's Parquet
# (`features.store.historical_features_asof`, the default engine of join_store_features since it
# replaced Feast's file-store join, which merges every trip with every feature row of its key),
# called directly, timed beside the task and checked against its output. Where the task was
# stopped (TAXI_HISTORICAL_JOIN=feast at scale), its output is the later tasks' input (marked).
JOIN_ASOF = "join_asof"
LINEAR_LIMIT = 1.15  # growth exponent up to which a task counts as linear (noise on a shared 2-core box)
SLOW_TASK_SECONDS = 25 * 60
POLL_SECONDS = 0.5
# Not the pipeline's 40 (TAXI_EPOCHS): at 40, training the two models on 1.2M trips would take ~50
# minutes on 2 cores (375k steps at ~8 ms: one model's 5 epochs took 191 s), past the 25 minutes a
# task may take here. The same epochs at every size: each task's growth is its growth in trips.
DEFAULT_EPOCHS = 5
DEFAULT_JSON = ROOT / "reports" / "benchmarks" / "training_scaling.json"
DEFAULT_PLOT = ROOT / "docs" / "training-scaling.png"
RUN_ID = "bench-scaling"
DATA_END = datetime(2030, 1, 1)  # after every trip: the whole resampled file is the window


# ---------------------------------------------------------------- the child: one task
def _call_task(task: str, csv: Path, scratch: Path) -> dict:
    if task == IO_FLOOR:
        import pandas as pd

        frame = pd.read_csv(csv)
        frame.to_parquet(scratch / "io_floor.parquet", index=False)
        return {"rows": len(frame)}
    if task == "extract":
        from chicago_taxi.ingest import extract

        return extract.extract(RUN_ID, DATA_END)
    if task in ("validate_raw", "validate_transformed"):
        from chicago_taxi.quality import steps as quality_steps

        return getattr(quality_steps, task)(RUN_ID)
    if task in ("build_offline_store", "feast_apply"):
        from chicago_taxi.features import steps as feature_steps

        return getattr(feature_steps, task)(RUN_ID)
    if task == JOIN_ASOF:
        return _join_asof_task()
    if task == "build_bento":
        from chicago_taxi.serving.bento import build_bento

        return build_bento(RUN_ID)
    from chicago_taxi.training import steps as training_steps

    return getattr(training_steps, task)(RUN_ID)


def _join_asof_task() -> dict:
    import numpy as np
    import pandas as pd

    from chicago_taxi.core import schema
    from chicago_taxi.core.config import load_settings
    from chicago_taxi.core.runs import run_paths
    from chicago_taxi.features.store import historical_features_asof

    settings = load_settings()
    paths = run_paths(settings, RUN_ID)
    joined = historical_features_asof(pd.read_parquet(paths["gate"] / "clean.parquet"), settings)
    feast_path = paths["root"] / "trips_with_store_features.parquet"
    facts = {"rows": len(joined)}
    if feast_path.exists():
        feast = pd.read_parquet(feast_path)
        nan_mismatches, max_diff = 0, 0.0
        for feature in schema.STORE_FEATURES:
            a, b = feast[feature].to_numpy(dtype=float), joined[feature].to_numpy(dtype=float)
            nan_mismatches += int((np.isnan(a) != np.isnan(b)).sum())
            both = ~np.isnan(a) & ~np.isnan(b)
            max_diff = max(max_diff, float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0)
        facts |= {"matches_task_output": nan_mismatches == 0 and max_diff == 0.0, "nan_mismatches": nan_mismatches, "max_abs_diff": max_diff}
    else:
        # Feast's join did not finish: the later tasks read this one instead.
        joined.to_parquet(feast_path, index=False)
        facts["substituted_for_join_store_features"] = True
    return facts


def _facts(task: str, section: dict) -> dict:
    """The few figures of a task's result that show the pipeline did the same work at each size."""
    facts = {k: v for k, v in section.items() if isinstance(v, (int, float, bool))}
    if task == "evaluate":
        facts["candidate_rmse"] = section["candidate"]["rmse"]
        facts["baseline_rmse"] = section["baseline"]["rmse"]
    if task == "build_offline_store":
        facts = {view: written["rows"] for view, written in section.items()}
    return facts


def child_main(task: str, csv: Path, scratch: Path, result_path: Path) -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    section = _call_task(task, csv, scratch)
    seconds = time.perf_counter() - started
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "seconds": round(seconds, 2),
        "peak_mb": round(own.ru_maxrss / 1024, 1),  # KiB on Linux
        # Processes the task started and waited for (e.g. `bentoml build`).
        "child_processes_peak_mb": round(children.ru_maxrss / 1024, 1),
        # CPU time of the whole child process, imports included (does not count pauses; above wall time when threads ran in parallel).
        "cpu_seconds": round(own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime, 1),
    }
    result["facts"] = _facts(task, section if isinstance(section, dict) else {})
    result_path.write_text(json.dumps(result, default=str))
    # TensorFlow/Beam threads can segfault during interpreter teardown, after the work is done
    # (tests/fixtures/transform.py ends its subprocess the same way).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# ---------------------------------------------------------------- the parent
def _env_for(tmp: Path, csv: Path, epochs: int) -> dict:
    from bench_training import isolated_env  # the same temp layout as `make bench`

    env = {**os.environ, **isolated_env(tmp)}
    env.update(
        TAXI_REPO_ROOT=str(ROOT),  # expectations and feature_repo of the same tree as the code
        TAXI_SOURCE_CSV=str(csv),
        TAXI_EPOCHS=str(epochs),
        FEAST_REGISTRY_PATH=str(tmp / "feast" / "registry.db"),
        PYTHONPATH=str(ROOT / "plugins") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
    )
    return env


def _tree_rss_mb(proc) -> float:
    """Resident memory of a process and its descendants now, MB (0 once it is gone)."""
    import psutil

    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def run_child(task: str, csv: Path, tmp: Path, env: dict, timeout: float, max_memory_mb: float) -> dict:
    """Run one task in a child process; its result, or {"error": ...} with the log's tail. The
    child is stopped past `timeout` seconds or when its process tree holds more than
    `max_memory_mb` (the machine is shared: a task must not push others into the OOM killer).

    Time the task spent paused (SIGSTOP, e.g. by someone who wanted the shared machine for a
    while) is measured and taken off its wall time: seen as the child in state T, or as a gap
    in this loop's own polling (this process paused with it)."""
    import psutil

    logs = tmp / "task-logs"
    logs.mkdir(parents=True, exist_ok=True)
    result_path, log_path = tmp / f"{task}.result.json", logs / f"{task}.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--child-task", task, "--child-csv", str(csv), "--child-scratch", str(tmp)]
    started = last = time.perf_counter()
    sampled_peak, paused, stopped = 0.0, 0.0, None
    with open(log_path, "w") as log:
        # Its own session, so a stop ends the task together with anything it started.
        proc = subprocess.Popen(command + ["--child-result", str(result_path)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        watched = psutil.Process(proc.pid)
        while proc.poll() is None:
            now = time.perf_counter()
            gap, last = now - last, now
            try:
                halted = watched.status() == psutil.STATUS_STOPPED
            except psutil.NoSuchProcess:
                halted = False
            if halted:
                paused += gap
            elif gap > 10 * POLL_SECONDS:
                paused += gap - POLL_SECONDS
            rss = _tree_rss_mb(watched)
            sampled_peak = max(sampled_peak, rss)
            if rss > max_memory_mb:
                stopped = f"stopped: its processes held {rss / 1024:.1f} GB, over the {max_memory_mb / 1024:.1f} GB limit"
            elif now - started - paused > timeout:
                stopped = f"stopped: still running after {timeout:.0f} s"
            if stopped:
                os.killpg(proc.pid, 9)
                proc.wait()
                break
            time.sleep(POLL_SECONDS)
        code = proc.returncode
    common = {
        "process_seconds": round(time.perf_counter() - started - paused, 1),
        "paused_seconds": round(paused, 1),
        "sampled_tree_peak_mb": round(sampled_peak, 1),
    }
    if stopped or code != 0 or not result_path.exists():
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        return {"error": stopped or f"exit code {code}", "log": str(log_path), "log_tail": tail} | common
    result = json.loads(result_path.read_text())
    if paused:
        result["seconds_with_pauses"] = result["seconds"]
        result["seconds"] = round(max(result["seconds"] - paused, 0.0), 2)
    return result | common


def run_size(n: int, tasks: list[str], seed: int, epochs: int, timeout: float, max_memory_mb: float, keep: bool, substitute_join: bool) -> dict:
    from chicago_taxi.core.config import load_settings
    from chicago_taxi.ingest.resample import resampled_path, write_resampled

    source = load_settings().source_csv
    cached = resampled_path(n, seed, source).exists()
    started = time.perf_counter()
    csv = write_resampled(n, seed=seed, source=source)
    resample = {"path": str(csv), "seconds": round(time.perf_counter() - started, 2), "cached": cached, "bytes": csv.stat().st_size}
    print(f"[{n:,} trips] {'cached' if cached else 'resampled'}: {csv} ({resample['seconds']:.1f} s)", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"taxi-scaling-{n}-"))
    env = _env_for(tmp, csv, epochs)
    results: dict[str, dict] = {}
    failed = None
    order = [IO_FLOOR, *tasks]
    if JOIN_ASOF not in order and "join_store_features" in order:
        order.insert(order.index("join_store_features") + 1, JOIN_ASOF)
    for task in order:
        number = f"{tasks.index(task) + 1}/{len(tasks)}" if task in tasks else "-"
        print(f"[{n:,} trips] {number} {task} ...", end=" ", flush=True)
        result = run_child(task, csv, tmp, env, timeout, max_memory_mb)
        results[task] = result
        if "error" in result:
            print(f"FAILED ({result['error']}; log: {result['log']})", flush=True)
            for line in result.get("log_tail", []):
                print(f"    {line}", flush=True)
            if task == "join_store_features" and substitute_join:
                print(f"[{n:,} trips] the later tasks read the merge_asof join instead ({JOIN_ASOF})", flush=True)
                continue
            failed = task
            break
        slow = "  (over 25 min)" if result["seconds"] > SLOW_TASK_SECONDS else ""
        if result["paused_seconds"]:
            slow += f"  (paused {result['paused_seconds']:.0f} s by a SIGSTOP, not counted)"
        print(
            f"{result['seconds']:.1f} s, peak {result['peak_mb']:.0f} MB (process {result['process_seconds']:.1f} s, its process tree sampled up to {result['sampled_tree_peak_mb']:.0f} MB){slow}",
            flush=True,
        )
    stopped = [t for t, r in results.items() if "error" in r]
    if not stopped and not keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"[{n:,} trips] run directory kept: {tmp}", flush=True)
    substituted = bool(results.get(JOIN_ASOF, {}).get("facts", {}).get("substituted_for_join_store_features"))
    return {
        "rows": n,
        "resample": resample,
        "tasks": results,
        "failed_task": failed,
        "stopped_tasks": stopped,
        "later_tasks_read_merge_asof_join": substituted,
        "run_dir": str(tmp) if stopped or keep else None,
    }


def _git(args: list[str]) -> str | None:
    proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


# ---------------------------------------------------------------- growth, table, plot
TOTAL = "total"  # the pipeline's tasks, summed (only where every one finished)
TOTAL_ASOF = "total_with_merge_asof_join"  # the same with join_asof in place of join_store_features
LABELS = {
    JOIN_ASOF: "(the merge_asof join called directly: a cross-check, not a pipeline task)",
    TOTAL: "**all tasks (sum)**",
    TOTAL_ASOF: "all tasks, merge_asof join in place of Feast's (sum)",
    IO_FLOOR: "baseline: pandas read CSV + write Parquet (I/O floor)",
}


PLOT_LABELS = {
    JOIN_ASOF: "merge_asof join, called directly",
    TOTAL: "all tasks (sum)",
    TOTAL_ASOF: "all tasks, merge_asof join (sum)",
    IO_FLOOR: "baseline: CSV -> Parquet (pandas)",
}


def exponent(n1: int, t1: float, n2: int, t2: float) -> float | None:
    if min(t1, t2) <= 0:
        return None
    return math.log(t2 / t1) / math.log(n2 / n1)


def _rows(report: dict) -> list[str]:
    """The table's and growth's rows: the pipeline's tasks, the merge_asof join, totals, floor.
    The total with the merge_asof join in the task's place only where the task used another
    engine (TAXI_HISTORICAL_JOIN=feast); with the default it is the total again."""
    measured = {t for r in report["results"].values() for t in r["tasks"]}
    other_engine = report.get("historical_join_engine", "asof") != "asof" or any(
        r.get("later_tasks_read_merge_asof_join") for r in report["results"].values()
    )
    return [*report["tasks"], *([JOIN_ASOF] if JOIN_ASOF in measured else []), TOTAL, *([TOTAL_ASOF] if other_engine else []), IO_FLOOR]


def _completed_sizes(report: dict) -> list[int]:
    return [s for s in report["sizes"] if str(s) in report["results"]]


def _measure(report: dict, n: int, task: str, key: str) -> float | None:
    """A task's seconds or peak_mb at size n; for the totals the sum of seconds (max of peaks)."""
    tasks = report["results"][str(n)]["tasks"]
    if task in (TOTAL, TOTAL_ASOF):
        names = list(report["tasks"]) if task == TOTAL else [JOIN_ASOF if t == "join_store_features" else t for t in report["tasks"]]
        if any(t not in tasks or "error" in tasks[t] for t in names):
            return None
        values = [tasks[t][key] for t in names]
        return sum(values) if key == "seconds" else max(values)
    result = tasks.get(task)
    return None if not result or "error" in result else result[key]


def _stopped_bound(report: dict, n_prev: int, n: int, task: str) -> dict | None:
    """For a task stopped at size n: lower bounds of its exponents from how long it ran and how
    much memory it held before it was stopped (its full run would have taken more of both)."""
    result = report["results"][str(n)]["tasks"].get(task) or {}
    t_prev, m_prev = _measure(report, n_prev, task, "seconds"), _measure(report, n_prev, task, "peak_mb")
    if "error" not in result or t_prev is None or not result["error"].startswith("stopped"):
        return None
    return {
        "from": n_prev,
        "to": n,
        "time_at_least": _round(exponent(n_prev, t_prev, n, result["process_seconds"])),
        "memory_at_least": _round(exponent(n_prev, m_prev, n, result["sampled_tree_peak_mb"])) if m_prev else None,
    }


def growth(report: dict) -> dict:
    """Per row: exponents of time and peak memory between consecutive sizes where it finished,
    a lower bound where it was stopped, and the verdict on the largest pair measured."""
    sizes = _completed_sizes(report)
    out = {}
    for task in _rows(report):
        points = [(n, _measure(report, n, task, "seconds"), _measure(report, n, task, "peak_mb")) for n in sizes]
        points = [p for p in points if p[1] is not None]
        pairs = [
            {"from": n1, "to": n2, "time": _round(exponent(n1, t1, n2, t2)), "memory": _round(exponent(n1, m1, n2, m2) if m1 and m2 else None)}
            for (n1, t1, m1), (n2, t2, m2) in zip(points, points[1:])
        ]
        bound = None
        if points and points[-1][0] != sizes[-1]:
            bound = _stopped_bound(report, points[-1][0], sizes[sizes.index(points[-1][0]) + 1], task)
        last = pairs[-1]["time"] if pairs else None
        if bound and bound["time_at_least"] is not None and bound["time_at_least"] > LINEAR_LIMIT:
            verdict = "faster than linear"
        elif last is None:
            verdict = None
        else:
            verdict = "linear or better" if last <= LINEAR_LIMIT else "faster than linear"
        out[task] = {"pairs": pairs, "stopped": bound, "verdict": verdict}
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _short(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1000:g}k"


def markdown_table(report: dict) -> str:
    sizes = _completed_sizes(report)
    grown = report["growth"]
    pair_names = [f"{_short(a)}->{_short(b)}" for a, b in zip(sizes, sizes[1:])]
    head = ["task", *[f"{n:,} trips: s / peak MB" for n in sizes], *[f"time exp. {p}" for p in pair_names], "memory exp. (last)", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task in _rows(report):
        cells = []
        for n in sizes:
            t, m = _measure(report, n, task, "seconds"), _measure(report, n, task, "peak_mb")
            result = report["results"][str(n)]["tasks"].get(task, {})
            if "error" in result:
                cells.append(f"{result['error']} (after {result['process_seconds']:.0f} s)")
            else:
                cells.append("-" if t is None else f"{t:.1f} s / {'max ' if task in (TOTAL, TOTAL_ASOF) else ''}{m:.0f} MB")
        pairs = {f"{_short(p['from'])}->{_short(p['to'])}": _fmt(p["time"]) for p in grown[task]["pairs"]}
        bound = grown[task]["stopped"]
        if bound and bound["time_at_least"] is not None:
            pairs[f"{_short(bound['from'])}->{_short(bound['to'])}"] = f">= {bound['time_at_least']:.2f}"
        cells += [pairs.get(name, "-") for name in pair_names]
        if bound and bound["memory_at_least"] is not None:
            cells.append(f">= {bound['memory_at_least']:.2f}")
        else:
            cells.append(_fmt(grown[task]["pairs"][-1]["memory"]) if grown[task]["pairs"] else "-")
        verdict = grown[task]["verdict"] or "-"
        cells.append(f"**{verdict}**" if verdict == "faster than linear" else verdict)
        lines.append("| " + " | ".join([LABELS.get(task, task), *cells]) + " |")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render_plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sizes = _completed_sizes(report)
    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(13, 6))
    cmap = plt.get_cmap("tab10")
    styles = {task: {"color": cmap(i % 10), "marker": "o", "linestyle": "-" if i < 10 else "-."} for i, task in enumerate(report["tasks"])}
    styles[JOIN_ASOF] = {"color": styles.get("join_store_features", {}).get("color", "purple"), "marker": "x", "linestyle": ":"}
    styles[IO_FLOOR] = {"color": "black", "marker": "s", "linestyle": "--"}
    styles[TOTAL] = {"color": "black", "marker": "D", "linewidth": 2.5}
    styles[TOTAL_ASOF] = {"color": "dimgrey", "marker": "D", "linewidth": 1.5, "linestyle": ":"}
    for task in _rows(report):
        points = [(n, _measure(report, n, task, "seconds"), _measure(report, n, task, "peak_mb")) for n in sizes]
        points = [p for p in points if p[1] is not None]
        if not points:
            continue
        label = PLOT_LABELS.get(task, task)
        ax_time.plot([p[0] for p in points], [p[1] for p in points], label=label, **styles[task])
        if task not in (TOTAL, TOTAL_ASOF):  # their memory is one task's peak, already drawn
            ax_mem.plot([p[0] for p in points], [p[2] for p in points], label=label, **styles[task])
        bound = report["growth"][task]["stopped"]
        if bound:  # where it was stopped: an arrow up from how far it got
            stopped = report["results"][str(bound["to"])]["tasks"][task]
            for ax, value in ((ax_time, stopped["process_seconds"]), (ax_mem, stopped["sampled_tree_peak_mb"])):
                ax.plot(
                    [points[-1][0], bound["to"]],
                    [points[-1][1] if ax is ax_time else points[-1][2], value],
                    color=styles[task]["color"],
                    linestyle="--",
                )
                ax.annotate(
                    "stopped",
                    (bound["to"], value),
                    xytext=(0, 18),
                    textcoords="offset points",
                    ha="center",
                    fontsize=7,
                    arrowprops={"arrowstyle": "<-"},
                )
    totals = [(n, _measure(report, n, TOTAL_ASOF, "seconds") or _measure(report, n, TOTAL, "seconds")) for n in sizes]
    totals = [p for p in totals if p[1] is not None]
    if totals:
        # Linear reference (slope 1 on log-log) through the total at the smallest size.
        n0, t0 = totals[0]
        ax_time.plot(
            [sizes[0], sizes[-1]], [t0, t0 * sizes[-1] / n0], color="grey", linestyle=":", linewidth=3, alpha=0.5, label="linear: time ~ trips"
        )
    for ax, title, unit in ((ax_time, "Wall time per task (log-log)", "seconds"), (ax_mem, "Peak memory per task (its process's RSS)", "MB")):
        log_log_axes(ax, sizes, title, unit)
    handles, labels = ax_time.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(
        f"Training pipeline scaling ({report['epochs']} epochs at every size; {report['machine']['cpus']} cores, shared machine: figures are noisy)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def log_log_axes(ax, sizes: list[int], title: str, unit: str, title_size: float | None = None) -> None:
    """Log-log axes over the data set sizes (ticks at the sizes, plain numbers), as both scaling plots use them."""
    import matplotlib.ticker

    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([f"{n:,}" for n in sizes])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("trips (resampled from the 15k sample)")
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=title_size)
    ax.grid(True, which="both", alpha=0.3)


def print_summary(report: dict) -> None:
    print("\n" + markdown_table(report))
    sizes = _completed_sizes(report)
    faster = [t for t in report["tasks"] if report["growth"][t]["verdict"] == "faster than linear"]
    if len(sizes) >= 2:
        if faster:
            print(
                f"\nfaster than linear (time exponent > {LINEAR_LIMIT} on the largest pair measured, or its lower bound where stopped): {', '.join(faster)}"
            )
        else:
            print(f"\nevery task grows linearly or better between {sizes[-2]:,} and {sizes[-1]:,} trips (exponent <= {LINEAR_LIMIT})")
    for n in sizes:
        result = report["results"][str(n)]
        for task in result.get("stopped_tasks", []):
            print(f"{n:,} trips: {task} {result['tasks'][task]['error']}")
        if result.get("later_tasks_read_merge_asof_join"):
            print(f"{n:,} trips: the tasks after join_store_features read the merge_asof join ({JOIN_ASOF}) instead of Feast's")
        checked = result["tasks"].get(JOIN_ASOF, {}).get("facts", {})
        matches = checked.get("matches_task_output", checked.get("matches_feast"))  # earlier runs named it matches_feast
        if matches is not None:
            engine = report.get("historical_join_engine", "asof")
            print(
                f"{n:,} trips: join_store_features' output ({engine} engine) {'equals' if matches else 'DIFFERS FROM'} the direct merge_asof join "
                f"(NaN mismatches {checked['nan_mismatches']}, max abs diff {checked['max_abs_diff']:g})"
            )
        slow = [t for t in report["tasks"] if (_measure(report, n, t, "seconds") or 0) > SLOW_TASK_SECONDS]
        if slow:
            print(f"{n:,} trips: over 25 minutes: {', '.join(slow)}")
    print(
        f"epochs: {report['epochs']} at every size (the pipeline trains {report.get('pipeline_epochs', 40)}: see DEFAULT_EPOCHS); "
        f"machine: {report['machine']['cpus']} cores, shared with other work, so figures are noisy"
    )
    if report.get("wall_seconds"):
        print(f"whole benchmark: {report['wall_seconds'] / 60:.1f} min")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES), help="comma-separated trip counts")
    parser.add_argument("--seed", type=int, default=0, help="resampling seed")
    parser.add_argument(
        "--epochs", type=int, default=DEFAULT_EPOCHS, help="training epochs at every size (default 5, not the pipeline's 40: see DEFAULT_EPOCHS)"
    )
    parser.add_argument("--with-bento", action="store_true", help="also time build_bento")
    parser.add_argument("--task-timeout", type=float, default=1800, help="seconds before a task is stopped (its size then ends there)")
    parser.add_argument("--max-memory-gb", type=float, default=None, help="a task holding more is stopped (default: 60%% of the RAM)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    parser.add_argument(
        "--no-join-substitute", action="store_true", help="stop a size when join_store_features is stopped (default: go on with the merge_asof join)"
    )
    parser.add_argument("--keep", action="store_true", help="keep each size's temp run directory")
    parser.add_argument("--note", default="", help="free text kept in the JSON (e.g. which code was measured)")
    parser.add_argument("--render-only", action="store_true", help="print the table and draw the plot from --json, run nothing")
    parser.add_argument("--child-task", help=argparse.SUPPRESS)
    parser.add_argument("--child-csv", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-scratch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_task:
        child_main(args.child_task, args.child_csv, args.child_scratch, args.child_result)
        return
    if args.render_only:
        report = json.loads(args.json.read_text())
        report["growth"] = growth(report)
        render_plot(report, args.plot)
        print_summary(report)
        print(f"plot: {args.plot}")
        return

    os.environ["TAXI_REPO_ROOT"] = str(ROOT)
    from chicago_taxi.core.config import load_settings

    sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip())
    epochs, pipeline_epochs = args.epochs, load_settings().epochs
    engine = (os.environ.get("TAXI_HISTORICAL_JOIN", "") or "asof").strip().lower()
    tasks = [*TASKS, *(["build_bento"] if args.with_bento else [])]
    import psutil

    max_memory_mb = args.max_memory_gb * 1024 if args.max_memory_gb else 0.6 * psutil.virtual_memory().total / 2**20
    report = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "sizes": sizes,
        "tasks": tasks,
        "epochs": epochs,
        "pipeline_epochs": pipeline_epochs,
        "historical_join_engine": engine,
        "seed": args.seed,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "code": {
            "root": str(ROOT),
            "commit": _git(["rev-parse", "HEAD"]),
            "uncommitted_changes": _git(["status", "--short", "--untracked-files=no"]),
        },
        "resampling": (
            "n rows drawn with replacement from data/chicago_taxi_trips.csv (numpy default_rng(seed)); each copy's trip_start_timestamp "
            "moved by a uniform random multiple of 15 minutes within +-7 days, wrapped into the sample's first..last start; "
            "calendar columns re-derived; copies of a trip never share a time (no duplicate rows); every other cell copied as text"
        ),
        "timing": "task function call in its own child process (imports inside the call included); peak = the child's ru_maxrss",
        "limits": {"task_timeout_seconds": args.task_timeout, "max_memory_mb": round(max_memory_mb)},
        "note": args.note,
        "results": {},
    }
    print(
        f"sizes {', '.join(f'{n:,}' for n in sizes)}; {epochs} epochs at every size (the pipeline trains {pipeline_epochs}); "
        f"training join engine {engine}; {os.cpu_count()} cores (shared: noisy figures)",
        flush=True,
    )
    wall_started = time.perf_counter()
    for n in sizes:
        report["results"][str(n)] = run_size(n, tasks, args.seed, epochs, args.task_timeout, max_memory_mb, args.keep, not args.no_join_substitute)
        report["wall_seconds"] = round(time.perf_counter() - wall_started, 1)
        report["growth"] = growth(report)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
        if report["results"][str(n)]["failed_task"]:
            print(f"stopping: {n:,} trips did not complete, larger sizes would not either", flush=True)
            break
    render_plot(report, args.plot)
    print_summary(report)
    print(f"results: {args.json}\nplot: {args.plot}")


if __name__ == "__main__":
    main()

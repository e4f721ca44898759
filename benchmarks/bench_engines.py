"""Offline engines benchmark: the taxi_features aggregates (`aggregates.write_offline_store`) and
the training set's point-in-time join (`store.historical_features`) with TAXI_OFFLINE_ENGINE=pandas
and =spark, at 15k, 150k and 1.5M resampled trips: wall time, peak memory, and the size from
which Spark is faster (the crossover), if any.

Data: the files `make bench-scaling` uses (`chicago_taxi.ingest.resample`, cached under
~/.cache/chicago-taxi/resampled/, drawn by bench_scaling's helpers), read once per size and
written as Parquet: the input of both tasks (every trip, the resampled dirt included).

Each measurement runs in its own child process, through the functions the DAGs' tasks call,
with the engine chosen by TAXI_OFFLINE_ENGINE and Spark's master by TAXI_SPARK_MASTER (default
here local[2]: one JVM, a task per core of this 2-core machine). Wall time is the call; for
Spark it includes starting and stopping the session, which the task pays too (the start is also
reported alone). Peak memory is the child's process tree (the Python driver and, for Spark, its
JVMs) sampled every 0.2 s with psutil (bench_scaling._tree_rss_mb), and at least the child's own
ru_maxrss. The join reads the pandas engine's offline store; the parent checks that the engines
wrote the same files and joined the same values.

    python benchmarks/bench_engines.py [--sizes 15000,150000,1500000] [--engines pandas,spark] [--spark-master local[2]]
    python benchmarks/bench_engines.py --render-only      # table and plot again from the JSON
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

from bench_scaling import DEFAULT_SIZES, _env_for, _git, _short, _tree_rss_mb, log_log_axes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

ENGINES = ("pandas", "spark")
TASKS = {"aggregates": "write_offline_store", "join": "historical_features"}
DEFAULT_MASTER = "local[2]"
DEFAULT_JSON = ROOT / "reports" / "benchmarks" / "offline_engines.json"
DEFAULT_PLOT = ROOT / "docs" / "offline-engines.png"
POLL_SECONDS = 0.2


# ---------------------------------------------------------------- the child: one task, one engine
def _call(task: str, scratch: Path) -> dict:
    import pandas as pd

    from chicago_taxi.core.config import load_settings, offline_engine
    from chicago_taxi.features import aggregates, store

    settings = load_settings()
    trips = pd.read_parquet(scratch / "trips.parquet")
    facts: dict = {"trips": len(trips)}
    started = time.perf_counter()
    if task == "aggregates":
        written = aggregates.write_offline_store(trips, settings.features_dir)
        facts["rows"] = {view: section["rows"] for view, section in written.items()}
    else:
        joined = store.historical_features(trips, settings)
    facts["call_seconds"] = time.perf_counter() - started
    if task == "join":  # for the parent's check, after the timing
        joined.to_parquet(scratch / f"joined-{offline_engine()}.parquet", index=False)
    return facts


def child_main(task: str, scratch: Path, result_path: Path) -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from chicago_taxi.core.config import offline_engine

    started = time.perf_counter()
    if offline_engine() == "spark":
        from chicago_taxi.features.spark_engine import spark_session

        with spark_session():  # the task's own calls use this session (as they would start their own)
            start_seconds = time.perf_counter() - started
            facts = _call(task, scratch)
    else:
        start_seconds = 0.0
        facts = _call(task, scratch)
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "seconds": round(seconds, 2),
        "start_seconds": round(start_seconds, 2),
        "call_seconds": round(facts.pop("call_seconds"), 2),
        "own_peak_mb": round(own.ru_maxrss / 1024, 1),  # KiB on Linux
        "facts": facts,
    }
    result_path.write_text(json.dumps(result))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# ---------------------------------------------------------------- the parent
def run_child(task: str, engine: str, tmp: Path, env: dict, timeout: float, max_memory_mb: float) -> dict:
    """One task on one engine in a child process (its own session, so a stop ends its JVMs too);
    its result, or {"error": ...} with the log's tail."""
    import psutil

    (tmp / "logs").mkdir(exist_ok=True)
    name = f"{task}-{engine}"
    result_path, log_path = tmp / f"{name}.result.json", tmp / "logs" / f"{name}.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--child-task", task, "--child-scratch", str(tmp), "--child-result", str(result_path)]
    started, sampled_peak, stopped = time.perf_counter(), 0.0, None
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
        watched = psutil.Process(proc.pid)
        while proc.poll() is None:
            rss = _tree_rss_mb(watched)
            sampled_peak = max(sampled_peak, rss)
            if rss > max_memory_mb:
                stopped = f"stopped: its processes held {rss / 1024:.1f} GB, over the {max_memory_mb / 1024:.1f} GB limit"
            elif time.perf_counter() - started > timeout:
                stopped = f"stopped: still running after {timeout:.0f} s"
            if stopped:
                os.killpg(proc.pid, 9)
                proc.wait()
                break
            time.sleep(POLL_SECONDS)
    common = {"process_seconds": round(time.perf_counter() - started, 1), "sampled_tree_peak_mb": round(sampled_peak, 1)}
    if stopped or proc.returncode != 0 or not result_path.exists():
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        return {"error": stopped or f"exit code {proc.returncode}", "log": str(log_path), "log_tail": tail} | common
    result = json.loads(result_path.read_text()) | common
    result["peak_mb"] = max(result["sampled_tree_peak_mb"], result["own_peak_mb"])
    return result


def compare_stores(left: Path, right: Path) -> dict:
    """Whether two offline stores hold the same rows (keys, times and counts exact, floats equal
    or both NaN), view by view."""
    import numpy as np
    import pandas as pd

    from chicago_taxi.core import schema

    same = {}
    for view in schema.STORE_VIEWS:
        a, b = (pd.read_parquet(d / f"{view.name}.parquet").drop(columns="created") for d in (left, right))
        same[view.name] = (
            list(a.columns) == list(b.columns)
            and list(a.dtypes) == list(b.dtypes)
            and len(a) == len(b)
            and all(np.array_equal(a[c].to_numpy(), b[c].to_numpy(), equal_nan=a[c].dtype.kind == "f") for c in a.columns)
        )
    return same


def compare_joins(left: Path, right: Path) -> dict:
    import numpy as np
    import pandas as pd

    from chicago_taxi.core import schema

    a, b = pd.read_parquet(left, columns=list(schema.STORE_FEATURES)), pd.read_parquet(right, columns=list(schema.STORE_FEATURES))
    nan_mismatches, max_diff = 0, 0.0
    for feature in schema.STORE_FEATURES:
        x, y = a[feature].to_numpy(dtype=float), b[feature].to_numpy(dtype=float)
        nan_mismatches += int((np.isnan(x) != np.isnan(y)).sum())
        both = ~np.isnan(x) & ~np.isnan(y)
        max_diff = max(max_diff, float(np.abs(x[both] - y[both]).max()) if both.any() else 0.0)
    return {"rows": [len(a), len(b)], "nan_mismatches": nan_mismatches, "max_abs_diff": max_diff}


def run_size(n: int, engines: list[str], master: str, seed: int, timeout: float, max_memory_mb: float, keep: bool) -> dict:
    import pandas as pd

    from chicago_taxi.core.config import load_settings
    from chicago_taxi.ingest.resample import resampled_path, write_resampled

    source = load_settings().source_csv
    cached = resampled_path(n, seed, source).exists()
    csv = write_resampled(n, seed=seed, source=source)
    print(f"[{n:,} trips] {'cached' if cached else 'resampled'}: {csv}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"taxi-engines-{n}-"))
    pd.read_csv(csv).to_parquet(tmp / "trips.parquet", index=False)
    base = _env_for(tmp, csv, epochs=1)
    results: dict[str, dict] = {}
    for task in TASKS:
        for engine in engines:
            # The join reads the pandas engine's store (the same input for both engines).
            store_of = "pandas" if "pandas" in engines else engine
            features = tmp / f"features-{engine if task == 'aggregates' else store_of}"
            env = base | {"TAXI_OFFLINE_ENGINE": engine, "TAXI_SPARK_MASTER": master, "TAXI_FEATURES_DIR": str(features)}
            env.pop("TAXI_HISTORICAL_JOIN", None)  # the pandas engine's default join (merge_asof)
            print(f"[{n:,} trips] {task} ({TASKS[task]}) on {engine} ...", end=" ", flush=True)
            result = run_child(task, engine, tmp, env, timeout, max_memory_mb)
            results[f"{task}/{engine}"] = result
            if "error" in result:
                print(f"FAILED ({result['error']}; log: {result['log']})", flush=True)
                for line in result["log_tail"]:
                    print(f"    {line}", flush=True)
                continue
            start = f", session start {result['start_seconds']:.1f} s" if engine == "spark" else ""
            print(f"{result['seconds']:.1f} s{start}, peak {result['peak_mb']:.0f} MB", flush=True)
    checks = {}
    if all(f"aggregates/{e}" in results and "error" not in results[f"aggregates/{e}"] for e in ENGINES) and set(ENGINES) <= set(engines):
        checks["stores_equal"] = compare_stores(tmp / "features-pandas", tmp / "features-spark")
    if all((tmp / f"joined-{e}.parquet").exists() for e in ENGINES):
        checks["joins"] = compare_joins(tmp / "joined-pandas.parquet", tmp / "joined-spark.parquet")
    if checks:
        print(f"[{n:,} trips] checks: {json.dumps(checks)}", flush=True)
    failed = [name for name, r in results.items() if "error" in r]
    if failed or keep:
        print(f"[{n:,} trips] run directory kept: {tmp}", flush=True)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"rows": n, "csv": str(csv), "results": results, "checks": checks, "failed": failed}


# ---------------------------------------------------------------- table, crossover, plot
def _measure(report: dict, n: int, task: str, engine: str, key: str) -> float | None:
    result = report["results"].get(str(n), {}).get("results", {}).get(f"{task}/{engine}")
    return None if not result or "error" in result else result[key]


def crossover(report: dict, task: str) -> str:
    """The smallest size measured from which Spark is faster than pandas at every larger size."""
    sizes = [n for n in report["sizes"] if str(n) in report["results"]]
    faster = [n for n in sizes if (_measure(report, n, task, "spark", "seconds") or math.inf) < (_measure(report, n, task, "pandas", "seconds") or 0)]
    reached = [n for n in faster if all(m in faster for m in sizes if m >= n)]
    if reached:
        return f"Spark faster from {reached[0]:,} trips"
    return f"not reached up to {max(sizes):,} trips" if sizes else "nothing measured"


def markdown_table(report: dict) -> str:
    engines, master = report["engines"], report["spark_master"]
    names = {"pandas": "pandas", "spark": f"spark ({master})"}
    head = ["task", "trips", *[f"{names[e]}: s / peak MB" for e in engines]]
    if set(ENGINES) <= set(engines):
        head += ["spark / pandas time", "spark session start s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task in TASKS:
        for n in report["sizes"]:
            if str(n) not in report["results"]:
                continue
            cells = [f"{task} ({TASKS[task]})", f"{n:,}"]
            for engine in engines:
                result = report["results"][str(n)]["results"].get(f"{task}/{engine}", {})
                if "error" in result:
                    cells.append(f"{result['error']} (after {result['process_seconds']:.0f} s)")
                else:
                    cells.append(f"{result['seconds']:.1f} s / {result['peak_mb']:.0f} MB" if result else "-")
            if set(ENGINES) <= set(engines):
                t_pandas, t_spark = (_measure(report, n, task, e, "seconds") for e in ENGINES)
                cells.append(f"{t_spark / t_pandas:.1f}x" if t_pandas and t_spark else "-")
                start = _measure(report, n, task, "spark", "start_seconds")
                cells.append("-" if start is None else f"{start:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sizes = [n for n in report["sizes"] if str(n) in report["results"]]
    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(12, 5.5))
    colors = {"pandas": "tab:blue", "spark": "tab:orange"}
    styles = {"aggregates": {"marker": "o", "linestyle": "-"}, "join": {"marker": "s", "linestyle": "--"}}
    for task in TASKS:
        for engine in report["engines"]:
            label = f"{task} ({TASKS[task]}), " + (engine if engine == "pandas" else f"spark {report['spark_master']}")
            for ax, key in ((ax_time, "seconds"), (ax_mem, "peak_mb")):
                points = [(n, _measure(report, n, task, engine, key)) for n in sizes]
                points = [p for p in points if p[1] is not None]
                if points:
                    ax.plot([p[0] for p in points], [p[1] for p in points], color=colors[engine], label=label, **styles[task])
    for ax, title, unit in (
        (ax_time, "Wall time (log-log; Spark: session start included)", "seconds"),
        (ax_mem, "Peak memory (Python driver + JVMs)", "MB"),
    ):
        log_log_axes(ax, sizes, title, unit, title_size=10)
    handles, labels = ax_time.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(
        f"Offline engines: pandas vs Spark {report['spark_master']} ({report['machine']['cpus']} cores, shared machine: figures are noisy)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_summary(report: dict) -> None:
    print("\n" + markdown_table(report))
    if set(ENGINES) <= set(report["engines"]):
        for task in TASKS:
            print(f"crossover, {task} ({TASKS[task]}): {crossover(report, task)}")
    for n, size in report["results"].items():
        checks = size.get("checks", {})
        if "stores_equal" in checks:
            equal = all(checks["stores_equal"].values())
            print(f"{int(n):,} trips: the engines' offline stores are {'the same' if equal else 'DIFFERENT: ' + json.dumps(checks['stores_equal'])}")
        if "joins" in checks:
            joins = checks["joins"]
            print(f"{int(n):,} trips: joins differ in {joins['nan_mismatches']} NaNs, max abs diff {joins['max_abs_diff']:g}")
    print(f"machine: {report['machine']['cpus']} cores, shared with other work, so figures are noisy")
    if report.get("wall_seconds"):
        print(f"whole benchmark: {report['wall_seconds'] / 60:.1f} min")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES), help="comma-separated trip counts")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated: pandas, spark")
    parser.add_argument("--spark-master", default=DEFAULT_MASTER, help="TAXI_SPARK_MASTER of the Spark runs (default local[2])")
    parser.add_argument("--seed", type=int, default=0, help="resampling seed")
    parser.add_argument("--task-timeout", type=float, default=1800, help="seconds before a task is stopped")
    parser.add_argument("--max-memory-gb", type=float, default=None, help="a task holding more is stopped (default: 60%% of the RAM)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    parser.add_argument("--keep", action="store_true", help="keep each size's temp run directory")
    parser.add_argument("--render-only", action="store_true", help="print the table and draw the plot from --json, run nothing")
    parser.add_argument("--child-task", choices=sorted(TASKS), help=argparse.SUPPRESS)
    parser.add_argument("--child-scratch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_task:
        child_main(args.child_task, args.child_scratch, args.child_result)
        return
    if args.render_only:
        report = json.loads(args.json.read_text())
        render_plot(report, args.plot)
        print_summary(report)
        print(f"plot: {args.plot}")
        return

    os.environ["TAXI_REPO_ROOT"] = str(ROOT)
    import psutil

    sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip())
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        parser.error(f"--engines: unknown {unknown}; known: {', '.join(ENGINES)}")
    max_memory_mb = args.max_memory_gb * 1024 if args.max_memory_gb else 0.6 * psutil.virtual_memory().total / 2**20
    report = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "sizes": sizes,
        "engines": engines,
        "spark_master": args.spark_master,
        "seed": args.seed,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "code": {"commit": _git(["rev-parse", "HEAD"]), "uncommitted_changes": _git(["status", "--short", "--untracked-files=no"])},
        "timing": "the task function's call in its own child process; Spark: session start and stop included (start_seconds alone)",
        "memory": "peak RSS of the child's process tree (Python driver + JVMs) sampled every 0.2 s, at least the child's ru_maxrss",
        "limits": {"task_timeout_seconds": args.task_timeout, "max_memory_mb": round(max_memory_mb)},
        "results": {},
    }
    print(
        f"sizes {', '.join(_short(n) for n in sizes)}; engines {', '.join(engines)}; Spark master {args.spark_master}; {os.cpu_count()} cores",
        flush=True,
    )
    wall_started = time.perf_counter()
    for n in sizes:
        report["results"][str(n)] = run_size(n, engines, args.spark_master, args.seed, args.task_timeout, max_memory_mb, args.keep)
        report["wall_seconds"] = round(time.perf_counter() - wall_started, 1)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
    render_plot(report, args.plot)
    print_summary(report)
    print(f"results: {args.json}\nplot: {args.plot}")


if __name__ == "__main__":
    main()

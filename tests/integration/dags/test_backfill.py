"""Backfills of the materialization DAGs through a running Airflow stack (api-server, scheduler,
dag-processor, triggerer; metadata in PostgreSQL, see fixtures/airflow.py) into a real Redis: first
on the LocalExecutor, then the same stack restarted on the CeleryExecutor with two workers.

The offline store comes from the `taxi_features` DAG (`airflow dags test`). A day of
`feast_materialize_hourly` is then backfilled with `airflow backfill create` (24 runs, run by
the scheduler) and Redis must hold exactly what a direct `materialize_window` over the same
windows writes into a second, fresh Redis db, and what pandas says the latest offline row of
each entity in those windows is. A half-hourly backfill run backwards lands on the same values as
the direct materialization too.

Then the stack restarts with `TAXI_EXECUTOR=celery` and two workers (`make airflow-ui
EXECUTOR=celery WORKERS=2`; broker: Redis database 1). Half of the same day backfilled again into
a flushed Redis (`--reprocess-behavior completed`: every task re-runs) runs on both workers and
writes what the direct materialization writes; and a triggered `taxi_training` run on the two
workers gives the session's reference run's results (fixtures/training.py, `airflow dags test`):
the same rows through every gate, the same features and transform, the same verdicts, and
metrics within training's own run-to-run noise.

Timings (stack start, each backfill, per-task overhead) are printed with `-s`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
import subprocess
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from chicago_taxi.core import schema
from chicago_taxi.core.config import load_settings
from chicago_taxi.features import aggregates
from chicago_taxi.features import store as feast_store
from fixtures.airflow import (  # the airflow_stack_factory fixture comes from tests/conftest.py (pytest_plugins)
    AirflowStack,
    Timings,
    celery_env,
    worker_of,
)
from fixtures.env import REPO_ROOT, project_env
from fixtures.training import run_report

HOURLY, HALF_HOURLY = "feast_materialize_hourly", "feast_materialize_half_hourly"
DAG_START = datetime(2024, 1, 1, tzinfo=UTC)  # start_date of the materialization DAGs
TIMINGS = Timings("summary")
timed = TIMINGS.timed
report_timings = TIMINGS.report_fixture()


# ---------------------------------------------------------------- the stack and the offline store
@pytest.fixture(scope="module")
def backfill_env(redis_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("backfill")
    return tmp, project_env(tmp, TAXI_ONLINE_STORE="redis", REDIS_PORT=str(redis_server))


@pytest.fixture(scope="module")
def offline_store(backfill_env):
    """The `taxi_features` DAG (extract, GX gate, aggregates, `feast apply`), as `make run` runs it."""
    tmp, env = backfill_env
    stack = AirflowStack(env)  # not started: its env (port, execution API URL) and its migrated DB
    stack.migrate()
    started = time.monotonic()
    proc = subprocess.run(
        ["airflow", "dags", "test", "taxi_features", "2017-01-01"], env=stack.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    timed("taxi_features (airflow dags test)", started)
    for view in schema.STORE_VIEWS:
        assert (tmp / "features" / f"{view.name}.parquet").exists(), view.name
    return stack


@pytest.fixture(scope="module")
def live_stack(offline_store, airflow_stack_factory):
    stack = airflow_stack_factory(offline_store.env, offline_store.port, migrated=True)
    TIMINGS["stack start (healthy)"] = stack.start_seconds
    print(f"\n[timing] stack start (healthy): {stack.start_seconds} s", flush=True)
    return stack


@pytest.fixture(scope="module")
def settings(live_stack):
    """The project's settings for this test's env, in process (Feast and Redis reads, direct materialization)."""
    mp = pytest.MonkeyPatch()
    for key, value in live_stack.env.items():
        if key.startswith(("TAXI_", "REDIS_", "FEAST_")):
            mp.setenv(key, value)
    yield load_settings()
    mp.undo()


def redis_db(settings, db: int = 0):
    import redis

    host, port = settings.redis_address.split(",")[0].split(":")
    return redis.Redis(host=host, port=int(port), db=db)


def snapshot(client) -> dict:
    return {key: client.hgetall(key) for key in sorted(client.scan_iter())}


# ---------------------------------------------------------------- helpers
def busiest_data_day(settings, view: schema.StoreView, now: datetime) -> pd.Timestamp:
    """The data-time day with the most offline rows of `view` whose wall-clock day (data day plus
    the replay offset) is over, and inside the DAGs' schedule: the most work a one-day backfill does."""
    assert float(settings.replay_offset_days).is_integer(), "this test maps whole days"
    offset = timedelta(days=settings.replay_offset_days)
    stamps = pd.read_parquet(settings.features_dir / f"{view.name}.parquet", columns=[aggregates.EVENT_TIMESTAMP])[aggregates.EVENT_TIMESTAMP]
    days = stamps.dt.floor("D")
    usable = (days + offset + timedelta(days=1) <= now - timedelta(hours=1)) & (days + offset >= DAG_START)
    assert usable.any(), f"no offline rows map to a finished wall-clock day after {DAG_START} (offset {offset})"
    return days[usable].value_counts().sort_index().idxmax()


def backfill(live_stack, dag_id: str, start: datetime, end: datetime, *extra: str) -> tuple[list[dict], dict, float]:
    """`airflow backfill create` over logical dates [start, end] (both inclusive, as the CLI reads
    them), then unpause the DAG (unpausing also starts its latest scheduled interval); wait
    through the REST API until the backfill is complete and its runs succeeded.
    Returns the DAG's runs, the backfill and the wall time from the command to the last success."""
    before = {b["id"] for b in live_stack.backfills(dag_id)}
    started = time.monotonic()
    cmd = ["airflow", "backfill", "create", "--dag-id", dag_id, "--from-date", start.isoformat(), "--to-date", end.isoformat(), *extra]
    proc = subprocess.run(cmd, env=live_stack.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    created = [b for b in live_stack.backfills(dag_id) if b["id"] not in before]
    assert created, proc.stdout[-2000:]
    live_stack.unpause(dag_id)  # the runs of a backfill only start while the DAG is unpaused
    in_range = lambda run: run["run_type"] == "backfill" and start <= _ts(run["logical_date"]) <= end  # noqa: E731
    expected = 1 + int((end - start) / _cadence(dag_id))
    live_stack.wait_for_runs(dag_id, expected, ("success",), timeout=1800, where=in_range)
    seconds = time.monotonic() - started
    # The scheduler marks the backfill complete (every 30 s); another backfill of the DAG waits for that.
    done = wait_for_backfill(live_stack, created[-1]["id"], timeout=180)
    return [r for r in live_stack.dag_runs(dag_id) if in_range(r)], done, seconds


def wait_for_backfill(live_stack, backfill_id: int, timeout: float) -> dict:
    """Until the scheduler marks the backfill complete (it checks every 30 s)."""
    deadline = time.monotonic() + timeout
    while (backfill := live_stack.api("GET", f"backfills/{backfill_id}"))["completed_at"] is None:
        assert time.monotonic() < deadline, f"backfill {backfill} not complete after {timeout}s"
        time.sleep(3)
    return backfill


def _cadence(dag_id: str) -> timedelta:
    return timedelta(hours=1) if dag_id == HOURLY else timedelta(minutes=30)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def settle(live_stack, dag_id: str, timeout: float = 600) -> list[dict]:
    """Every run of the DAG finished (scheduled runs included), successfully."""
    deadline = time.monotonic() + timeout
    while True:
        runs = live_stack.dag_runs(dag_id)
        if all(r["state"] in ("success", "failed") for r in runs):
            assert all(r["state"] == "success" for r in runs), [(r["dag_run_id"], r["state"]) for r in runs]
            return runs
        assert time.monotonic() < deadline, [(r["dag_run_id"], r["state"]) for r in runs]
        time.sleep(3)


def windows(runs: list[dict]) -> list[tuple[datetime, datetime]]:
    return sorted({(_ts(r["data_interval_start"]), _ts(r["data_interval_end"])) for r in runs})


def direct_materialization(settings, tmp, cadence: str, wall_windows) -> dict:
    """`materialize_window` over the same wall-clock windows, in process, into Redis db 1 (flushed
    first), with a copy of the Feast registry (materialize records its intervals there)."""
    feast_copy = tmp / f"feast_direct_{cadence}"
    shutil.rmtree(feast_copy, ignore_errors=True)
    shutil.copytree(settings.feast_dir, feast_copy)
    direct = dataclasses.replace(settings, redis_address=f"{settings.redis_address},db=1", feast_dir=feast_copy)
    client = redis_db(settings, 1)
    client.flushdb()
    try:
        for start, end in wall_windows:
            feast_store.materialize_window(cadence, start, end, direct)
        return snapshot(client)
    finally:
        feast_store.configure_feast_env(settings)  # back to db 0 for this process


def expected_latest_rows(settings, view: schema.StoreView, wall_windows) -> pd.DataFrame:
    """Pandas, from the offline Parquet: each entity's latest row inside any materialized window
    ([data start - overlap, data end], both ends included, as materialize_window reads them)."""
    rows = pd.read_parquet(settings.features_dir / f"{view.name}.parquet")
    inside = np.zeros(len(rows), dtype=bool)
    overlap = timedelta(minutes=settings.materialize_overlap_minutes)
    for start, end in wall_windows:
        lo, hi = settings.data_time(start) - overlap, settings.data_time(end)
        inside |= ((rows[aggregates.EVENT_TIMESTAMP] >= lo) & (rows[aggregates.EVENT_TIMESTAMP] <= hi)).to_numpy()
    latest = rows[inside].sort_values(aggregates.EVENT_TIMESTAMP, kind="mergesort").groupby(view.entity).tail(1)
    return latest.set_index(view.entity)


def assert_online_equals_pandas(settings, view: schema.StoreView, wall_windows) -> int:
    """Feast's online read of every entity the offline store knows equals the pandas expectation:
    the latest row's values and event time where one was materialized, nothing elsewhere."""
    expected = expected_latest_rows(settings, view, wall_windows)
    keys = pd.read_parquet(settings.features_dir / f"{view.name}.parquet", columns=[view.entity])[view.entity].unique().tolist()
    store = feast_store.feature_store(settings)
    response = store.get_online_features(
        features=[f"{view.name}:{f}" for f in view.features], entity_rows=[{view.entity: k.item() if hasattr(k, "item") else k} for k in keys]
    ).to_dict(include_event_timestamps=True)
    for i, key in enumerate(keys):
        for feature in view.features:
            got, stamp = response[feature][i], response.get(f"{feature}__ts", [None] * len(keys))[i]
            if key in expected.index:
                row = expected.loc[key]
                assert got == pytest.approx(float(row[feature]), rel=1e-6, nan_ok=True), (view.name, key, feature)
                assert stamp == int(row[aggregates.EVENT_TIMESTAMP].timestamp()), (view.name, key, feature, stamp)
            else:
                assert got is None, (view.name, key, feature, got)
    return len(expected)


def assert_registry_intact(settings) -> None:
    """Every entity, view and service `feast apply` registered is still in the registry: the
    materialization tasks rewrite the registry file (materialization intervals) concurrently."""
    from feast.protos.feast.core.Registry_pb2 import Registry

    registry = Registry()
    registry.ParseFromString((settings.feast_dir / "registry.db").read_bytes())
    assert {e.spec.name for e in registry.entities} >= {v.entity for v in schema.STORE_VIEWS}, registry.entities
    assert {v.spec.name for v in registry.feature_views} >= {v.name for v in schema.STORE_VIEWS}, [v.spec.name for v in registry.feature_views]
    assert "fare_model_features" in {s.spec.name for s in registry.feature_services}


def task_overhead(live_stack, dag_id: str, runs: list[dict]) -> dict:
    """Where a backfill's time goes, from the task instances: time waiting in the queue and running."""
    tis = [ti for r in runs for ti in live_stack.task_instances(dag_id, r["dag_run_id"])]
    queued = [(_ts(t["start_date"]) - _ts(t["queued_when"])).total_seconds() for t in tis if t["queued_when"] and t["start_date"]]
    duration = [t["duration"] for t in tis if t["duration"] is not None]
    starts, ends = [_ts(t["start_date"]) for t in tis if t["start_date"]], [_ts(t["end_date"]) for t in tis if t["end_date"]]
    return {
        "task_instances": len(tis),
        "task_seconds_median": round(statistics.median(duration), 1),
        "task_seconds_max": round(max(duration), 1),
        "queued_to_start_median": round(statistics.median(queued), 1),
        "first_start_to_last_end": round((max(ends) - min(starts)).total_seconds(), 1),
        "tries": sorted({t["try_number"] for t in tis}),
    }


# ---------------------------------------------------------------- tests
def test_stack_is_healthy_and_listens_on_loopback_only(live_stack):
    health = live_stack.health()
    assert all(health[c]["status"] == "healthy" for c in ("metadatabase", "scheduler", "dag_processor", "triggerer")), health
    sockets = live_stack.listening_sockets()
    assert {s["port"] for s in sockets} >= {live_stack.port}, sockets
    assert all(s["address"] == "127.0.0.1" for s in sockets), sockets
    assert live_stack.status().returncode == 0


def test_the_generated_admin_password_is_readable_by_its_owner_only_and_never_printed(live_stack):
    passwords = live_stack.home / "simple_auth_manager_passwords.json.generated"
    assert passwords.exists(), f"the api-server wrote no password file in {live_stack.home}"
    assert passwords.stat().st_mode & 0o777 == 0o600, oct(passwords.stat().st_mode)
    secret = next(iter(json.loads(passwords.read_text()).values()))
    printed = live_stack.status().stdout + live_stack.last_start_output
    assert secret not in printed and str(passwords) in live_stack.last_start_output, live_stack.last_start_output


@pytest.fixture(scope="module")
def hourly_day(live_stack, settings, redis_server, tmp_path_factory):
    """A whole day of hourly runs backfilled through the scheduler, into a flushed Redis."""
    view = feast_store.views_for_cadence("hourly")[0]
    data_day = busiest_data_day(settings, view, datetime.now(UTC))
    wall_day = (data_day + timedelta(days=settings.replay_offset_days)).to_pydatetime()
    redis_db(settings).flushall()
    live_stack.wait_for_dag(HOURLY)  # paused (as on creation) until the backfill exists: fewer writers on SQLite meanwhile
    runs, done, seconds = backfill(live_stack, HOURLY, wall_day, wall_day + timedelta(hours=23))
    TIMINGS["hourly backfill, 24 runs"] = round(seconds, 1)
    print(
        f"\n[timing] hourly backfill of wall day {wall_day:%Y-%m-%d} (data day {data_day:%Y-%m-%d}): {seconds:.1f} s; "
        f"{task_overhead(live_stack, HOURLY, runs)}",
        flush=True,
    )
    return wall_day, runs, done


def test_hourly_backfill_of_a_day_equals_direct_materialization(live_stack, settings, hourly_day, tmp_path):
    wall_day, runs, done = hourly_day
    assert_registry_intact(settings)
    assert len(runs) == 24 and all(r["state"] == "success" for r in runs)
    assert [_ts(r["logical_date"]) for r in runs] == [wall_day + timedelta(hours=h) for h in range(24)]
    assert all(_ts(r["data_interval_end"]) - _ts(r["data_interval_start"]) == timedelta(hours=1) for r in runs)
    # The scheduler also ran the latest scheduled interval when the DAG was unpaused: Redis holds
    # the union of every run's window, so the comparisons use every run of the DAG.
    all_runs = settle(live_stack, HOURLY)
    online = snapshot(redis_db(settings))
    assert online, "the backfill wrote nothing to Redis"
    direct = direct_materialization(settings, tmp_path, "hourly", windows(all_runs))
    assert online == direct
    view = feast_store.views_for_cadence("hourly")[0]
    assert assert_online_equals_pandas(settings, view, windows(all_runs)) >= 3
    # Nothing of the half-hourly views: their DAG is paused and never ran.
    live_stack.wait_for_dag(HALF_HOURLY)
    assert not live_stack.dag_runs(HALF_HOURLY)
    (half_view,) = feast_store.views_for_cadence("half_hourly")
    assert assert_online_equals_pandas(settings, half_view, []) == 0


def test_half_hourly_backfill_run_backwards_equals_direct_materialization(live_stack, settings, hourly_day, tmp_path):
    """Newest window first: Feast keeps the newest row per entity, so the order does not matter."""
    wall_day = hourly_day[0]
    live_stack.pause(HOURLY)  # no new hourly runs write area rows while this one is compared
    settle(live_stack, HOURLY)
    (view,) = feast_store.views_for_cadence("half_hourly")
    data_day = pd.Timestamp(settings.data_time(wall_day))
    stamps = pd.read_parquet(settings.features_dir / f"{view.name}.parquet", columns=[aggregates.EVENT_TIMESTAMP])[aggregates.EVENT_TIMESTAMP]
    on_day = stamps[(stamps >= data_day) & (stamps < data_day + timedelta(days=1))]
    # the busiest 3-hour block of the day: 6 half-hourly runs
    block = int(((on_day - data_day) // timedelta(hours=3)).value_counts().idxmax()) if len(on_day) else 4
    start = wall_day + timedelta(hours=3 * block)
    redis_db(settings).flushall()
    live_stack.wait_for_dag(HALF_HOURLY)
    runs, done, seconds = backfill(live_stack, HALF_HOURLY, start, start + timedelta(hours=2, minutes=30), "--run-backwards")
    TIMINGS["half-hourly backfill, 6 runs backwards"] = round(seconds, 1)
    print(
        f"\n[timing] half-hourly backfill {start:%Y-%m-%d %H:%M} +3h backwards: {seconds:.1f} s; {task_overhead(live_stack, HALF_HOURLY, runs)}",
        flush=True,
    )
    assert len(runs) == 6 and all(r["state"] == "success" for r in runs)
    live_stack.pause(HALF_HOURLY)
    all_runs = settle(live_stack, HALF_HOURLY)
    assert_registry_intact(settings)
    online = snapshot(redis_db(settings))
    assert online == direct_materialization(settings, tmp_path, "half_hourly", windows(all_runs))
    assert assert_online_equals_pandas(settings, view, windows(all_runs)) >= 1


def test_make_backfill_names_the_dates_it_skips(live_stack):
    """`make backfill` (scripts/backfill.sh, the README's command): Airflow skips dates that already
    have a run without a word; the script lists them. taxi_training stays paused in this stack, so
    the first call's runs are created and stay queued (in flight) for the second call to find."""
    dag = "taxi_training"
    live_stack.wait_for_dag(dag)
    script = [str(REPO_ROOT / "scripts" / "backfill.sh"), dag, "2013-02-01", "2013-02-02"]
    first = subprocess.run(script, env=live_stack.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "backfilling 2 run(s) of taxi_training: 2013-02-01 00:00:00 .. 2013-02-02 00:00:00" in first.stdout, first.stdout
    again = subprocess.run(script, env=live_stack.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 date(s) of taxi_training in the range already have a run and are skipped" in again.stdout, again.stdout
    assert "  2013-02-01 00:00:00\n  2013-02-02 00:00:00" in again.stdout and "nothing to backfill" in again.stdout, again.stdout


# ---------------------------------------------------------------- the same stack on two Celery workers
TRAINING = "taxi_training"


# The Celery backfill re-runs the afternoon half of the LocalExecutor's day (the busier half).
CELERY_FIRST_HOUR, CELERY_RUNS = 12, 12


@pytest.fixture(scope="module")
def celery_stack(live_stack):
    """The module's stack restarted with the CeleryExecutor and two workers, as `make airflow-ui
    EXECUTOR=celery WORKERS=2` starts it (broker: the module's Redis, database 1). The training DAG
    runs only when triggered here (TAXI_TRAINING_CRON=none)."""
    live_stack.stop()
    live_stack.env = celery_env(live_stack.env, workers=2, TAXI_TRAINING_CRON="none")
    live_stack.start()
    TIMINGS["stack restart on Celery, 2 workers (healthy)"] = live_stack.start_seconds
    assert "workers: worker-1 worker-2" in live_stack.last_start_output, live_stack.last_start_output
    return live_stack


def test_celery_workers_start_with_the_stack_and_listen_on_nothing(celery_stack):
    workers = [p for p in (celery_stack.logdir).glob("worker-*.log")]
    assert sorted(p.stem for p in workers) == ["worker-1", "worker-2"]
    assert all("ready." in p.read_text(errors="replace") for p in workers), celery_stack.log_tails(20)
    sockets = celery_stack.listening_sockets()
    assert {s["port"] for s in sockets} == {celery_stack.port} and all(s["address"] == "127.0.0.1" for s in sockets), sockets
    assert celery_stack.status().returncode == 0


def test_the_same_day_on_two_celery_workers_writes_what_the_direct_materialization_writes(celery_stack, settings, hourly_day, tmp_path):
    """Half of the LocalExecutor's day again (`--reprocess-behavior completed`), into a flushed
    Redis: its 12 runs re-run on the Celery workers, both of them, and Redis ends up as the direct
    materialization of the windows that ran, which the LocalExecutor's backfill also equals."""
    wall_day, first_runs, _ = hourly_day
    celery_stack.pause(HOURLY)
    settle(celery_stack, HOURLY)
    client = redis_db(settings)
    client.flushall()
    flushed = datetime.now(UTC)
    start = wall_day + timedelta(hours=CELERY_FIRST_HOUR)
    end = start + timedelta(hours=CELERY_RUNS - 1)
    runs, done, seconds = backfill(celery_stack, HOURLY, start, end, "--reprocess-behavior", "completed")
    TIMINGS[f"hourly backfill on Celery, {CELERY_RUNS} runs (reprocess completed)"] = round(seconds, 1)
    overhead = task_overhead(celery_stack, HOURLY, runs)
    print(f"\n[timing] hourly backfill on 2 Celery workers: {seconds:.1f} s; {overhead}", flush=True)
    expected = [r["dag_run_id"] for r in first_runs if start <= _ts(r["logical_date"]) <= end]
    assert len(expected) == CELERY_RUNS and [r["dag_run_id"] for r in runs] == expected  # the same runs, cleared and re-run
    assert min(overhead["tries"]) >= 2  # every task ran again
    tis = [ti for r in runs for ti in celery_stack.task_instances(HOURLY, r["dag_run_id"])]
    by_worker: dict[str, int] = {}
    for ti in tis:
        by_worker[worker_of(ti)] = by_worker.get(worker_of(ti), 0) + 1
    print(f"[celery] task instances per worker: {by_worker}", flush=True)
    assert set(by_worker) == {"worker-1", "worker-2"}, by_worker
    celery_stack.pause(HOURLY)
    ran = [r for r in settle(celery_stack, HOURLY) if r["end_date"] and _ts(r["end_date"]) >= flushed]
    assert_registry_intact(settings)
    online = snapshot(client)
    assert online, "the Celery backfill wrote nothing to Redis"
    assert online == direct_materialization(settings, tmp_path, "hourly", windows(ran))
    assert assert_online_equals_pandas(settings, feast_store.views_for_cadence("hourly")[0], windows(ran)) >= 3


def test_taxi_training_on_two_celery_workers_gives_the_reference_runs_results(celery_stack, first_run):
    """A triggered taxi_training run on the Celery workers against the session's reference run of
    the same DAG on the same sample (`airflow dags test`, fixtures/training.py). Deterministic
    steps must agree exactly; the metrics within 1%: two runs of the same seeded training differ
    by about 0.01% (TensorFlow's multi-threaded sums), a different data set or gate by far more."""
    # `make backfill`'s test left two queued backfill runs of the paused DAG: not part of this run.
    for run in celery_stack.dag_runs(TRAINING):
        celery_stack.api("DELETE", f"dags/{TRAINING}/dagRuns/{run['dag_run_id']}")
    celery_stack.wait_for_dag(TRAINING)
    celery_stack.unpause(TRAINING)
    started = time.monotonic()
    run_id = celery_stack.api("POST", f"dags/{TRAINING}/dagRuns", json={"logical_date": None})["dag_run_id"]
    celery_stack.wait_for_runs(TRAINING, 1, timeout=1200, where=lambda r: r["dag_run_id"] == run_id, poll=5)
    TIMINGS["taxi_training on Celery (trigger to success)"] = round(time.monotonic() - started, 1)
    celery_stack.pause(TRAINING)
    tis = celery_stack.task_instances(TRAINING, run_id)
    assert tis and all(t["state"] in ("success", "skipped") for t in tis), [(t["task_id"], t["state"]) for t in tis]
    workers = {worker_of(t) for t in tis if t["state"] == "success"}
    print(f"[celery] taxi_training {run_id}: tasks on {sorted(workers)}", flush=True)
    assert workers <= {"worker-1", "worker-2"} and "" not in workers, workers

    ours, reference = run_report(celery_stack.env, run_id), first_run
    same = [
        ("extract", "rows"),
        ("validate_raw", "success"),
        ("validate_raw", "passed_rows"),
        ("validate_raw", "quarantined_rows"),
        ("validate_raw", "failed_expectations"),
        ("validate_raw", "warnings"),
        ("join_store_features", "rows"),
        ("join_store_features", "feature_coverage"),
        ("transform", "train_rows"),
        ("transform", "holdout_rows"),
        ("transform", "holdout_starts"),
        ("validate_transformed", "success"),
        ("validate_transformed", "vocabulary_sizes"),
        ("train", "epochs_run"),
        ("train", "fare_cap"),
        ("evaluate", "holdout_repairs"),
    ]
    for section, key in same:
        assert ours[section][key] == reference[section][key], (section, key, ours[section][key], reference[section][key])
    for metrics in ("candidate", "baseline"):
        for scope in ("whole", "clean"):
            got = ours["evaluate"][metrics] if scope == "whole" else ours["evaluate"][metrics]["clean"]
            want = reference["evaluate"][metrics] if scope == "whole" else reference["evaluate"][metrics]["clean"]
            assert got["rows"] == want["rows"] and got["rmse"] == pytest.approx(want["rmse"], rel=0.01), (metrics, scope, got, want)
    assert ours["evaluate"]["decision"]["register"] and ours["evaluate"]["decision"]["alias"] == "champion", ours["evaluate"]["decision"]
    assert ours["register"]["version"] is not None and ours["build_bento"]["built"], (ours["register"], ours["build_bento"])

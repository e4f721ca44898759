"""Shared pytest setup: the project's plugins on sys.path and every runtime path in a temp dir.

Integration tests run the real services (Airflow via `airflow dags test`, MLflow on SQLite,
BentoML serving) in subprocesses with an isolated environment built here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "plugins"))
sys.path.insert(0, str(REPO_ROOT / "tests"))
DATA_CSV = REPO_ROOT / "data" / "chicago_taxi_trips.csv"


# Fixtures of the real services, one module each: a trained model (training, session), the Kafka
# broker (kafka, session), Airflow stacks (airflow, a per-module factory), streaming helpers (streams).
pytest_plugins = ["fixtures.training", "fixtures.kafka", "fixtures.airflow", "fixtures.streams"]


@pytest.fixture(scope="session")
def trips() -> pd.DataFrame:
    """The vendored real Chicago sample (15,002 trips, dirty rows included)."""
    return pd.read_csv(DATA_CSV)


@pytest.fixture(scope="session")
def clean_trips(trips) -> pd.DataFrame:
    """A slice with none of the known dirt, for tests that need a good batch."""
    ok = (
        trips["fare"].between(3.25, 300)
        & trips["trip_seconds"].between(60, 6 * 3600)
        & trips["trip_miles"].between(0, 100)
        & (trips["trip_miles"] / (trips["trip_seconds"] / 3600) <= 80)
    )
    return trips[ok].head(3000).reset_index(drop=True)


# The replay clock under test: "now" replays this day of the sample whatever today's date is, so
# a test reading the online store "now" meets the same data on any day (with the default offset
# it would meet whatever trips the sample has 3650 days ago: on some days no company's trip
# inside its 1-day TTL, and after 2026-12-28 days past the sample's last trip). A busy day:
# every quarter hour of it has at least 8 company trips in the day before, and the week before
# has 97 trips.
TEST_DATA_DAY = date(2015, 6, 15)


def replay_offset_days_for_tests() -> int:
    return (datetime.now(UTC).date() - TEST_DATA_DAY).days


def project_env(tmp: Path, **overrides: str) -> dict[str, str]:
    """Environment for a subprocess of the project with all state under `tmp`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TAXI_", "MLFLOW", "BENTOML"))}
    script = f"source {REPO_ROOT}/scripts/env.sh && env -0"
    env["AIRFLOW_HOME"] = str(tmp / "airflow")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow/mlflow.db"
    env["BENTOML_HOME"] = str(tmp / "bentoml")
    sourced = subprocess.run(["bash", "-c", script], env=env, capture_output=True, check=True).stdout.decode()
    result = dict(item.split("=", 1) for item in sourced.split("\0") if "=" in item)
    result.update(
        TAXI_WORK_DIR=str(tmp / "var"),
        TAXI_REPORTS_DIR=str(tmp / "reports"),
        TAXI_LOGS_DIR=str(tmp / "logs"),
        TAXI_MLFLOW_ARTIFACTS=str(tmp / "mlflow" / "artifacts"),
        TAXI_FEAST_DIR=str(tmp / "feast"),
        TAXI_FEATURES_DIR=str(tmp / "features"),
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(tmp / "logs" / "airflow"),
        TAXI_REPLAY_OFFSET_DAYS=str(replay_offset_days_for_tests()),
    )
    result.update(overrides)
    return result


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server on 127.0.0.1 (installed from Debian's packages if missing), stopped at the end."""
    port = _free_port()
    proc = subprocess.run([str(REPO_ROOT / "scripts" / "redis.sh"), "start", str(port)], capture_output=True, text=True)
    assert proc.returncode == 0, f"could not start redis-server on 127.0.0.1:{port}: {proc.stdout}{proc.stderr}"
    yield port
    subprocess.run([str(REPO_ROOT / "scripts" / "redis.sh"), "stop", str(port)], capture_output=True)


def pytest_sessionfinish(session, exitstatus):
    session.config._taxi_exitstatus = int(exitstatus)


def pytest_unconfigure(config):
    # TensorFlow/Beam/Feast background threads can segfault during interpreter teardown, after
    # every result is reported; end the process with pytest's own status instead.
    if hasattr(config, "_taxi_exitstatus"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config._taxi_exitstatus)

"""Shared pytest setup: the project's plugins on sys.path, the data fixtures, one marker per test
from its folder, and every runtime path of a service test in a temp dir.

Integration tests run the real services (Airflow via `airflow dags test`, MLflow on SQLite,
BentoML serving) in subprocesses with an isolated environment (`fixtures.env.project_env`).
Plain helpers live in tests/fixtures/env.py: import them from there, not from this file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR.parent / "plugins"))
sys.path.insert(0, str(TESTS_DIR))

from fixtures.env import DATA_CSV, REPO_ROOT, free_port  # noqa: E402  (needs tests/ on sys.path)
from fixtures.trips import started_before_test_data_day, without_known_dirt  # noqa: E402

# Fixtures of the real services, one module each: a trained model (training, session), the Kafka
# broker (kafka, session), Airflow stacks (airflow, a per-module factory), streaming helpers
# (streams); and the unit tests' one tf.Transform run (transform, session, in a subprocess).
pytest_plugins = ["fixtures.training", "fixtures.kafka", "fixtures.airflow", "fixtures.streams", "fixtures.transform"]

# Every test is marked by the top folder it lives in: `-m "unit or dags"` is the service-free run.
FOLDER_MARKERS = {"unit": "unit", "dags": "dags", "integration": "integration"}


@pytest.fixture(scope="session")
def trips() -> pd.DataFrame:
    """The vendored real Chicago sample (15,002 trips, dirty rows included)."""
    return pd.read_csv(DATA_CSV)


@pytest.fixture(scope="session")
def clean_trips(trips) -> pd.DataFrame:
    """A slice with none of the known dirt, for tests that need a good batch; every trip starts
    before the tests' data day (the stream's data clock rejects later ones)."""
    return started_before_test_data_day(without_known_dirt(trips)).head(3000).reset_index(drop=True)


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server on 127.0.0.1 (installed from Debian's packages if missing), stopped at the end."""
    port = free_port()
    proc = subprocess.run([str(REPO_ROOT / "scripts" / "redis.sh"), "start", str(port)], capture_output=True, text=True)
    assert proc.returncode == 0, f"could not start redis-server on 127.0.0.1:{port}: {proc.stdout}{proc.stderr}"
    yield port
    subprocess.run([str(REPO_ROOT / "scripts" / "redis.sh"), "stop", str(port)], capture_output=True)


def pytest_collection_modifyitems(session, config, items):
    """Mark each test `unit`, `dags` or `integration` by its folder under tests/ (exactly one);
    a test outside those folders, or marked by hand with another of them, is a usage error."""
    problems = []
    for item in items:
        try:
            top = Path(item.path).resolve().relative_to(TESTS_DIR).parts[0]
        except ValueError:  # a test file given from outside tests/: not ours to mark
            continue
        marker = FOLDER_MARKERS.get(top)
        if marker is None:
            problems.append(f"{item.nodeid}: tests live in tests/unit, tests/dags or tests/integration")
            continue
        others = {m.name for m in item.iter_markers() if m.name in FOLDER_MARKERS.values() and m.name != marker}
        if others:
            problems.append(f"{item.nodeid}: in tests/{top} but marked {sorted(others)}")
        item.add_marker(getattr(pytest.mark, marker))
    if problems:
        message = "test markers come from the folder:\n" + "\n".join(problems)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:  # pytest_unconfigure's os._exit would swallow the UsageError's own report
            reporter.write_line(f"ERROR: {message}", red=True)
        raise pytest.UsageError(message)


def pytest_sessionfinish(session, exitstatus):
    session.config._taxi_exitstatus = int(exitstatus)


def pytest_unconfigure(config):
    # TensorFlow/Beam/Feast background threads can segfault during interpreter teardown, after
    # every result is reported; end the process with pytest's own status instead.
    if hasattr(config, "_taxi_exitstatus"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config._taxi_exitstatus)

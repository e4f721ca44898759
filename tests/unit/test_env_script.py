"""scripts/env.sh's choice of MLflow store: the live stack's tracking server while it runs, the
embedded SQLite store otherwise, TAXI_MLFLOW=server|sqlite to force one, an explicit
MLFLOW_TRACKING_URI always wins."""

from __future__ import annotations

import os
import subprocess

import pytest

from fixtures.env import REPO_ROOT


def tracking_uri(tmp_path, **env) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW", "TAXI_"))}
    base.update(TAXI_MLFLOW_SERVER_DIR=str(tmp_path), MLFLOW_PORT="5123", **env)
    proc = subprocess.run(["bash", "-c", f"source {REPO_ROOT}/scripts/env.sh && echo $MLFLOW_TRACKING_URI"], env=base, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture
def live_server(tmp_path):
    """A pid file naming a live process (this test's), as scripts/mlflow_server.sh writes it."""
    (tmp_path / "server.pid").write_text(str(os.getpid()))
    return tmp_path


def test_without_a_running_server_the_embedded_store_is_used(tmp_path):
    assert tracking_uri(tmp_path) == f"sqlite:///{REPO_ROOT}/mlflow/mlflow.db"
    (tmp_path / "server.pid").write_text("999999999")  # a server that is gone
    assert tracking_uri(tmp_path).startswith("sqlite:///")


def test_while_the_server_runs_it_is_used(live_server):
    assert tracking_uri(live_server) == "http://127.0.0.1:5123"


def test_taxi_mlflow_forces_either(tmp_path, live_server):
    assert tracking_uri(live_server, TAXI_MLFLOW="sqlite").startswith("sqlite:///")
    assert tracking_uri(tmp_path / "none", TAXI_MLFLOW="server") == "http://127.0.0.1:5123"


def test_an_explicit_tracking_uri_wins(live_server):
    assert tracking_uri(live_server, MLFLOW_TRACKING_URI="http://mlflow:5000") == "http://mlflow:5000"

"""The last step of taxi_training: package the registered version into a Bento.

The library imports no BentoML: the import into BentoML's model store and `bentoml build` run in
a child process (`python -m bentos.build` from the repository root, bentos/build.py), which also
keeps BentoML's lazily loaded configuration out of a worker that already imported TensorFlow,
GX and Airflow's task runner (it failed to initialise there)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from chicago_taxi.core.config import Settings, load_settings
from chicago_taxi.core.runs import run_paths, run_report

log = logging.getLogger(__name__)


def bento_model_tag(model_name: str, version: str, run_id: str) -> str:
    return f"{model_name}:mlflow-v{version}-{run_id[:8]}"


def build_bento_for(repo_root: Path, model_name: str, version: str, run_id: str, bentoml_home: Path) -> str:
    """Import the registered MLflow version into BentoML's store and build the service; the Bento's tag."""
    plugins = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home),
        "BENTOML_DO_NOT_TRACK": "True",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(repo_root), plugins, os.environ.get("PYTHONPATH")])),
    }
    cmd = [sys.executable, "-m", "bentos.build", model_name, str(version), run_id, bento_model_tag(model_name, version, run_id)]
    log.info("building bento: %s", " ".join(cmd))
    proc = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bento build for {model_name} version {version} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    bento_tag = proc.stdout.strip().splitlines()[-1]
    log.info("built bento %s", bento_tag)
    return bento_tag


def build_bento(run_id: str, settings: Settings | None = None) -> dict:
    settings = settings or load_settings()
    paths = run_paths(settings, run_id)
    report = run_report(settings, paths)
    registration = report.read()["register"]
    if not registration.get("version"):
        section = {"built": False, "reason": "no model version was registered in this run"}
    else:
        tag = build_bento_for(settings.repo_root, settings.model_name, registration["version"], registration["run_id"], settings.bentoml_home)
        section = {"built": True, "bento_tag": tag, "model_version": registration["version"]}
    report.update("build_bento", section)
    return section

"""Import a registered MLflow model version into BentoML's store and `bentoml build` the service.

    python -m bentos.build MODEL_NAME VERSION MLFLOW_RUN_ID BENTO_MODEL_TAG   (from the repository root)

Called in a child process by the training DAG's build_bento step (chicago_taxi.serving.bento);
prints the Bento's tag on its last line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def import_and_build(model_name: str, version: str, run_id: str, tag: str) -> str:
    import bentoml

    try:
        bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        bentoml.mlflow.import_model(tag, f"models:/{model_name}/{version}", labels={"mlflow_version": str(version), "mlflow_run_id": run_id})
    cmd = [
        str(Path(sys.executable).parent / "bentoml"),
        "build",
        "-f",
        "bentos/bentofile.yaml",
        "-o",
        "tag",
        "--label",
        f"mlflow_version={version}",
        ".",
    ]
    proc = subprocess.run(cmd, env={**os.environ, "TAXI_BENTO_MODEL_TAG": tag}, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"bentoml build failed with exit code {proc.returncode}")
    return proc.stdout.strip().splitlines()[-1].removeprefix("__tag__:")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: python -m bentos.build MODEL_NAME VERSION MLFLOW_RUN_ID BENTO_MODEL_TAG")
    print(import_and_build(*sys.argv[1:]))

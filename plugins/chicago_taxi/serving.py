"""What the prediction service shares with the rest of the platform: its request model, derived
from the trip schema, and the packaging of a registered model version into a Bento."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from chicago_taxi import schema

log = logging.getLogger(__name__)
BENTO_NAME = "chicago_taxi_fare_service"
_PY_TYPES = {"int": int, "float": float, "string": str}


def _trip_fields() -> dict:
    fields = {}
    for name in schema.MODEL_INPUT_COLUMNS:
        col = schema.COLUMNS_BY_NAME[name]
        py_type = _PY_TYPES[col.kind]
        constraints = {}
        if col.min_value is not None:
            constraints["ge"] = col.min_value
        if col.max_value is not None:
            constraints["le"] = col.max_value
        description = col.why or name
        if col.required_for_scoring:
            fields[name] = (py_type, Field(..., description=description, **constraints))
        else:
            fields[name] = (py_type | None, Field(None, description=description, **constraints))
    return fields


def _accept_legacy(cls, data):
    """The legacy upstream shape (SPEC: pickup_datetime, trip_distance, fare_amount, ...) is
    mapped onto the Chicago columns before validation; Chicago-shaped trips pass unchanged."""
    from chicago_taxi.messages import from_legacy, is_legacy

    if isinstance(data, dict) and is_legacy(data):
        return from_legacy(data)
    return data


# One request field per model input, with the schema's types and ranges, plus an optional
# `trip_id` echoed in the answer; extra fields are ignored.
TripRequest: type[BaseModel] = create_model(
    "TripRequest",
    __config__=ConfigDict(extra="ignore"),
    __validators__={"accept_legacy": model_validator(mode="before")(classmethod(_accept_legacy))},
    trip_id=(str | None, Field(None, description="caller's id for the trip, echoed in the answer", max_length=200)),
    **_trip_fields(),
)


class PredictionResponse(BaseModel):
    fare: float = Field(description="predicted fare in USD")
    model_version: str = Field(description="registered version of chicago_taxi_fare that answered")
    features_defaulted: list[str] = Field(description="store features the online store had no fresh value for; filled as in training")
    degraded: bool = Field(description="true when the online store could not be read and every store feature was defaulted")
    trip_id: str | None = None


class JsonBodiesOnly:
    """ASGI middleware: a POST to one of `paths` must send JSON, or it gets a 415 naming the
    Content-Type it sent. BentoML parses other media types itself and answers a malformed one
    (e.g. `multipart/form-data` without a boundary) with a 500; the APIs take JSON only. A
    request without a Content-Type is let through (BentoML reads it as JSON)."""

    def __init__(self, app, paths: tuple[str, ...] = ("/predict", "/predict_batch")):
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            sent = next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"content-type"), "")
            media = sent.split(";")[0].strip().lower()
            if media and media != "application/json" and not media.endswith("+json"):
                body = json.dumps({"error": f"unsupported Content-Type {sent!r} for {scope['path']}: send the body as application/json"}).encode()
                await send({"type": "http.response.start", "status": 415,
                            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def bento_model_tag(model_name: str, version: str, run_id: str) -> str:
    return f"{model_name}:mlflow-v{version}-{run_id[:8]}"


def build_bento(repo_root: Path, model_name: str, version: str, run_id: str, bentoml_home: Path) -> str:
    """Import the registered MLflow version into BentoML's store and `bentoml build` the service.

    Runs in a child process: BentoML's lazily loaded configuration fails to initialise inside a
    worker that already imported TensorFlow, GX and Airflow's task runner.
    """
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "True",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "chicago_taxi.serving", "build-bento", model_name, str(version), run_id]
    log.info("building bento: %s", " ".join(cmd))
    proc = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bento build for {model_name} version {version} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    bento_tag = proc.stdout.strip().splitlines()[-1]
    log.info("built bento %s", bento_tag)
    return bento_tag


def _import_and_build(model_name: str, version: str, run_id: str) -> str:
    import bentoml

    tag = bento_model_tag(model_name, version, run_id)
    try:
        bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        bentoml.mlflow.import_model(tag, f"models:/{model_name}/{version}", labels={"mlflow_version": str(version), "mlflow_run_id": run_id})
    cmd = [str(Path(sys.executable).parent / "bentoml"), "build", "-f", "bentos/bentofile.yaml", "-o", "tag",
           "--label", f"mlflow_version={version}", "."]
    proc = subprocess.run(cmd, env={**os.environ, "TAXI_BENTO_MODEL_TAG": tag}, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"bentoml build failed with exit code {proc.returncode}")
    return proc.stdout.strip().splitlines()[-1].removeprefix("__tag__:")


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "build-bento":
        sys.exit("usage: python -m chicago_taxi.serving build-bento MODEL_NAME VERSION MLFLOW_RUN_ID")
    print(_import_and_build(*sys.argv[2:]))

"""Where did this model version come from? The ML Metadata lineage of a registered model version.

    python -m chicago_taxi.tfx_pipeline.lineage --version N      (or --alias challenger)
    make lineage VERSION=N

Reads the version's MLflow run tags (`tfx.*`, written by taxi_tfx's register_tfx_model: the ML
Metadata store and the pushed model's artifact id), then walks ML Metadata inside the TFX runtime
(`chicago_taxi.tfx_pipeline.mlmd`) and prints the examples, statistics, schemas, anomalies,
transform graph, model, evaluation and blessing behind it, each with the execution that made it.
`--json` prints the walk as JSON. A version trained by the native taxi_training DAG has no ML
Metadata lineage: it says so and points at its Airflow run instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import UTC, datetime

from chicago_taxi.core.config import Settings, load_settings
from chicago_taxi.tfx_pipeline.steps import TAG_PREFIX


class NoLineage(LookupError):
    """The model version was not made by the TFX pipeline (or its tags are gone)."""


def version_tags(settings: Settings, version: str | None, alias: str | None) -> tuple[str, dict[str, str]]:
    from mlflow import MlflowClient

    from chicago_taxi.training import registry

    registry.use_tracking_uri(settings.mlflow_tracking_uri)
    client = MlflowClient()
    found = client.get_model_version_by_alias(settings.model_name, alias) if alias else client.get_model_version(settings.model_name, version)
    run = client.get_run(found.run_id)
    return str(found.version), dict(run.data.tags)


def walk(settings: Settings, metadata: str, artifact_id: int) -> dict:
    """The lineage walk, run inside the TFX runtime (ml-metadata needs its glibc)."""
    command = [str(settings.tfx_runtime_script), "run", "python", "-m", "chicago_taxi.tfx_pipeline.mlmd"]
    command += ["--metadata", metadata, "--artifact-id", str(artifact_id)]
    env = os.environ | {"TAXI_TFX_BIND": os.path.dirname(metadata)}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"the lineage walk failed in the TFX runtime (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def lineage_of_version(settings: Settings, version: str | None = None, alias: str | None = None) -> dict:
    number, tags = version_tags(settings, version, alias)
    if tags.get("training_path") != "tfx" or f"{TAG_PREFIX}pushed_model_artifact_id" not in tags:
        raise NoLineage(
            f"{settings.model_name} version {number} was not trained by the TFX pipeline: it has no ML Metadata lineage "
            f"(its Airflow run: {tags.get('airflow_run_id', 'unknown')}; its MLflow run's artifacts hold the gate reports)"
        )
    found = walk(settings, tags[f"{TAG_PREFIX}metadata"], int(tags[f"{TAG_PREFIX}pushed_model_artifact_id"]))
    return {
        "model": settings.model_name,
        "version": number,
        "airflow_run_id": tags.get("airflow_run_id"),
        "metadata": tags[f"{TAG_PREFIX}metadata"],
    } | found


def render(result: dict) -> str:
    lines = [
        f"{result['model']} version {result['version']} (Airflow run {result['airflow_run_id']}), "
        f"ML Metadata {result['metadata']}, from pushed model artifact {result['artifact_id']}:",
        f"  {'artifact':>8}  {'type':<18} {'made by':<18} {'execution':>9}  {'finished (UTC)':<19}  uri",
    ]
    for a in result["artifacts"]:
        made = a["produced_by"] or {}
        when = datetime.fromtimestamp(made["finished_ms"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if made.get("finished_ms") else ""
        lines.append(f"  {a['id']:>8}  {a['type']:<18} {made.get('component') or '':<18} {made.get('execution_id') or '':>9}  {when:<19}  {a['uri']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", help="the registered model version")
    which.add_argument("--alias", help="the alias naming it (champion, challenger)")
    parser.add_argument("--json", action="store_true", help="print the walk as JSON")
    args = parser.parse_args(argv)
    settings = load_settings()
    try:
        result = lineage_of_version(settings, args.version, args.alias)
    except NoLineage as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

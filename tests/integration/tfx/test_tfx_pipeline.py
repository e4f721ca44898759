"""The full TFX pipeline end to end: the taxi_tfx DAG through Airflow (`airflow dags test`, as
`make tfx-run` runs it), every component in the TFX runtime (Debian 13, tfx 1.21, built by
`scripts/tfx_runtime.sh build` when missing), on the session's stack (MLflow server, feature store)
and against a copy of the session's champion under a model name of its own.

Checked: each component ran and recorded its artifacts in ML Metadata; TFMA evaluated overall and
by hour and payment type and blessed the model; the native gates held it and MLflow registered it
as a challenger tagged with its ML Metadata ids; the lineage query (`make lineage VERSION=N`)
walks back to the examples, statistics, schema, transform graph and evaluation; the TFX and native
transform graphs give the same features on the same rows; anomalies fail like a GX gate.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import numpy as np
import pandas as pd
import pytest

from fixtures.env import REPO_ROOT
from fixtures.streams import environ
from fixtures.training import MODEL, mlflow_client, seed_champion

TFX_MODEL = f"{MODEL}_tfx"


@pytest.fixture(scope="module")
def tfx_runtime():
    """`make tfx-runtime`: built once per recipe and cached (/var/cache/chicago-taxi/tfx-runtime), then checked."""
    started = time.monotonic()
    proc = subprocess.run(["make", "-s", "tfx-runtime"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=2700)
    if proc.returncode != 0:
        pytest.fail(f"make tfx-runtime failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}", pytrace=False)
    assert "tfx 1.21.0, ml-metadata 1.21.0" in proc.stdout, proc.stdout[-2000:]
    print(f"\n[timing] make tfx-runtime (built or cached, then checked): {time.monotonic() - started:.1f} s", flush=True)


@pytest.fixture(scope="module")
def tfx_run(stack, first_run, tfx_runtime):
    """`make tfx-run` (taxi_features, then taxi_tfx through Airflow) on the same logical date, so
    the same rows, as the session's first taxi_training run; it registers into TFX_MODEL, whose
    champion is a copy of the session's."""
    tmp, env = stack
    seed_champion(stack, TFX_MODEL)
    started = time.time()
    proc = subprocess.run(
        ["make", "-s", "tfx-run", "RUN_DATE=2017-01-01"],
        env={**env, "TAXI_MODEL_NAME": TFX_MODEL},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    print(f"\n[timing] make tfx-run (taxi_features, then taxi_tfx): {time.time() - started:.1f} s\n{proc.stdout[-2500:]}", flush=True)
    reports = [p for p in (tmp / "logs" / "runs").glob("taxi_tfx__*.json") if p.stat().st_mtime >= started]
    assert reports, f"taxi_tfx left no report:\n{proc.stdout[-3000:]}"
    return json.loads(max(reports, key=lambda p: p.stat().st_mtime).read_text())


def test_every_component_ran_in_the_runtime_and_recorded_its_artifacts(tfx_run):
    from chicago_taxi.tfx_pipeline.layout import COMPONENTS

    for component in COMPONENTS:
        section = tfx_run[f"tfx_{component}"]
        # Each task executes its own component; the earlier ones come from ML Metadata's cache.
        assert section["state"] == "COMPLETE", (component, section)
        assert section["outputs"] and all(a["id"] > 0 and a["uri"] for arts in section["outputs"].values() for a in arts), section
    assert (
        tfx_run["prepare_examples"]["examples"]["train"] == tfx_run["join_store_features"]["rows"] - tfx_run["prepare_examples"]["examples"]["eval"]
    )
    assert tfx_run["tfx_example_validator"]["anomalies"] == {}
    evaluator = tfx_run["tfx_evaluator"]
    assert evaluator["blessed"] is True, evaluator
    assert evaluator["overall"]["examples"] == tfx_run["prepare_examples"]["examples"]["eval"]
    assert evaluator["overall"]["rmse"] <= tfx_run["prepare_examples"]["rmse_upper_bound"]
    assert tfx_run["tfx_pusher"]["pushed"] is True


def test_tfma_reports_overall_by_hour_and_by_payment_type(tfx_run, stack):
    from chicago_taxi.core.config import load_settings
    from chicago_taxi.tfx_pipeline.layout import TfxPaths

    _, env = stack
    with environ(env):
        settings = load_settings()
    report = json.loads(TfxPaths(settings.tfx_home).component_report(tfx_run["prepare_examples"]["run_key"], "evaluator").read_text())
    slices = {s["slice"]: s for s in report["evaluation"]["slices"]}
    hours = [name for name in slices if name.startswith("trip_start_hour=")]
    payments = [name for name in slices if name.startswith("payment_type=")]
    assert "overall" in slices and len(hours) >= 20 and "payment_type=Cash" in payments and "payment_type=Credit Card" in payments
    assert sum(slices[h]["examples"] for h in hours) == slices["overall"]["examples"]
    assert all(s["rmse"] is not None and s["rmse"] >= 0 for s in slices.values())


def test_the_blessed_model_passes_the_native_gates_and_is_registered_as_a_challenger(tfx_run, first_run, stack):
    import mlflow

    registered = tfx_run["register_tfx_model"]
    assert registered["blessed"] and registered["alias"] == "challenger", registered
    client = mlflow_client(stack)
    assert str(client.get_model_version_by_alias(TFX_MODEL, "challenger").version) == registered["version"]
    assert str(client.get_model_version_by_alias(TFX_MODEL, "champion").version) == "1"  # the champion stays
    tags = client.get_run(registered["run_id"]).data.tags
    assert tags["training_path"] == "tfx"
    for key, value in registered["mlmd"].items():
        assert tags[f"tfx.{key}"] == str(value)
    # The same training code, rows and seed as the native run: the same quality, give or take.
    native = first_run["evaluate"]["candidate"]["rmse"]
    assert abs(registered["candidate"]["rmse"] - native) <= 0.05 * native, (registered["candidate"], native)
    # The registered version serves like any other: the pyfunc answers fares for raw trips.
    holdout = pd.read_parquet(tfx_run["prepare_examples"]["holdout_raw"]).head(50)
    fares = mlflow.pyfunc.load_model(f"models:/{TFX_MODEL}/{registered['version']}").predict(holdout.drop(columns=["fare", "tips"]))
    assert len(fares) == 50 and np.isfinite(fares).all() and (np.asarray(fares) > 0).all()


def test_the_tfx_and_native_transform_graphs_give_the_same_features(tfx_run, first_run):
    from chicago_taxi.model.transform import TransformGraph

    tfx_dir = tfx_run["tfx_transform"]["outputs"]["transform_graph"][0]["uri"]
    native_dir = first_run["transform"]["transform_dir"]
    tfx_holdout = pd.read_parquet(tfx_run["prepare_examples"]["holdout_raw"])
    native_holdout = pd.read_parquet(first_run["transform"]["holdout_path"].replace("/transform/holdout", "/splits/holdout_raw.parquet"))
    # The same rows: same gate, same store features, same split by time.
    assert len(tfx_holdout) == len(native_holdout)
    assert (tfx_holdout["trip_start_timestamp"].to_numpy() == native_holdout["trip_start_timestamp"].to_numpy()).all()
    ours, theirs = TransformGraph(tfx_dir).transform(tfx_holdout), TransformGraph(native_dir).transform(tfx_holdout)
    assert set(ours) == set(theirs)
    differing = {}
    for name in ours:
        a, b = np.asarray(ours[name], dtype=float), np.asarray(theirs[name], dtype=float)
        worst = float(np.nanmax(np.abs(a - b))) if a.size else 0.0
        if worst > 1e-5 or not np.array_equal(np.isnan(a), np.isnan(b)):
            differing[name] = worst
    print(f"\n[tfx] {len(ours)} transformed features on {len(tfx_holdout)} holdout trips; differing: {differing}", flush=True)
    assert not differing, differing


def test_the_lineage_query_walks_back_from_a_registered_version(tfx_run, stack):
    """`make lineage VERSION=N` (the README's command), then the same as JSON."""
    _, env = stack
    version = tfx_run["register_tfx_model"]["version"]
    env = {**env, "TAXI_MODEL_NAME": TFX_MODEL}
    shown = subprocess.run(["make", "-s", "lineage", f"VERSION={version}"], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr[-3000:]
    print(f"\n{shown.stdout}", flush=True)
    from chicago_taxi.tfx_pipeline.layout import COMPONENTS

    for made_by in COMPONENTS:
        assert f" {made_by} " in shown.stdout, made_by
    walked = subprocess.run(
        ["python", "-m", "chicago_taxi.tfx_pipeline.lineage", "--version", version, "--json"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert walked.returncode == 0, walked.stderr[-3000:]
    result = json.loads(walked.stdout)
    by_type: dict[str, list[dict]] = {}
    for artifact in result["artifacts"]:
        by_type.setdefault(artifact["type"], []).append(artifact)
    ids = tfx_run["register_tfx_model"]["mlmd"]
    assert [a["id"] for a in by_type["Examples"]] == [ids["examples_artifact_id"]]
    assert [a["id"] for a in by_type["TransformGraph"]] == [ids["transform_graph_artifact_id"]]
    assert [a["id"] for a in by_type["Model"]] == [ids["model_artifact_id"]]
    assert [a["id"] for a in by_type["ModelEvaluation"]] == [ids["evaluation_artifact_id"]]
    assert [a["id"] for a in by_type["PushedModel"]] == [ids["pushed_model_artifact_id"]]
    assert len(by_type["ExampleStatistics"]) == 1 and len(by_type["ExampleAnomalies"]) == 1 and len(by_type["Schema"]) == 2
    assert all(a["produced_by"]["state"] == "COMPLETE" for a in result["artifacts"])
    # The champion (a native version) has no ML Metadata lineage, and says so.
    native = subprocess.run(["make", "-s", "lineage", "VERSION=1"], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert native.returncode != 0 and "was not trained by the TFX pipeline" in native.stderr, native.stderr[-2000:]


def test_anomalies_fail_the_run_like_a_gate_and_name_feature_and_anomaly(tfx_run, stack, tmp_path, trips):
    """Examples that break the curated schema (fares outside the gate's range: what a change to the
    GX suite would let through): ExampleValidator's task raises the quality-gate error, no retry."""
    from chicago_taxi.core import schema
    from chicago_taxi.core.config import load_settings
    from chicago_taxi.quality.gates import QualityGateError
    from chicago_taxi.tfx_pipeline.examples import write_examples
    from chicago_taxi.tfx_pipeline.layout import SCHEMA_RELATIVE, TfxPaths
    from chicago_taxi.tfx_pipeline.steps import run_component

    _, env = stack
    env = {**env, "TAXI_TFX_HOME": str(tmp_path / "tfx"), "TAXI_WORK_DIR": str(tmp_path / "var"), "TAXI_LOGS_DIR": str(tmp_path / "logs")}
    with environ(env):
        settings = load_settings()
    tfx, run_id = TfxPaths(settings.tfx_home), "anomalies"
    bad = trips.head(2000).copy()
    bad.loc[bad.index[:300], schema.LABEL] = 0.0
    write_examples(bad.iloc[:1500], bad.iloc[1500:], tfx.examples_dir(run_id))
    shutil.copyfile(REPO_ROOT / SCHEMA_RELATIVE, tfx.run_dir(run_id) / "schema.pbtxt")
    config = {
        "examples_dir": str(tfx.examples_dir(run_id)),
        "schema_file": str(tfx.run_dir(run_id) / "schema.pbtxt"),
        "pipeline_root": str(tfx.pipeline_root),
        "metadata": str(tfx.metadata),
        "pushed": str(tfx.pushed),
        "reports_dir": str(tfx.component_report(run_id, "x").parent),
        "epochs": 1,
        "seed": 0,
        "mse_upper_bound": None,
    }
    tfx.run_config(run_id).write_text(json.dumps(config))
    for component in ("example_gen", "statistics_gen", "schema_importer"):
        assert run_component(run_id, component, settings)["state"] == "COMPLETE"
    with pytest.raises(QualityGateError) as failed:
        run_component(run_id, "example_validator", settings)
    message = str(failed.value)
    print(f"\n[tfx] {message}", flush=True)
    assert "fare" in message and "Out-of-range" in message and "train" in message, message

"""Runtime side (Debian 13, tfx 1.21): build the taxi_tfx pipeline and run it up to one component.

    python -m chicago_taxi.tfx_pipeline.pipeline --config RUN_CONFIG.json --component NAME

Each Airflow task of taxi_tfx runs this for its own component: the pipeline's components up to and
including NAME, on TFX's LocalDagRunner with caching on, so the earlier ones are found in ML
Metadata (CACHED) and only NAME executes. Every execution and artifact is recorded in one ML
Metadata store (SQLite) for all runs, which is what the lineage query reads.

It writes a JSON report of NAME's execution (state, artifact ids and URIs, and what the component
found) to the run's components/ directory and prints it as its last line. Exit codes: 0 done,
3 the data failed a check (ExampleValidator's anomalies; the message names feature and anomaly),
anything else a failure to retry.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path

from chicago_taxi.core import schema
from chicago_taxi.tfx_pipeline.layout import COMPONENTS, PIPELINE_NAME, SLICE_FEATURES, SPLITS

log = logging.getLogger(__name__)
ANOMALIES_EXIT = 3
TRAINER_RUN_FN = "chicago_taxi.tfx_pipeline.trainer.run_fn"
PREPROCESSING_FN = "chicago_taxi.model.transform.preprocessing_fn"  # the native path's, not a copy


def eval_config(mse_upper_bound: float | None):
    """TFMA: the whole eval split and one slice per hour and per payment type; blessed when the
    mean squared error stays under the bound the host computed (tariff baseline and champion)."""
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.proto import config_pb2

    # The bound holds for the whole eval split (a plain `threshold` would hold every slice to it,
    # and an hour with a few odometer glitches is not a reason to refuse a model).
    thresholds = []
    if mse_upper_bound is not None and math.isfinite(mse_upper_bound):
        bound = config_pb2.MetricThreshold(value_threshold=config_pb2.GenericValueThreshold(upper_bound={"value": mse_upper_bound}))
        thresholds.append(config_pb2.PerSliceMetricThreshold(slicing_specs=[config_pb2.SlicingSpec()], threshold=bound))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_default", label_key=schema.LABEL, prediction_key=schema.LABEL)],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[f]) for f in SLICE_FEATURES],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(class_name="MeanAbsoluteError"),
                    tfma.MetricConfig(class_name="MeanSquaredError", per_slice_thresholds=thresholds),
                ]
            )
        ],
    )


def build(config: dict, upto: str):
    """The pipeline's components up to and including `upto`."""
    from tfx import v1 as tfx

    example_gen = tfx.components.ImportExampleGen(
        input_base=config["examples_dir"],
        input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name=s, pattern=f"{s}/*") for s in SPLITS]),
    ).with_id("example_gen")
    examples = example_gen.outputs["examples"]
    statistics_gen = tfx.components.StatisticsGen(examples=examples).with_id("statistics_gen")
    # Inferred from this run's statistics: recorded for comparison; the curated one is the contract.
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=False).with_id("schema_gen")
    schema_importer = tfx.components.ImportSchemaGen(schema_file=config["schema_file"]).with_id("schema_importer")
    curated = schema_importer.outputs["schema"]
    example_validator = tfx.components.ExampleValidator(statistics=statistics_gen.outputs["statistics"], schema=curated).with_id("example_validator")
    transform = tfx.components.Transform(
        examples=examples, schema=curated, preprocessing_fn=PREPROCESSING_FN, materialize=False, disable_statistics=True
    ).with_id("transform")
    trainer = tfx.components.Trainer(
        run_fn=TRAINER_RUN_FN,
        examples=examples,
        transform_graph=transform.outputs["transform_graph"],
        schema=curated,
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config={"epochs": int(config["epochs"]), "seed": int(config["seed"])},
    ).with_id("trainer")
    evaluator = tfx.components.Evaluator(
        examples=examples, model=trainer.outputs["model"], eval_config=eval_config(config.get("mse_upper_bound")), example_splits=["eval"]
    ).with_id("evaluator")
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config["pushed"])),
    ).with_id("pusher")
    components = [example_gen, statistics_gen, schema_gen, schema_importer, example_validator, transform, trainer, evaluator, pusher]
    assert [c.id for c in components] == list(COMPONENTS)
    return tfx.dsl.Pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=config["pipeline_root"],
        components=components[: COMPONENTS.index(upto) + 1],
        enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(config["metadata"]),
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"],
    )


def metadata_store(path: str):
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(connection)


STATES = {0: "UNKNOWN", 1: "NEW", 2: "RUNNING", 3: "COMPLETE", 4: "FAILED", 5: "CACHED", 6: "CANCELED"}


def last_execution(store, component: str) -> dict:
    """The component's latest execution in this pipeline, with its output artifacts by key."""
    context = store.get_context_by_type_and_name("node", f"{PIPELINE_NAME}.{component}")
    if context is None:
        raise LookupError(f"ML Metadata has no node context {PIPELINE_NAME}.{component}")
    execution = max(store.get_executions_by_context(context.id), key=lambda e: e.id)
    outputs: dict[str, list[dict]] = {}
    events = [e for e in store.get_events_by_execution_ids([execution.id]) if e.type == e.OUTPUT]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    types = {t.id: t.name for t in store.get_artifact_types()}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else "output"
        artifact = artifacts[event.artifact_id]
        outputs.setdefault(key, []).append({"id": artifact.id, "type": types.get(artifact.type_id), "uri": artifact.uri})
    return {
        "component": component,
        "execution_id": execution.id,
        "state": STATES.get(execution.last_known_state, str(execution.last_known_state)),
        "outputs": outputs,
    }


def anomalies(uri: str) -> dict[str, dict[str, str]]:
    """ExampleValidator's findings per split: feature -> anomaly (short description: details)."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    found = {}
    for split in SPLITS:
        path = Path(uri) / f"Split-{split}" / "SchemaDiff.pb"
        if not path.exists():
            continue
        parsed = anomalies_pb2.Anomalies()
        parsed.ParseFromString(path.read_bytes())
        per_feature = {name: f"{info.short_description}: {info.description}" for name, info in parsed.anomaly_info.items()}
        if parsed.HasField("dataset_anomaly_info") and parsed.dataset_anomaly_info.reason:
            per_feature["(dataset)"] = "; ".join(r.short_description for r in parsed.dataset_anomaly_info.reason)
        if per_feature:
            found[split] = per_feature
    return found


def evaluation(uri: str, blessing_uri: str) -> dict:
    """TFMA's metrics, overall and per slice (RMSE from the mean squared error), and the blessing."""
    import tensorflow_model_analysis as tfma

    result = tfma.load_eval_result(uri)
    slices = []
    for slice_key, metrics in result.slicing_metrics:
        values = {}
        for per_output in metrics.values():
            for per_class in per_output.values():
                for name, value in per_class.items():
                    number = value.get("doubleValue")
                    if number is not None:
                        values[name] = number
        name = "overall" if not slice_key else ", ".join(f"{k}={_shown(v)}" for k, v in slice_key)
        slices.append(
            {
                "slice": name,
                "examples": int(values.get("example_count", 0)),
                "rmse": round(math.sqrt(values["mean_squared_error"]), 4) if "mean_squared_error" in values else None,
                "mae": round(values["mean_absolute_error"], 4) if "mean_absolute_error" in values else None,
            }
        )
    blessed = (Path(blessing_uri) / "BLESSED").exists()
    overall = next((s for s in slices if s["slice"] == "overall"), None)
    failures = []
    try:
        validation = tfma.load_validation_result(uri)
        for failed in validation.metric_validations_per_slice:
            for f in failed.failures:
                failures.append(
                    f"{f.metric_key.name} {f.metric_value.double_value.value:.4f} is over its bound" + (f": {f.message}" if f.message else "")
                )
    except Exception as exc:  # noqa: BLE001  (reported, not fatal: the blessing file decides)
        failures.append(f"validation result unreadable: {exc}")
    slices.sort(key=lambda s: (s["slice"] != "overall", s["slice"].split("=")[0], _number_or_text(s["slice"].split("=")[-1])))
    return {"blessed": blessed, "overall": overall, "failures": failures, "slices": slices}


def _number_or_text(value: str):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _shown(value) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def summarize(config: dict, component: str) -> dict:
    store = metadata_store(config["metadata"])
    report = last_execution(store, component)
    outputs = report["outputs"]
    if component == "example_validator":
        report["anomalies"] = anomalies(outputs["anomalies"][0]["uri"])
    elif component == "evaluator":
        report["evaluation"] = evaluation(outputs["evaluation"][0]["uri"], outputs["blessing"][0]["uri"])
        report["mse_upper_bound"] = config.get("mse_upper_bound")
    elif component == "pusher":
        pushed = store.get_artifacts_by_id([outputs["pushed_model"][0]["id"]])[0]
        props = pushed.custom_properties
        report["pushed"] = bool(props["pushed"].int_value) if "pushed" in props else False
        report["pushed_destination"] = props["pushed_destination"].string_value if "pushed_destination" in props else None
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the run's run_config.json (written by the host's prepare_examples)")
    parser.add_argument("--component", required=True, choices=COMPONENTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = json.loads(Path(args.config).read_text())
    from tfx import v1 as tfx

    log.info("taxi_tfx: running the pipeline up to %s (earlier components come from the cache)", args.component)
    tfx.orchestration.LocalDagRunner().run(build(config, args.component))
    report = summarize(config, args.component)
    out = Path(config["reports_dir"]) / f"{args.component}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    code = 0
    if report.get("anomalies"):
        lines = [f"{split}: {feature}: {what}" for split, found in report["anomalies"].items() for feature, what in found.items()]
        print("ExampleValidator found anomalies against the curated schema:\n  " + "\n  ".join(lines), file=sys.stderr)
        code = ANOMALIES_EXIT
    print(json.dumps(report))
    return code


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # tf.Transform's Beam pipeline can crash the interpreter at exit (seen with tfx 1.21): leave now.
    os._exit(code)

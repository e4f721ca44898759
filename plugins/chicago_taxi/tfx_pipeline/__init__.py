"""The full TFX pipeline, run from Airflow in its own Debian 13 runtime (scripts/tfx_runtime.sh).

Two sides, one package:
- host (the Airflow venv, no `tfx`): `examples` writes the rows the raw GX gate passed as
  tf.Examples and the curated schema, `steps` are the taxi_tfx DAG's tasks (each component task
  launches the runtime), holds the TFX-trained model to the native gates and registers it in
  MLflow; `lineage` answers "where did this model version come from";
- runtime (`tfx` 1.21, ML Metadata): `pipeline` builds and runs the components, `trainer` is the
  Trainer's run_fn, `mlmd` walks ML Metadata.
`layout` is shared: the component order and where everything lives.
"""

"""taxi_tfx: the full TFX pipeline, each component a task, run in the TFX runtime (Debian 13, tfx 1.21).

raw Chicago trips -> GX gate -> Feast point-in-time features (the training DAG's own steps) ->
tf.Examples + the curated schema -> ImportExampleGen -> StatisticsGen -> SchemaGen (inferred, for
comparison) -> ImportSchemaGen (expectations/tfx/schema.pbtxt) -> ExampleValidator (anomalies
fail the run, naming feature and anomaly) -> Transform (the project's preprocessing_fn) -> Trainer
(the project's Keras model) -> Evaluator (TFMA: overall, by hour, by payment type; blessed
against the tariff baseline and the champion) -> Pusher -> the native gates and MLflow (a
challenger, tagged with its ML Metadata ids; `make lineage VERSION=N` reads them back).

Schedule: none (trigger it from the UI or `airflow dags trigger taxi_tfx`); the native
taxi_training DAG stays the scheduled path. Needs the runtime where the component tasks run:
`make tfx-runtime` (root) natively; in a deployment they go to the TFX image's workers (the
`tfx` Celery queue, or the KubernetesExecutor's pod override: chicago_taxi.tfx_pipeline.placement).
Every task is one step function of the library; heavy imports happen inside the steps.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import chain, dag

from chicago_taxi.ingest.extract import extract
from chicago_taxi.orchestration.tasks import extract_task, step_task
from chicago_taxi.quality.steps import validate_raw
from chicago_taxi.tfx_pipeline.layout import COMPONENTS
from chicago_taxi.tfx_pipeline.placement import component_task_kwargs
from chicago_taxi.tfx_pipeline.steps import component_step, prepare_examples, register_tfx_model
from chicago_taxi.training.steps import join_store_features

NAMESPACE = "taxi_tfx"
DEFAULT_ARGS = {"owner": "mlops", "retries": 1, "retry_delay": timedelta(seconds=30)}


@dag(
    dag_id="taxi_tfx",
    schedule=None,
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["chicago-taxi", "training", "tfx"],
    doc_md=__doc__,
)
def taxi_tfx():
    # Files under runs/taxi_tfx__<run id>: never the same directory as a taxi_training run.
    # The components run where the TFX runtime is: the tfx queue, or the TFX image's pods.
    on_tfx_worker = component_task_kwargs()
    chain(
        extract_task(extract, NAMESPACE)(),
        *(step_task(step, NAMESPACE)() for step in (validate_raw, join_store_features, prepare_examples)),
        *(step_task(component_step(name), NAMESPACE, **on_tfx_worker)() for name in COMPONENTS),
        step_task(register_tfx_model, NAMESPACE)(),
    )


taxi_tfx()

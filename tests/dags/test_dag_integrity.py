"""DAG integrity, parametrized by DAG file (the file path is the test id)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.env import REPO_ROOT

DAG_FILES = sorted((REPO_ROOT / "dags").glob("*.py"))
# The schedule each DAG documents in its docstring and the README.
DOCUMENTED_SCHEDULES = {
    "taxi_training": "0 0 * * * or asset:taxi_model_degraded,taxi_offline_store",  # "@daily" or either asset
    "taxi_features": "@daily",
    "feast_materialize_hourly": "0 * * * *",
    "feast_materialize_half_hourly": "*/30 * * * *",
    "taxi_stream": "asset:taxi_raw_data",
    "taxi_monitoring": "0 * * * *",
    "taxi_tfx": None,  # triggered by hand (UI or CLI)
}


def documented_schedule(dag) -> str | None:
    timetable = dag.timetable
    kind = type(timetable).__name__
    if kind in ("AssetTriggeredTimetable", "AssetOrTimeSchedule"):
        assets = "asset:" + ",".join(asset_names(timetable.asset_condition))
        return assets if kind == "AssetTriggeredTimetable" else f"{documented_schedule_of(timetable.timetable)} or {assets}"
    return dag.schedule if isinstance(dag.schedule, str) else documented_schedule_of(timetable)


def asset_names(condition) -> list[str]:
    """The names of the assets in a schedule's condition (one asset, or an any/all of several)."""
    objects = getattr(condition, "objects", None)
    return sorted(n for o in objects for n in asset_names(o)) if objects is not None else [condition.name]


def documented_schedule_of(timetable) -> str | None:
    return getattr(timetable, "_expression", None) or getattr(timetable, "expression", None)


REQUIRED_TAGS = {"chicago-taxi"}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


def _dags_of(dagbag, path: Path):
    return [d for d in dagbag.dags.values() if Path(d.fileloc).resolve() == path.resolve()]


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_dag_file_imports_without_errors(dagbag, path):
    errors = {k: v for k, v in dagbag.import_errors.items() if Path(k).resolve() == path.resolve()}
    assert not errors, errors
    assert _dags_of(dagbag, path), f"{path.name} defines no DAG"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_dag_has_owner_tags_retries_and_documented_schedule(dagbag, path):
    for dag in _dags_of(dagbag, path):
        assert REQUIRED_TAGS <= set(dag.tags), dag.dag_id
        assert dag.doc_md, f"{dag.dag_id} has no documentation"
        assert dag.dag_id in DOCUMENTED_SCHEDULES, f"{dag.dag_id}: document its schedule"
        assert documented_schedule(dag) == DOCUMENTED_SCHEDULES[dag.dag_id]
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag.dag_id}.{task.task_id} has no owner"
            assert task.retries >= 1, f"{dag.dag_id}.{task.task_id} has no retries"


def test_training_runs_after_the_features_dag_through_the_offline_store_asset(dagbag):
    """taxi_features' last task emits `taxi_offline_store`; taxi_training is scheduled on it (or its cron)."""
    (outlet,) = dagbag.dags["taxi_features"].task_dict["feast_apply"].outlets
    training = dagbag.dags["taxi_training"].timetable
    assert outlet.name == "taxi_offline_store"
    assert outlet.name in asset_names(training.asset_condition)


def test_monitoring_closes_the_loop_to_training_through_the_degraded_model_asset(dagbag):
    """taxi_monitoring emits `taxi_model_degraded` only from its retraining check (which skips
    when every figure is in bounds); taxi_training is scheduled on that asset as well."""
    from airflow.sdk import CronDataIntervalTimetable

    dag = dagbag.dags["taxi_monitoring"]
    assert isinstance(dag.timetable, CronDataIntervalTimetable) and dag.max_active_runs == 1
    emitting = {task.task_id: [o.name for o in task.outlets] for task in dag.tasks if task.outlets}
    assert emitting == {"request_retraining": ["taxi_model_degraded"]}
    assert dag.task_dict["monitor_window"].upstream_task_ids == {"land_logs"}
    assert dag.task_dict["monitor_window"].downstream_task_ids == {"request_retraining", "render_reports", "compare_variants"}
    assert dag.task_dict["compare_variants"].upstream_task_ids == {"monitor_window", "render_reports"}
    assert "taxi_model_degraded" in asset_names(dagbag.dags["taxi_training"].timetable.asset_condition)
    assert set(dag.params) == {"window_start", "window_end"}


def test_training_dag_runs_the_documented_steps_in_order(dagbag):
    dag = dagbag.dags["taxi_training"]
    order = ["extract", "validate_raw", "join_store_features", "transform", "validate_transformed", "train", "evaluate", "register", "build_bento"]
    for upstream, downstream in zip(order, order[1:]):
        assert dag.task_dict[upstream].downstream_task_ids == {downstream}


def test_dag_files_do_not_import_heavy_libraries_at_module_level():
    # Parsing stays fast: TensorFlow, pandas, GX, MLflow load inside tasks only.
    heavy = ("tensorflow", "pandas", "great_expectations", "mlflow", "bentoml", "apache_beam")
    for path in DAG_FILES:
        top_level = [line for line in path.read_text().splitlines() if line.startswith(("import ", "from "))]
        assert not [line for line in top_level if any(h in line for h in heavy)], path.name


def test_materialization_dags_come_from_one_factory_with_real_intervals(dagbag):
    from airflow.sdk import CronDataIntervalTimetable

    for cadence in ("hourly", "half_hourly"):
        dag = dagbag.dags[f"feast_materialize_{cadence}"]
        assert isinstance(dag.timetable, CronDataIntervalTimetable)
        assert cadence in dag.tags and list(dag.task_dict) == ["materialize_window"]


def test_stream_dag_is_woken_by_the_shared_stream_trigger_on_the_raw_topic(dagbag):
    """The wake-up must be the shared-stream trigger (commits after the event is stored), on its
    own consumer group with auto-commit off, and the DAG must start unpaused (else no watcher)."""
    import json
    import os

    from airflow.providers.apache.kafka.triggers.shared_stream import KafkaSharedStreamTrigger

    dag = dagbag.dags["taxi_stream"]
    (asset,) = dag.timetable.asset_condition.objects
    (watcher,) = asset.watchers
    assert isinstance(watcher.trigger, KafkaSharedStreamTrigger) and watcher.trigger.topics == ["taxi-raw-data"]
    classpath, _ = watcher.trigger.serialize()
    assert classpath == "chicago_taxi.orchestration.trigger.RawTripsWakeUpTrigger"
    extra = json.loads(os.environ[f"AIRFLOW_CONN_{watcher.trigger.kafka_config_id.upper()}"])["extra"]
    assert extra["enable.auto.commit"] == "false" and extra["group.id"] != os.environ.get("TAXI_STREAM_GROUP", "taxi-scoring")
    assert dag.is_paused_upon_creation is False and dag.max_active_runs == 1
    assert list(dag.task_dict) == ["drain_and_score"]


def test_stream_dag_maps_its_drain_over_the_scorers_when_scaled_out(monkeypatch):
    """TAXI_STREAM_SCORERS=3: one mapped drain task per scorer (the scorer index is what it maps
    over); the default is the single, unmapped task above."""
    import importlib.util

    monkeypatch.setenv("TAXI_STREAM_SCORERS", "3")
    spec = importlib.util.spec_from_file_location("taxi_stream_scaled", REPO_ROOT / "dags" / "taxi_stream.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.taxi_stream()
    (task,) = dag.task_dict.values()
    assert module.SCORERS == 3 and "MappedOperator" in type(task).__name__
    assert task.op_kwargs_expand_input.value == {"scorer": [0, 1, 2]}


def test_tfx_dag_sends_only_its_components_to_the_workers_with_the_runtime(dagbag):
    """taxi_tfx's component tasks take the `tfx` Celery queue (TAXI_TFX_QUEUE's default: the TFX
    image's workers, every native worker); the host-side steps stay on Airflow's default queue.
    Without TAXI_TFX_IMAGE (as here) no task carries a KubernetesExecutor pod override."""
    from airflow.configuration import conf

    from chicago_taxi.tfx_pipeline.layout import COMPONENTS

    dag = dagbag.dags["taxi_tfx"]
    queues = {task.task_id: task.queue for task in dag.tasks}
    assert {queues[name] for name in COMPONENTS} == {"tfx"}
    default = conf.get("operators", "default_queue")
    assert {q for task_id, q in queues.items() if task_id not in COMPONENTS} == {default} != {"tfx"}
    assert not [task.task_id for task in dag.tasks if task.executor_config]

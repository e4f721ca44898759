"""One Airflow stack for every test under tests/integration/monitoring (package scope), on the
session's trained model (its MLflow store) and Kafka broker, with monitoring stores, reports
and consumer groups of its own. The api-server serves the Monitoring page
(plugins/monitoring_ui.py) from those reports; the scheduler runs taxi_monitoring and
taxi_training, the only DAGs it parses (the stream DAG would compete with the tests' own scoring).

    def test_x(airflow_stack, monitoring_env, monitoring_reports_dir): ...

`monitoring_env` holds the variables a test's own monitoring rig must share with the stack
(stores, reports, the monitoring consumer group); `airflow_stack.start_seconds` its start time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chicago_taxi.ingest import topics
from fixtures.airflow import AirflowStack, dag_folder
from fixtures.streams import new_group

STACK_DAGS = ("taxi_monitoring.py", "taxi_training.py")


@pytest.fixture(scope="package")
def monitoring_env(stack, first_run, kafka_broker, tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("monitoring_stack")
    group = new_group(kafka_broker, "monitoring", topics.PREDICTIONS)
    new_group(kafka_broker, "", topics.RAW_TRIPS, group=f"{group}-labels")
    (tmp / "reports" / "monitoring").mkdir(parents=True)
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
        "TAXI_MONITORING_DIR": str(tmp / "var" / "monitoring"),
        "TAXI_MONITORING_REPORTS_DIR": str(tmp / "reports" / "monitoring"),
        "TAXI_MONITORING_GROUP": group,
    }


@pytest.fixture(scope="package")
def airflow_stack(stack, monitoring_env, tmp_path_factory):
    """A started AirflowStack (api-server, scheduler, dag-processor, triggerer on PostgreSQL),
    taxi_monitoring and taxi_training registered and unpaused; closed at the end."""
    _, session_env = stack
    tmp = tmp_path_factory.mktemp("monitoring_airflow")
    dags = dag_folder(tmp, STACK_DAGS)
    env = {
        **session_env,
        **monitoring_env,
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        # Unpaused with its daily cron, taxi_training would start today's run at once (a whole
        # training beside the tests, and with max_active_runs=1 the retrain would wait for it).
        "TAXI_TRAINING_CRON": "none",
    }
    airflow = AirflowStack(env)
    airflow.monitoring_reports_dir = Path(monitoring_env["TAXI_MONITORING_REPORTS_DIR"])
    try:
        airflow.start()
        print(f"\n[timing] monitoring airflow stack start (healthy): {airflow.start_seconds} s", flush=True)
        for dag_id in ("taxi_monitoring", "taxi_training"):
            airflow.wait_for_dag(dag_id)
            airflow.unpause(dag_id)
        yield airflow
    finally:
        airflow.close()


@pytest.fixture(scope="package")
def monitoring_reports_dir(airflow_stack) -> Path:
    """The reports directory the stack's Monitoring page reads (TAXI_MONITORING_REPORTS_DIR)."""
    return airflow_stack.monitoring_reports_dir

"""Orchestration: the only package that imports Airflow: the task glue the DAG files use
(`tasks`), the Kafka wake-up trigger of taxi_stream (`trigger`) and the SQLite metadata DB
settings (`db`)."""

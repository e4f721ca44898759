-- Run once by the postgres image, on an empty data volume (/docker-entrypoint-initdb.d).
-- POSTGRES_DB creates `airflow` (Airflow's metadata); this adds MLflow's tracking and registry store,
-- the same two databases scripts/postgres.sh creates natively.
CREATE DATABASE mlflow;

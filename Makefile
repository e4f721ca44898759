# Chicago Taxi MLOps platform. `make run` trains end to end; `make test` runs the tests.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV := source scripts/env.sh &&
VENV_STAMP := .venv/.installed-$(shell cat requirements.txt pyproject.toml | sha1sum | cut -c1-12)

help:
	@grep -E '^[a-z-]+:.*## ' Makefile | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV_STAMP): requirements.txt pyproject.toml
	@scripts/setup_venv.sh
	@touch $@

venv: $(VENV_STAMP) ## create .venv (Python 3.11) from the pinned requirements

init: venv ## prepare the embedded defaults: Airflow's SQLite DB, MLflow dir
	@$(ENV) scripts/init_airflow.sh

run: init ## build the feature store, then run the taxi_training DAG through Airflow and print the summary
	@$(ENV) scripts/run_dag.sh taxi_features $(RUN_DATE)
	@$(ENV) scripts/run_dag.sh taxi_training $(RUN_DATE)

materialize: init ## one run of each materialization DAG (online store: TAXI_ONLINE_STORE, default sqlite)
	@$(ENV) scripts/run_dag.sh feast_materialize_hourly $(RUN_DATE)
	@$(ENV) scripts/run_dag.sh feast_materialize_half_hourly $(RUN_DATE)

serve: init ## the prediction service on 127.0.0.1:3000 with Redis features (needs `make run` first)
	@export TAXI_ONLINE_STORE=redis && $(ENV) scripts/serve.sh

bench-serving: init ## BentoML service vs a bare uvicorn app and raw Redis, concurrency 1/8/32
	@export TAXI_ONLINE_STORE=redis && $(ENV) python benchmarks/bench_serving.py $(BENCH_ARGS)

bench-streaming: init ## Kafka -> prediction latency (warm loop and the taxi_stream DAG) and throughput vs bare consume loops
	@$(ENV) python benchmarks/bench_streaming.py $(BENCH_ARGS)

tfx-runtime: ## build (once, cached) and check the TFX runtime: Debian 13 + tfx 1.21 under bubblewrap (root)
	@scripts/tfx_runtime.sh build && scripts/tfx_runtime.sh check

tfx-run: init ## the full TFX pipeline (taxi_tfx DAG) through Airflow, components in the TFX runtime (root; built once), after the feature store
	@scripts/tfx_runtime.sh build
	@$(ENV) scripts/run_dag.sh taxi_features $(RUN_DATE)
	@$(ENV) scripts/run_dag.sh taxi_tfx $(RUN_DATE)

lineage: venv ## where a registered model version came from, from ML Metadata (VERSION=N, or ALIAS=challenger)
	@$(ENV) python -m chicago_taxi.tfx_pipeline.lineage $(if $(VERSION),--version $(VERSION),--alias $(or $(ALIAS),challenger))

services: venv ## start Redis (127.0.0.1:6379) and Kafka (127.0.0.1:9092, controller 9093) with the project's topics
	@scripts/redis.sh start
	@$(ENV) scripts/kafka.sh start && $(ENV) python -m chicago_taxi.ingest.topics create

services-stop: ## stop the services started by `make services`
	@scripts/kafka.sh stop
	@scripts/redis.sh stop

kafka: venv ## only Kafka (fetched from Maven Central into ~/.cache on first use) with the project's topics
	@$(ENV) scripts/kafka.sh start && $(ENV) python -m chicago_taxi.ingest.topics create

kafka-stop: ## stop Kafka
	@scripts/kafka.sh stop

replay: venv ## replay the sample onto taxi-raw-data (REPLAY_ARGS="--rate 20 --limit 200 --bad-share 0.05 [--legacy]")
	@$(ENV) python -m chicago_taxi.ingest.replay $(REPLAY_ARGS)

monitor: venv ## land the prediction log and labels, monitor a window now (MONITOR_ARGS="--last 60 [--compare]"); the taxi_monitoring DAG does this hourly
	@$(ENV) python -m chicago_taxi.monitoring $(or $(MONITOR_ARGS),--last 60)

predictions: venv ## follow taxi-predictions, dead letters and alerts from now on (start it before the replay; WATCH_ARGS=--from-beginning for all); Ctrl-C stops
	@$(ENV) python -m chicago_taxi.ingest.topics watch $(WATCH_ARGS)

backfill: venv ## backfill DAG from FROM to TO on the running stack (make airflow-ui), listing dates that already ran; REPROCESS=completed reruns them
	@export TAXI_AIRFLOW_DB=postgres && $(ENV) scripts/backfill.sh $(DAG) $(FROM) $(TO)

test: init ## run the whole pytest suite (starts what it needs: Redis, Kafka, PostgreSQL, Airflow, BentoML)
	@$(ENV) python -m pytest $(PYTEST_ARGS)

test-fast: init ## unit and DAG-integrity tests only (no service; about 2 minutes)
	@$(ENV) python -m pytest -m "unit or dags" $(PYTEST_ARGS)

lint: venv ## ruff: lint and format check of the whole tree (`make format` rewrites)
	@$(ENV) ruff check . && $(ENV) ruff format --check .

format: venv ## ruff: fix what is safe to fix and format the tree
	@$(ENV) ruff check --fix . && $(ENV) ruff format .

bench: init ## benchmark each training task on the full 15k trips
	@$(ENV) python benchmarks/bench_training.py

bench-scaling: init ## each training task at 15k, 150k and 1.5M resampled trips: wall time, peak memory, growth (BENCH_ARGS="--sizes 15000,150000")
	@$(ENV) python benchmarks/bench_scaling.py $(BENCH_ARGS)

bench-engines: init ## aggregates and training join on pandas vs Spark local[2] at 15k, 150k, 1.5M trips: time, peak memory, crossover
	@$(ENV) python benchmarks/bench_engines.py $(BENCH_ARGS)

bench-monitoring: init ## taxi_monitoring's window task on 10,000 predictions vs bare pandas figures
	@$(ENV) python benchmarks/bench_monitoring.py $(BENCH_ARGS)

bench-features: init ## Feast materialization and online lookups vs raw redis-py on a real Redis
	@$(ENV) python benchmarks/bench_feature_store.py

EXECUTOR ?= local
WORKERS ?= 2
airflow-ui: venv ## the live stack: MLflow server on 127.0.0.1:5000 and Airflow (UI, scheduler, DAG processor, triggerer) on 127.0.0.1:8080, both on PostgreSQL; EXECUTOR=celery WORKERS=2 adds Celery workers (broker: Redis db 1)
	@export TAXI_AIRFLOW_DB=postgres TAXI_MLFLOW=server TAXI_EXECUTOR=$(EXECUTOR) TAXI_CELERY_WORKERS=$(WORKERS) && $(ENV) scripts/postgres.sh start \
	  && { [ "$(EXECUTOR)" != celery ] || scripts/redis.sh start; } && $(ENV) scripts/mlflow_server.sh start \
	  && $(ENV) scripts/init_airflow.sh && $(ENV) scripts/airflow_stack.sh start

airflow-stop: ## stop the live stack started by airflow-ui (Airflow, the MLflow server, PostgreSQL)
	@export TAXI_AIRFLOW_DB=postgres && $(ENV) scripts/airflow_stack.sh stop && $(ENV) scripts/mlflow_server.sh stop && scripts/postgres.sh stop

mlflow-server: venv ## only the MLflow tracking server on 127.0.0.1:5000 (metadata in PostgreSQL, artifacts served over HTTP)
	@$(ENV) scripts/mlflow_server.sh start

mlflow-ui: venv ## MLflow UI on 127.0.0.1:5000 over the embedded SQLite store of `make run` (the live stack's server is its own UI)
	@export TAXI_MLFLOW=sqlite && $(ENV) mlflow ui --host 127.0.0.1 --port $${MLFLOW_PORT:-5000} --backend-store-uri "$$MLFLOW_TRACKING_URI"

deploy-check: venv ## static checks of the deployment files: compose schema and parity, Helm lint + Kubernetes schemas, the CI workflow (actionlint), yamllint
	@$(ENV) python -m pytest tests/unit/deploy $(PYTEST_ARGS)

suites: venv ## regenerate the GX suites and the TFX pipeline's curated schema under expectations/ from the schema module
	@$(ENV) python -m chicago_taxi.quality.suites write-suites
	@$(ENV) python -m chicago_taxi.tfx_pipeline.examples write-schema

clean: ## remove runtime state (Airflow DB, MLflow store, Bentos, run outputs, reports)
	rm -rf var mlflow reports logs

PHONY_EXTRA := tfx-runtime tfx-run lineage backfill serve bench-serving bench-features bench-streaming materialize services services-stop kafka kafka-stop replay predictions
.PHONY: $(PHONY_EXTRA) help venv init run test test-fast lint format bench airflow-ui airflow-stop mlflow-ui mlflow-server deploy-check suites clean monitor bench-monitoring bench-scaling bench-engines

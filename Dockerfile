# syntax=docker/dockerfile:1
# The project image: one image for every Airflow component, the MLflow tracking server, the
# kafka-init job and the prediction service of docker-compose.yaml (each service picks its own
# command; compose defines the health checks). Build: `docker compose build`.
FROM python:3.11-slim-bookworm

# The same uv as scripts/setup_venv.sh (requirements.txt pins it; tests/unit/deploy checks they agree).
ARG UV_VERSION=0.13.9

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_LINK_MODE=copy \
    HOME=/home/airflow \
    AIRFLOW_HOME=/opt/airflow \
    TAXI_REPO_ROOT=/opt/taxi \
    PYTHONPATH=/opt/taxi/plugins

# curl: the compose health checks; nothing else from Debian (every pinned wheel is manylinux).
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*

RUN --mount=type=cache,target=/root/.cache/pip pip install "uv==${UV_VERSION}"

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
# --compile-bytecode as in scripts/setup_venv.sh: every Airflow task process imports TensorFlow,
# Feast and GX, and starts twice as fast from compiled modules.
# EXTRA_REQUIREMENTS: more pinned requirements on top, e.g. deploy/requirements-kubernetes.txt
# (the KubernetesExecutor's and the FAB auth manager's providers, for the official Airflow chart).
ARG EXTRA_REQUIREMENTS=
COPY requirements.txt /opt/taxi/requirements.txt
COPY deploy/requirements-kubernetes.txt /opt/taxi/deploy/requirements-kubernetes.txt
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --system --compile-bytecode -r /opt/taxi/requirements.txt \
      ${EXTRA_REQUIREMENTS:+-r /opt/taxi/${EXTRA_REQUIREMENTS}}

# As the official Airflow image: user `airflow`, uid 50000, group 0, so any uid run with group 0
# (compose's `user: "${AIRFLOW_UID:-50000}:0"`) can write the state directories. Named volumes
# mounted on these directories start with their ownership.
RUN useradd --uid 50000 --gid 0 --home-dir /home/airflow --create-home --shell /bin/bash airflow \
    && mkdir -p /opt/airflow /opt/taxi/var /opt/taxi/logs /opt/taxi/reports /mlflow/artifacts \
    && chown -R 50000:0 /home/airflow /opt/airflow /opt/taxi/var /opt/taxi/logs /opt/taxi/reports /mlflow \
    && chmod -R g+rwX /home/airflow /opt/airflow /opt/taxi/var /opt/taxi/logs /opt/taxi/reports /mlflow

# The project, owned by root and read-only for the services (runtime state lives in the volumes above).
WORKDIR /opt/taxi
COPY pyproject.toml README.md ./
COPY plugins/ plugins/
COPY dags/ dags/
COPY bentos/ bentos/
COPY config/ config/
COPY feature_repo/ feature_repo/
COPY expectations/ expectations/
COPY data/ data/
COPY scripts/ scripts/
COPY deploy/compose/ deploy/compose/
# Editable, as scripts/setup_venv.sh installs it: `python -m chicago_taxi...` from any directory.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --system --no-deps --editable . \
    && python -m compileall -q plugins dags bentos feature_repo

USER 50000:0

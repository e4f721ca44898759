"""Configuration read from the environment, with the embedded defaults (one machine, no servers).

Every knob of the platform lives here, so a reader finds each environment variable in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).resolve() if value else default


def env_float(name: str, default: float) -> float:
    """A number from the environment; unset or empty gives `default`, anything else must parse."""
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from exc


def env_bool(name: str, default: bool) -> bool:
    """1/0, true/false, yes/no, on/off from the environment; unset or empty gives `default`."""
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"environment variable {name}={raw!r}: expected 1/0, true/false, on/off")


def _env_optional_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if raw in ("", "all", "none"):
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer or 'all'") from exc


@dataclass(frozen=True)
class Settings:
    repo_root: Path
    source_csv: Path
    work_dir: Path
    reports_dir: Path
    logs_dir: Path
    expectations_dir: Path
    bentos_dir: Path
    bentoml_home: Path
    mlflow_tracking_uri: str
    mlflow_artifacts_dir: Path
    model_name: str
    lookback_days: int | None
    holdout_fraction: float
    max_bad_row_share: float
    max_rmse_ratio_to_baseline: float
    epochs: int
    seed: int
    feature_repo: Path
    feast_dir: Path
    features_dir: Path
    online_store: str
    redis_address: str
    redis_timeout_seconds: float
    online_store_retry_seconds: float
    champion_poll_seconds: float
    replay_offset_days: float
    materialize_overlap_minutes: float
    monitoring_dir: Path  # the prediction and label stores, the retraining state
    monitoring_reports_dir: Path  # per-window Evidently HTML, window summaries, trend PNGs
    monitoring_config: Path  # thresholds and A/B settings (config/monitoring.yaml)
    tfx_home: Path  # the TFX path's ML Metadata store, pipeline root, pushed models, run inputs
    tfx_runtime_script: Path  # how the host launches the TFX runtime (scripts/tfx_runtime.sh)
    tfx_queue: str  # the Celery queue taxi_tfx's component tasks go to: the workers that have the runtime
    tfx_image: str | None  # the TFX image the KubernetesExecutor runs those tasks in (unset: no pod override)

    @property
    def runs_dir(self) -> Path:
        return self.work_dir / "runs"

    def data_time(self, wall_clock: datetime) -> datetime:
        """The trips' clock: wall-clock time minus the replay offset (trips are never shifted)."""
        if wall_clock.tzinfo is None:
            wall_clock = wall_clock.replace(tzinfo=UTC)
        # A plain datetime (Airflow hands over pendulum's, which pandas cannot compare).
        plain = datetime.fromtimestamp(wall_clock.timestamp(), tz=UTC)
        return plain - timedelta(days=self.replay_offset_days)

    def run_dir(self, run_id: str) -> Path:
        """Working directory of one pipeline run: raw zone, quarantine, transform, model."""
        return self.runs_dir / safe_run_id(run_id)


def safe_run_id(run_id: str) -> str:
    """An Airflow run id as a file name: what is not alphanumeric or -_. becomes _."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)


def load_settings() -> Settings:
    root = _env_path("TAXI_REPO_ROOT", REPO_ROOT)
    default_mlflow_db = root / "mlflow" / "mlflow.db"
    return Settings(
        repo_root=root,
        source_csv=_env_path("TAXI_SOURCE_CSV", root / "data" / "chicago_taxi_trips.csv"),
        work_dir=_env_path("TAXI_WORK_DIR", root / "var"),
        reports_dir=_env_path("TAXI_REPORTS_DIR", root / "reports"),
        logs_dir=_env_path("TAXI_LOGS_DIR", root / "logs"),
        expectations_dir=root / "expectations",
        bentos_dir=root / "bentos",
        bentoml_home=_env_path("BENTOML_HOME", root / "var" / "bentoml"),
        mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{default_mlflow_db}"),
        mlflow_artifacts_dir=_env_path("TAXI_MLFLOW_ARTIFACTS", root / "mlflow" / "artifacts"),
        model_name=os.environ.get("TAXI_MODEL_NAME", "chicago_taxi_fare"),
        lookback_days=_env_optional_int("TAXI_LOOKBACK_DAYS"),
        holdout_fraction=env_float("TAXI_HOLDOUT_FRACTION", 0.2),
        max_bad_row_share=env_float("TAXI_MAX_BAD_ROW_SHARE", 0.05),
        max_rmse_ratio_to_baseline=env_float("TAXI_MAX_RMSE_RATIO", 0.6),
        epochs=int(env_float("TAXI_EPOCHS", 40)),
        seed=int(env_float("TAXI_SEED", 42)),
        feature_repo=root / "feature_repo",
        feast_dir=_env_path("TAXI_FEAST_DIR", root / "var" / "feast"),
        features_dir=_env_path("TAXI_FEATURES_DIR", root / "var" / "features"),
        online_store=os.environ.get("TAXI_ONLINE_STORE", "sqlite"),
        redis_address=f"{os.environ.get('REDIS_HOST', '127.0.0.1')}:{os.environ.get('REDIS_PORT', '6379')}",
        # 2026-11-28 minus 3,650 days is 2016-11-30, inside the sample (which ends 2016-12-30).
        redis_timeout_seconds=env_float("TAXI_REDIS_TIMEOUT_SECONDS", 2.0),
        online_store_retry_seconds=env_float("TAXI_ONLINE_STORE_RETRY_SECONDS", 5.0),
        champion_poll_seconds=env_float("TAXI_CHAMPION_POLL_SECONDS", 30.0),
        replay_offset_days=env_float("TAXI_REPLAY_OFFSET_DAYS", 3650),
        materialize_overlap_minutes=env_float("TAXI_MATERIALIZE_OVERLAP_MINUTES", 15),
        monitoring_dir=_env_path("TAXI_MONITORING_DIR", root / "var" / "monitoring"),
        monitoring_reports_dir=_env_path("TAXI_MONITORING_REPORTS_DIR", root / "reports" / "monitoring"),
        monitoring_config=_env_path("TAXI_MONITORING_CONFIG", root / "config" / "monitoring.yaml"),
        tfx_home=_env_path("TAXI_TFX_HOME", _env_path("TAXI_WORK_DIR", root / "var") / "tfx"),
        tfx_runtime_script=_env_path("TAXI_TFX_RUNTIME_SCRIPT", root / "scripts" / "tfx_runtime.sh"),
        tfx_queue=os.environ.get("TAXI_TFX_QUEUE", "").strip() or "tfx",
        tfx_image=os.environ.get("TAXI_TFX_IMAGE", "").strip() or None,
    )


# ---------------------------------------------------------------- Kafka
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def kafka_bootstrap() -> str:
    """The broker address from KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092)."""
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP


def kafka_replication_factor() -> int:
    # One broker on the dev box and in CI; a real cluster sets KAFKA_REPLICATION_FACTOR=3.
    return int(env_float("KAFKA_REPLICATION_FACTOR", 1))


DEFAULT_STREAM_GROUP = "taxi-scoring"


@dataclass(frozen=True)
class StreamConfig:
    """The streaming knobs (environment variables, read at each call of `from_env`)."""

    group: str = DEFAULT_STREAM_GROUP  # TAXI_STREAM_GROUP
    use_gx: bool = False  # TAXI_STREAM_GX: 1 evaluates the row expectations with GX itself (same verdicts, ~20x the cost)
    max_bad_share: float = 0.2  # TAXI_STREAM_MAX_BAD_SHARE
    alert_min_messages: int = 5  # TAXI_STREAM_ALERT_MIN_MESSAGES
    kafka_timeout: float = 10.0  # TAXI_STREAM_KAFKA_TIMEOUT: metadata, offsets, flush, commit
    max_seconds: float = 120.0  # TAXI_STREAM_MAX_SECONDS: hard bound of the consume loop
    history: str | None = None  # TAXI_STREAM_HISTORY: CSV/Parquet of past trips; "none" = none
    log_retention_days: float = 7.0  # TAXI_STREAM_LOG_RETENTION_DAYS
    linger_seconds: float = 10.0  # TAXI_STREAM_LINGER_SECONDS: a drain waits this long for more
    max_run_seconds: float = 600.0  # TAXI_STREAM_MAX_RUN_SECONDS: one drain's bound
    # TAXI_STREAM_FUTURE_TOLERANCE_MINUTES: a trip may start at most this long after the data
    # time (clocks drift); a later start is dead-lettered.
    future_tolerance_minutes: float = 60.0
    # TAXI_STREAM_SCORERS: scorers running side by side in the group, each on its own set of the
    # raw topic's partitions (`kafka_io.partition_set`); the taxi_stream DAG maps its drain task
    # over them. More scorers than partitions leave the extra ones idle.
    scorers: int = 1

    @classmethod
    def from_env(cls) -> StreamConfig:
        return cls(
            group=os.environ.get("TAXI_STREAM_GROUP", "").strip() or DEFAULT_STREAM_GROUP,
            use_gx=env_bool("TAXI_STREAM_GX", False),
            max_bad_share=env_float("TAXI_STREAM_MAX_BAD_SHARE", 0.2),
            alert_min_messages=int(env_float("TAXI_STREAM_ALERT_MIN_MESSAGES", 5)),
            kafka_timeout=env_float("TAXI_STREAM_KAFKA_TIMEOUT", 10.0),
            max_seconds=env_float("TAXI_STREAM_MAX_SECONDS", 120.0),
            history=os.environ.get("TAXI_STREAM_HISTORY", "").strip() or None,
            log_retention_days=env_float("TAXI_STREAM_LOG_RETENTION_DAYS", 7.0),
            linger_seconds=env_float("TAXI_STREAM_LINGER_SECONDS", 10.0),
            max_run_seconds=env_float("TAXI_STREAM_MAX_RUN_SECONDS", 600.0),
            future_tolerance_minutes=env_float("TAXI_STREAM_FUTURE_TOLERANCE_MINUTES", 60.0),
            scorers=max(1, int(env_float("TAXI_STREAM_SCORERS", 1))),
        )


# ---------------------------------------------------------------- the BentoML service
@dataclass(frozen=True)
class ServeConfig:
    """The prediction service's process settings (bentos/service.py)."""

    model_tag: str | None  # TAXI_BENTO_MODEL_TAG: the model packed into a Bento, set by its build
    timeout_seconds: float  # TAXI_SERVE_TIMEOUT_SECONDS
    workers: int  # TAXI_SERVE_WORKERS
    threads: int  # TAXI_SERVE_THREADS
    # TAXI_SERVE_MAX_BODY_BYTES: a larger /predict or /predict_batch body gets a 413 (1,000
    # trips of the real sample take ~370 KB; 1 MiB leaves room for long company names).
    max_body_bytes: int = 1024 * 1024
    max_batch_trips: int = 1000  # TAXI_SERVE_MAX_BATCH_TRIPS: a longer /predict_batch gets a 400
    # TAXI_RELOAD_TOKEN: when set, POST /ops/reload needs `Authorization: Bearer <token>` (serving.access).
    reload_token: str | None = None
    # TAXI_SERVE_ACCESS_LOG: BentoML's access log line per request. Off by default: it costs about
    # a third of a single-trip request here, and every prediction is already in the prediction log.
    access_log: bool = False
    metrics: bool = True  # TAXI_SERVE_METRICS: BentoML's Prometheus /metrics
    # TAXI_SERVE_TRACING: OpenTelemetry spans for /predict and /predict_batch (BentoML's tracing
    # middleware is ~15% of a small request's CPU; no exporter is configured here by default).
    tracing: bool = False

    @classmethod
    def from_env(cls) -> ServeConfig:
        return cls(
            model_tag=os.environ.get("TAXI_BENTO_MODEL_TAG") or None,
            timeout_seconds=env_float("TAXI_SERVE_TIMEOUT_SECONDS", 5.0),
            workers=int(env_float("TAXI_SERVE_WORKERS", 1)),
            threads=int(env_float("TAXI_SERVE_THREADS", 2)),
            max_body_bytes=int(env_float("TAXI_SERVE_MAX_BODY_BYTES", 1024 * 1024)),
            max_batch_trips=int(env_float("TAXI_SERVE_MAX_BATCH_TRIPS", 1000)),
            reload_token=os.environ.get("TAXI_RELOAD_TOKEN") or None,
            access_log=env_bool("TAXI_SERVE_ACCESS_LOG", False),
            metrics=env_bool("TAXI_SERVE_METRICS", True),
            tracing=env_bool("TAXI_SERVE_TRACING", False),
        )


# ---------------------------------------------------------------- scoring and the training join
def choice_from_env(name: str, default: str, allowed: tuple[str, ...]) -> str:
    """One of `allowed` from the environment (case-insensitive); unset or empty gives `default`."""
    choice = os.environ.get(name, "").strip().lower() or default
    if choice not in allowed:
        raise ValueError(f"{name}={choice!r}: expected {' or '.join(allowed)}")
    return choice


def scorer_choice() -> str:
    """TAXI_SCORER: "auto" (default: the numpy path where the model allows it, else the traced
    TensorFlow graph) or "graph" (always the graph)."""
    return choice_from_env("TAXI_SCORER", "auto", ("auto", "graph"))


def historical_join_engine() -> str:
    """TAXI_HISTORICAL_JOIN: the training set's point-in-time join, "asof" (default: merge_asof
    over the offline store's files) or "feast" (Feast's get_historical_features)."""
    return choice_from_env("TAXI_HISTORICAL_JOIN", "asof", ("asof", "feast"))


# ---------------------------------------------------------------- scale-out: Spark and Beam runners
def offline_engine() -> str:
    """TAXI_OFFLINE_ENGINE: where the taxi_features aggregates and the training set's point-in-time
    join run: "pandas" (default: in the task's process) or "spark" (`features.spark_engine`, on the
    Spark master TAXI_SPARK_MASTER)."""
    return choice_from_env("TAXI_OFFLINE_ENGINE", "pandas", ("pandas", "spark"))


def spark_master() -> str:
    """TAXI_SPARK_MASTER: the Spark master URL (default local[*]: one JVM on this machine;
    local-cluster[N,cores,MB] starts N separate executor processes, spark://host:7077 a cluster)."""
    return os.environ.get("TAXI_SPARK_MASTER", "").strip() or "local[*]"


def beam_pipeline_args() -> list[str]:
    """TAXI_BEAM_OPTIONS: Beam pipeline options for the tf.Transform step, as on a command line
    (e.g. "--runner=FlinkRunner --flink_master=host:8081 --environment_type=LOOPBACK";
    docs/distributed-transform.md). Unset: Beam's in-process runner (FnApiRunner) with one worker,
    named explicitly: Beam 2.77's default DirectRunner first tries to download the Prism runner
    from GitHub and runs there when it can, so the default would depend on the network."""
    import shlex

    given = os.environ.get("TAXI_BEAM_OPTIONS", "").strip()
    return shlex.split(given) if given else ["--runner=FnApiRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"]


# ---------------------------------------------------------------- monitoring
DEFAULT_MONITORING_GROUP = "taxi-monitoring"


def monitoring_group() -> str:
    """TAXI_MONITORING_GROUP: the consumer group landing `taxi-predictions` (its labels group on
    `taxi-raw-data` is `<group>-labels`)."""
    return os.environ.get("TAXI_MONITORING_GROUP", "").strip() or DEFAULT_MONITORING_GROUP


def linked_ui_urls() -> dict[str, str]:
    """The UIs the Monitoring page links to: MLFLOW_UI_URL (default http://127.0.0.1:5000) and
    TAXI_SERVICE_URL, the prediction service (default http://127.0.0.1:3000)."""
    return {
        "mlflow": (os.environ.get("MLFLOW_UI_URL") or "http://127.0.0.1:5000").rstrip("/"),
        "service": (os.environ.get("TAXI_SERVICE_URL") or "http://127.0.0.1:3000").rstrip("/"),
    }


def training_cron() -> str | None:
    """TAXI_TRAINING_CRON: the training DAG's cron besides its assets (default "@daily");
    "none" schedules it on its assets only (a new offline store, a degraded model)."""
    raw = os.environ.get("TAXI_TRAINING_CRON", "").strip()
    if raw.lower() in ("none", "off"):
        return None
    return raw or "@daily"

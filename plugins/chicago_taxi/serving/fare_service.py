"""The prediction service's logic, framework-free: champion model from MLflow, online features
from Redis in Feast's layout, the transform and the model (in numpy, `model.fast_path`, held to
the saved graph; or the traced graph itself).

`bentos/service.py` (BentoML) and `benchmarks/bare_app.py` (plain uvicorn, the benchmark's floor)
both wrap one `FareService`, so they do exactly the same work per request.

Behaviour a caller can rely on:
- Every answer carries `input_warnings`: the repairs the transform graph made to the trip's
  inputs (`schema.REPAIRS`: zero seconds, an implausible speed, a point outside Chicago, ...).
- A batch is validated trip by trip (`predict_each`): a trip that cannot be interpreted gets an
  error entry in its place, the others are scored.
- Store features come from one online store read per request (single or batch: with Redis, one
  pipelined round trip in Feast's layout, `features.redis_reader`). A trip whose entity has
  no value, or a value past the view's TTL, is scored with the training defaults, and the
  answer names those features in `features_defaulted`.
- Redis down: the answer is still a fare, flagged `"degraded": true`, with every store feature
  defaulted. After a failure the store is not asked again for `online_store_retry_seconds`
  (so a dead Redis does not add its timeout to every request); then the next request tries
  again, and answers stop being degraded by themselves once Redis is back.
- The champion is re-resolved every `champion_poll_seconds` (and on `reload()`); a new version
  is loaded beside the old one and swapped in atomically, so requests never wait for a load.
  The challenger (the alias `@challenger` of the same model) is re-resolved with it when A/B is on.
- A/B (`config/monitoring.yaml` ab.mode, TAXI_AB_MODE; `core.monitoring_config`): "off", the
  champion answers every trip (the challenger is not even loaded); "shadow", the champion
  answers and the challenger is scored on the same trips; "split", the challenger answers
  `challenger_share` of trips chosen by trip id (`serving.routing.challenger_serves`: the same trip
  always goes to the same model, in the stream and in the HTTP service) and the other model is
  scored in shadow. So with A/B on both models are scored on every trip, with one store read;
  the answer names the model that answered (`model_name`, `model_version`, `variant`) and lists
  the shadow predictions in `shadow`. A/B is inactive (the champion answers, `health()["ab"]`
  says why) when no version holds `@challenger`, when it is the champion's version, or when the
  challenger cannot be loaded; a challenger that raises while scoring leaves the champion's answer.
- Answers carry `store_features`, the store values the model used (None where defaulted), for
  the prediction log (`monitoring.prediction_log`); the HTTP responses leave it and `shadow` out.
- `log_predictions` hands answers to the prediction log's publisher (when the service has one:
  the HTTP service does, the stream publishes its own records); it never raises.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from chicago_taxi.core import schema
from chicago_taxi.core.config import Settings, load_settings
from chicago_taxi.core.jsonable import now_ms
from chicago_taxi.core.monitoring_config import ABSettings, load_monitoring_config
from chicago_taxi.model.transform import raw_records_to_features
from chicago_taxi.serving.contract import check_trip
from chicago_taxi.serving.prediction_log import CHALLENGER, CHAMPION, SHADOW, PredictionLogPublisher, prediction_records
from chicago_taxi.serving.routing import challenger_serves

log = logging.getLogger(__name__)
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
# A challenger that keeps failing is logged at most this often.
CHALLENGER_ERROR_LOG_SECONDS = 30.0


@dataclass
class LoadedModel:
    predictor: object  # chicago_taxi.model.predictor.FarePredictor
    name: str
    version: str
    source: str  # "registry" or "bento"
    alias: str = CHAMPION_ALIAS
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "alias": self.alias, "source": self.source, "loaded_at": self.loaded_at}


def champion_version(settings: Settings) -> str:
    """The version `@champion` points at now; a clear error when there is none."""
    from chicago_taxi.training import registry

    registry.use_tracking_uri(settings.mlflow_tracking_uri)
    version = registry.champion_version(settings.model_name)
    if version is None:
        raise LookupError(
            f"no version of {settings.model_name} holds the alias @{CHAMPION_ALIAS} in {settings.mlflow_tracking_uri}: run the training DAG first"
        )
    return str(version.version)


def alias_version(settings: Settings, alias: str) -> str | None:
    """The version `@alias` points at now, None when no version holds it (or the model is not
    registered yet); a registry that cannot answer raises."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from chicago_taxi.training import registry

    registry.use_tracking_uri(settings.mlflow_tracking_uri)
    try:
        registered = MlflowClient().get_registered_model(settings.model_name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    version = registered.aliases.get(alias)
    return None if version is None else str(version)


def load_version(settings: Settings, version: str, alias: str) -> LoadedModel:
    """Registered `version` of the model, as a `FarePredictor` built from the version's artifacts
    (transform graph + Keras model) with this service's own code; `alias` is what it serves as.

    Not `mlflow.pyfunc.load_model`: it puts the code packed with the version first on
    `sys.path`, so a process that already imported `chicago_taxi` would mix two versions of it.
    """
    import mlflow

    from chicago_taxi.training import registry

    registry.use_tracking_uri(settings.mlflow_tracking_uri)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{settings.model_name}/{version}"))
    return LoadedModel(predictor_from_model_dir(local), settings.model_name, version, "registry", alias)


def load_champion(settings: Settings) -> LoadedModel:
    """The version `models:/<name>@champion` points at (see `load_version`)."""
    return load_version(settings, champion_version(settings), CHAMPION_ALIAS)


def load_challenger(settings: Settings, version: str) -> LoadedModel:
    """Version `version`, which holds `@challenger` (see `load_version`)."""
    return load_version(settings, version, CHALLENGER_ALIAS)


def predictor_from_model_dir(local: Path):
    """A `FarePredictor` from a local copy of a logged pyfunc (its MLmodel names the artifacts;
    with the numpy scorer bundle among them the model loads without TensorFlow)."""
    import yaml

    from chicago_taxi.model.predictor import MODEL_ARTIFACT, NUMPY_SCORER_ARTIFACT, TRANSFORM_ARTIFACT, FarePredictor

    spec = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]["artifacts"]
    bundle = spec.get(NUMPY_SCORER_ARTIFACT)  # versions logged before the bundle existed have none
    return FarePredictor(local / spec[TRANSFORM_ARTIFACT]["path"], local / spec[MODEL_ARTIFACT]["path"], local / bundle["path"] if bundle else None)


class OnlineStoreClient:
    """Online store reads with a circuit breaker: a failure opens it for `retry_seconds`.

    Redis is read directly in Feast's layout (`features.redis_reader`: one pipelined round trip,
    a twentieth of `get_online_features`' cost); the SQLite store through Feast."""

    def __init__(self, settings: Settings, store=None):
        from chicago_taxi.features.store import feature_store

        self.settings = settings
        self.store = store
        self.reader = None
        if settings.online_store == "redis":
            # Project and key serialization from feature_store.yaml: no FeatureStore, no `import feast` (~8 s).
            from chicago_taxi.features.redis_layout import redis_store_config
            from chicago_taxi.features.redis_reader import RedisFeatureReader

            if store is not None:
                project, version = store.config.project, store.config.entity_key_serialization_version
            else:
                config = redis_store_config(settings)
                project, version = config.project, config.serialization_version
            self.reader = RedisFeatureReader(self._fail_fast_redis_client(), project, version)
        elif store is None:
            self.store = feature_store(settings)
        self.retry_seconds = settings.online_store_retry_seconds
        self._down_until = 0.0
        self.last_error: str | None = None

    def _fail_fast_redis_client(self):
        """A client that gives up after one quick retry. redis-py's default (3 retries,
        exponential backoff from 1 s) makes one lookup against a down Redis take ~7 s, longer than
        the request timeout; the circuit breaker does the retrying."""
        from redis import Redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        host, port = self.settings.redis_address.rsplit(":", 1)
        timeout = self.settings.redis_timeout_seconds
        return Redis(host=host, port=int(port), socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 1))

    @property
    def address(self) -> str:
        return self.settings.redis_address if self.settings.online_store == "redis" else str(self.settings.feast_dir / "online.db")

    def lookup(self, trips: list[dict]) -> tuple[dict[str, np.ndarray] | None, list[list[str]] | None]:
        """Store features per trip (each feature an array, NaN where absent or expired) and the
        names each trip lacks, or (None, None) when the store cannot answer."""
        from chicago_taxi.features.aggregates import record_entity_keys
        from chicago_taxi.features.store import defaulted_features, online_features

        if time.monotonic() < self._down_until:
            return None, None
        data_now = self.settings.data_time(datetime.now(UTC))
        try:
            if self.reader is not None:
                values = self.reader.read(record_entity_keys(trips), data_now)
                defaulted = defaulted_features(values)
            else:
                frame, defaulted = online_features(self.store, pd.DataFrame.from_records(trips), data_now)
                values = {f: frame[f].to_numpy(dtype=np.float64) for f in schema.STORE_FEATURES}
        except Exception as exc:  # redis.ConnectionError, TimeoutError, sqlite errors: all mean "no store"
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._down_until = time.monotonic() + self.retry_seconds
            log.warning("online store %s failed (%s); answering with defaults for %.0f s", self.address, self.last_error, self.retry_seconds)
            return None, None
        if self.last_error is not None:
            log.info("online store %s answers again", self.address)
        self.last_error = None
        return values, defaulted

    def ping(self) -> bool:
        try:
            self.lookup([{"pickup_community_area": schema.MISSING_AREA_KEY, "company": schema.MISSING_COMPANY_KEY}])
        except Exception:  # pragma: no cover - lookup never raises
            return False
        return self.last_error is None and time.monotonic() >= self._down_until


class FareService:
    """Answers for trips (see the module docstring). `challenger`, `ab` and `publisher` default to
    the registry's `@challenger` (when A/B is on), `config/monitoring.yaml` and no prediction log."""

    def __init__(
        self,
        settings: Settings | None = None,
        model: LoadedModel | None = None,
        store: OnlineStoreClient | None = None,
        *,
        challenger: LoadedModel | None = None,
        ab: ABSettings | None = None,
        publisher: PredictionLogPublisher | None = None,
    ):
        self.settings = settings or load_settings()
        self.ab = ab or load_monitoring_config(self.settings.monitoring_config).ab
        champion = model or load_champion(self.settings)
        self.store = store or OnlineStoreClient(self.settings)
        self.publisher = publisher
        self._reload_lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self.last_reload_error: str | None = None
        self.challenger_note: str | None = None  # why there is no challenger, when resolving found none
        self.challenger_failures = 0  # batches the challenger raised on (the champion answered them)
        self.last_challenger_error: str | None = None
        self._challenger_logged_at = float("-inf")
        self.log_failures = 0  # log_predictions calls that raised (their records are counted lost)
        if challenger is None and self.ab.scores_challenger:
            challenger = self._resolve_challenger(champion, None)
        # Champion and challenger are swapped together, in one assignment: a batch reads one pair.
        self._models: tuple[LoadedModel, LoadedModel | None] = (champion, challenger)

    @property
    def model(self) -> LoadedModel:
        """The champion."""
        return self._models[0]

    @property
    def challenger(self) -> LoadedModel | None:
        return self._models[1]

    # ------------------------------------------------------------------ predictions
    def predict(self, trips: list[dict]) -> list[dict]:
        """Answers for validated trips (dicts of Chicago columns), in input order: the fare, the
        model that answered (`model_name`, `model_version`, `variant`), in `input_warnings` each
        repair the transform graph made to the trip's inputs, the store features used, and with
        A/B on the shadow prediction in `shadow`."""
        if not trips:
            return []
        champion, challenger = self._models  # one pair for the whole batch, even if a reload swaps it meanwhile
        store_values, defaulted = self.store.lookup(trips)
        degraded = store_values is None
        if degraded:
            store_values = {f: np.full(len(trips), np.nan) for f in schema.STORE_FEATURES}
            defaulted = [list(schema.STORE_FEATURES)] * len(trips)
        features = raw_records_to_features(trips, extra=store_values)
        fares, repairs = champion.predictor.predict_features(features)
        # With A/B on, the challenger scores the same inputs: same trips, same store features.
        other = self._score_challenger(challenger, features) if self._why_inactive(champion, challenger) is None else None
        used = store_features_used(store_values)
        answers = []
        for i, trip in enumerate(trips):
            served, fare, mask, shadow = champion, fares[i], repairs[i], None
            if other is not None:
                if self.ab.mode == "split" and challenger_serves(trip.get("trip_id"), self.ab.challenger_share):
                    served, fare, mask, shadow = challenger, other[0][i], other[1][i], (champion, fares[i])
                else:
                    shadow = (challenger, other[0][i])
            answer = {
                "fare": round(float(fare), 2),
                "model_name": served.name,
                "model_version": served.version,
                "variant": CHALLENGER if served is challenger else CHAMPION,
                "features_defaulted": defaulted[i],
                "input_warnings": [repair.warning() for repair in schema.repairs_of(mask)],
                "degraded": degraded,
                "store_features": used[i],
            }
            if shadow is not None:
                model, shadow_fare = shadow
                answer["shadow"] = [
                    {"fare": round(float(shadow_fare), 2), "model_name": model.name, "model_version": model.version, "variant": SHADOW}
                ]
            if trip.get("trip_id") is not None:
                answer["trip_id"] = trip["trip_id"]
            answers.append(answer)
        return answers

    def _score_challenger(self, challenger: LoadedModel, features: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
        """The challenger's fares and repairs, or None when it raises (the champion answers alone)."""
        try:
            return challenger.predictor.predict_features(features)
        except Exception as exc:  # noqa: BLE001 - a broken challenger must never cost an answer
            self.challenger_failures += 1
            self.last_challenger_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() - self._challenger_logged_at >= CHALLENGER_ERROR_LOG_SECONDS:
                self._challenger_logged_at = time.monotonic()
                log.warning(
                    "challenger version %s failed to score a batch of %d (%d batch(es) so far): %s; the champion answered alone",
                    challenger.version,
                    len(features["trip_miles"]),
                    self.challenger_failures,
                    self.last_challenger_error,
                )
            return None

    def predict_each(self, items: list[dict], *, log_endpoint: str | None = None) -> list[dict]:
        """Answers for raw trips (JSON objects), each validated on its own, in input order: the
        answer of `predict`, or for a trip that cannot be interpreted its error entry
        {"index", "trip_id", "errors"}; the valid trips are scored together. With `log_endpoint`
        the scored trips go to the prediction log (`log_predictions`)."""
        received = now_ms()
        checked = [check_trip(index, item) for index, item in enumerate(items)]
        valid = [trip for trip, _ in checked if trip is not None]
        scored = self.predict(valid)
        if log_endpoint is not None:
            self.log_predictions(valid, scored, log_endpoint, received_ms=received)
        answers = iter(scored)
        return [next(answers) if trip is not None else error for trip, error in checked]

    def log_predictions(self, trips: list[dict], answers: list[dict], endpoint: str, received_ms: int | None = None) -> int:
        """Hand the answers of `trips` (as scored) to the prediction log; returns the records queued.
        Never raises: a failure is counted (records lost) and logged by the publisher."""
        publisher = self.publisher
        if publisher is None or not publisher.enabled or not answers:
            return 0
        try:
            scored_ms = now_ms()
            source = {"kind": "http", "endpoint": endpoint}
            records = [
                record
                for trip, answer in zip(trips, answers, strict=True)
                for record in prediction_records(trip, answer, source=source, scored_ms=scored_ms, produced_ms=received_ms)
            ]
            return publisher.publish(records)
        except Exception as exc:  # noqa: BLE001 - monitoring data must never fail a request
            self.log_failures += 1
            publisher.record_lost(sum(1 + len(a.get("shadow", [])) for a in answers), f"building the records failed: {type(exc).__name__}: {exc}")
            return 0

    # ------------------------------------------------------------------ champion and challenger
    def reload(self) -> dict:
        """Re-resolve `@champion` (and `@challenger` when A/B is on); load what moved beside the
        models in use, then swap both at once. Safe to call from any thread."""
        with self._reload_lock:
            champion, challenger = self._models
            before, challenger_before = champion.version, challenger.version if challenger else None
            try:
                current = champion_version(self.settings)
                if current != before:
                    log.info("champion moved from version %s to %s: loading", before, current)
                    champion = load_champion(self.settings)
                    log.info("now serving %s version %s", champion.name, champion.version)
                self.last_reload_error = None
            except Exception as exc:  # the registry is down or the version is broken: keep serving
                self.last_reload_error = f"{type(exc).__name__}: {exc}"
                log.warning("champion reload failed, still serving version %s: %s", before, self.last_reload_error)
            if self.ab.scores_challenger:
                challenger = self._resolve_challenger(champion, challenger)
            self._models = (champion, challenger)
            return {
                "previous_version": before,
                "version": champion.version,
                "changed": champion.version != before,
                "error": self.last_reload_error,
                "challenger": {
                    "previous_version": challenger_before,
                    "version": challenger.version if challenger else None,
                    "changed": (challenger.version if challenger else None) != challenger_before,
                    "why_inactive": self._why_inactive(champion, challenger),
                },
            }

    def _resolve_challenger(self, champion: LoadedModel, current: LoadedModel | None) -> LoadedModel | None:
        """The model `@challenger` points at now: `current` when it did not move (or the registry
        cannot say), newly loaded when it did, None when no version holds the alias or it is the
        champion's version (`challenger_note` says why)."""
        name = self.settings.model_name
        try:
            version = alias_version(self.settings, CHALLENGER_ALIAS)
        except Exception as exc:  # the registry is down: keep what we have
            self.challenger_note = f"the registry could not resolve @{CHALLENGER_ALIAS}: {type(exc).__name__}: {exc}"
            log.warning("%s; keeping challenger %s", self.challenger_note, current.version if current else "none")
            return current
        if version is None:
            self.challenger_note = f"no version of {name} holds the alias @{CHALLENGER_ALIAS}"
            if current is not None:
                log.info("%s any more: A/B inactive", self.challenger_note)
            return None
        if version == champion.version:
            self.challenger_note = f"@{CHALLENGER_ALIAS} is version {version}, the champion itself"
            return None
        if current is not None and current.version == version:
            self.challenger_note = None
            return current
        try:
            log.info("challenger is version %s of %s: loading", version, name)
            loaded = load_challenger(self.settings, version)
        except Exception as exc:  # a broken version: A/B stays off rather than failing the service
            self.challenger_note = f"challenger version {version} could not be loaded: {type(exc).__name__}: {exc}"
            log.warning("%s; A/B inactive, the champion answers", self.challenger_note)
            return None
        self.challenger_note = None
        log.info("challenger version %s loaded (A/B mode %s, share %g)", version, self.ab.mode, self.ab.challenger_share)
        return loaded

    def _why_inactive(self, champion: LoadedModel, challenger: LoadedModel | None) -> str | None:
        """Why the challenger is not scored (None: it is)."""
        if not self.ab.scores_challenger:
            return "A/B mode is off (config/monitoring.yaml ab.mode or TAXI_AB_MODE)"
        if challenger is None:
            return self.challenger_note or f"no version of {self.settings.model_name} holds the alias @{CHALLENGER_ALIAS}"
        if challenger.version == champion.version:
            return f"@{CHALLENGER_ALIAS} is version {challenger.version}, the champion itself"
        return None

    def start_polling(self) -> None:
        interval = self.settings.champion_poll_seconds
        if interval <= 0 or self._poller is not None:
            return

        def loop():
            while not self._stop.wait(interval):
                self.reload()

        self._poller = threading.Thread(target=loop, name="champion-poller", daemon=True)
        self._poller.start()

    def stop_polling(self) -> None:
        self._stop.set()

    def close(self, timeout: float = 5.0) -> None:
        """Stop polling and flush the prediction log (records still queued after `timeout` are lost)."""
        self.stop_polling()
        if self.publisher is not None:
            self.publisher.close(timeout)

    # ------------------------------------------------------------------ health
    def health(self) -> dict:
        champion, challenger = self._models
        store_ok = self.store.ping()
        why_inactive = self._why_inactive(champion, challenger)
        health = {
            "status": "ok" if store_ok else "degraded",
            "model": champion.describe(),
            "champion_poll_seconds": self.settings.champion_poll_seconds,
            "last_reload_error": self.last_reload_error,
            "online_store": {"type": self.settings.online_store, "address": self.store.address, "ok": store_ok, "error": self.store.last_error},
            "replay_offset_days": self.settings.replay_offset_days,
            "ab": {
                "mode": self.ab.mode,
                "challenger_share": self.ab.challenger_share,
                "active": why_inactive is None,
                "why_inactive": why_inactive,
                "challenger": challenger.describe() if challenger else None,
                "challenger_failures": self.challenger_failures,
                "last_challenger_error": self.last_challenger_error,
            },
        }
        if self.publisher is not None:
            health["prediction_log"] = {**self.publisher.stats(), "build_failures": self.log_failures}
        return health


def store_features_used(store_values: dict[str, np.ndarray]) -> list[dict]:
    """Per trip, each store feature's value as the model was given it; None where the store had
    none (the model filled the training default)."""
    columns = list(schema.STORE_FEATURES)
    values = np.stack([np.asarray(store_values[f], dtype=float) for f in columns], axis=1)
    integral = [schema.FEATURE_SPECS[f].dtype == "int64" for f in columns]
    return [{f: None if v != v else int(v) if is_int else v for f, v, is_int in zip(columns, row, integral)} for row in values.tolist()]

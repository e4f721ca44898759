"""The monitoring thresholds and A/B settings from `config/monitoring.yaml` (see the comments
there for what each one means), with the A/B mode and share overridable from the environment."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from chicago_taxi.core.config import env_float, load_settings

AB_MODES = ("off", "shadow", "split")


@dataclass(frozen=True)
class QualityThresholds:
    mae_ratio_max: float = 1.5
    clean_rmse_ratio_max: float = 1.75
    abs_bias_max: float = 2.0


@dataclass(frozen=True)
class DriftThresholds:
    psi_max: float = 0.25
    prediction_psi_max: float = 0.25
    min_rows: int = 100
    bins: int = 10


@dataclass(frozen=True)
class RetrainingSettings:
    cooldown_hours: float = 24.0


@dataclass(frozen=True)
class ABSettings:
    mode: str = "off"
    challenger_share: float = 0.1
    min_labelled_pairs: int = 200
    confidence: float = 0.95
    bootstrap_resamples: int = 2000
    seed: int = 0
    lookback_hours: float = 24.0

    def __post_init__(self):
        if self.mode not in AB_MODES:
            raise ValueError(f"ab.mode {self.mode!r}: expected one of {AB_MODES}")
        if not 0.0 <= self.challenger_share <= 1.0:
            raise ValueError(f"ab.challenger_share {self.challenger_share}: expected a share within [0, 1]")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"ab.confidence {self.confidence}: expected within [0.5, 1)")

    @property
    def scores_challenger(self) -> bool:
        return self.mode != "off"


@dataclass(frozen=True)
class MonitoringConfig:
    min_labelled: int = 100
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    drift: DriftThresholds = field(default_factory=DriftThresholds)
    retraining: RetrainingSettings = field(default_factory=RetrainingSettings)
    ab: ABSettings = field(default_factory=ABSettings)
    source: str = "defaults"

    def as_dict(self) -> dict:
        return asdict(self)


def _section(cls, values: dict | None, where: str):
    values = values or {}
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected {sorted(known)}")
    typed = {}
    for key, value in values.items():
        kind = type(known[key].default)
        try:
            typed[key] = kind(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}.{key}: {value!r} is not a {kind.__name__}") from exc
    return cls(**typed)


def load_monitoring_config(path: Path | str | None = None) -> MonitoringConfig:
    """The config file (default: settings.monitoring_config), then TAXI_AB_MODE and
    TAXI_AB_CHALLENGER_SHARE from the environment. A missing file gives the defaults above;
    an unknown key or a bad value is an error naming it."""
    import yaml

    path = Path(path) if path else load_settings().monitoring_config
    raw = yaml.safe_load(path.read_text()) if path.exists() else {}
    raw = raw or {}
    where = str(path)
    top = {k: v for k, v in raw.items() if k not in ("quality", "drift", "retraining", "ab")}
    unknown = sorted(set(top) - {"min_labelled"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}")
    ab = dict(raw.get("ab") or {})
    if os.environ.get("TAXI_AB_MODE", "").strip():
        ab["mode"] = os.environ["TAXI_AB_MODE"].strip().lower()
    if os.environ.get("TAXI_AB_CHALLENGER_SHARE", "").strip():
        ab["challenger_share"] = env_float("TAXI_AB_CHALLENGER_SHARE", 0.1)
    return MonitoringConfig(
        min_labelled=int(top.get("min_labelled", 100)),
        quality=_section(QualityThresholds, raw.get("quality"), f"{where}: quality"),
        drift=_section(DriftThresholds, raw.get("drift"), f"{where}: drift"),
        retraining=_section(RetrainingSettings, raw.get("retraining"), f"{where}: retraining"),
        ab=_section(ABSettings, ab, f"{where}: ab"),
        source=where if path.exists() else "defaults",
    )

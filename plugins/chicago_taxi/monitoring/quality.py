"""Model quality in a monitoring window: the figures of the predictions whose fare is known.

Only labels within `columns.LABEL_RANGE` are judged (the fares training keeps: a $0 or $700
meter reading is not a price the model should be held to). "Clean" trips are those the
service repaired nothing in (`INPUT_WARNINGS` empty), the same split as the training holdout's,
so a window's figures compare with the model's own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from chicago_taxi.core import monitoring_schema as C

GROUP_KEYS = (C.MODEL_NAME, C.MODEL_VERSION, C.VARIANT)


@dataclass(frozen=True)
class QualityFigures:
    """Errors of `count` labelled predictions (error = prediction - fare), and of the clean ones."""

    count: int
    rmse: float
    mae: float
    r2: float | None  # None for fewer than 2 rows or fares without variance
    bias: float  # mean error: > 0 when the model overprices
    clean_count: int
    clean_rmse: float | None  # None without clean trips
    clean_mae: float | None

    def as_dict(self) -> dict:
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(self).items()}


def usable_label(frame: pd.DataFrame) -> pd.Series:
    """True for rows whose label is known and within LABEL_RANGE (inclusive)."""
    low, high = C.LABEL_RANGE
    label = pd.to_numeric(frame[C.LABEL], errors="coerce")
    return label.between(low, high, inclusive="both")


def is_clean(frame: pd.DataFrame) -> pd.Series:
    """True for trips the service repaired nothing in (no input warning)."""
    warnings = frame[C.INPUT_WARNINGS]
    return warnings.isna() | (warnings.astype(str).str.strip() == "")


def quality_figures(frame: pd.DataFrame) -> QualityFigures | None:
    """The quality of the rows of `frame` with a usable label; None when there is none."""
    usable = usable_label(frame).to_numpy()
    if not usable.any():
        return None
    label = pd.to_numeric(frame[C.LABEL], errors="coerce").to_numpy(dtype=float)[usable]
    prediction = pd.to_numeric(frame[C.PREDICTION], errors="coerce").to_numpy(dtype=float)[usable]
    clean = is_clean(frame).to_numpy()[usable]
    errors = prediction - label
    total = float(np.sum((label - label.mean()) ** 2))
    r2 = 1.0 - float(np.sum(errors**2)) / total if len(label) >= 2 and total > 0 else None
    clean_errors = errors[clean]
    has_clean = len(clean_errors) > 0
    return QualityFigures(
        count=int(len(label)),
        rmse=float(np.sqrt(np.mean(errors**2))),
        mae=float(np.mean(np.abs(errors))),
        r2=r2,
        bias=float(np.mean(errors)),
        clean_count=int(len(clean_errors)),
        clean_rmse=float(np.sqrt(np.mean(clean_errors**2))) if has_clean else None,
        clean_mae=float(np.mean(np.abs(clean_errors))) if has_clean else None,
    )


def _no_figures() -> dict:
    """The figure keys of a group without a usable label: counts 0, figures None."""
    return {f.name: 0 if f.name in ("count", "clean_count") else None for f in fields(QualityFigures)}


def quality_by_model(frame: pd.DataFrame) -> list[dict]:
    """One entry per (model name, model version, variant) in `frame`, sorted: how many
    predictions it made, how many of them have no usable label yet, and its quality figures
    (None when nothing it predicted is labelled). A shadow model is judged like the served one."""
    if frame.empty:
        return []
    keys = frame[list(GROUP_KEYS)].astype(str)
    entries = []
    groups = keys.groupby(list(GROUP_KEYS), sort=True).indices  # positions: the index may repeat labels
    for (name, version, variant), positions in sorted(groups.items()):
        group = frame.iloc[positions]
        figures = quality_figures(group)
        usable = int(usable_label(group).sum())
        entries.append(
            {"model_name": name, "model_version": version, "variant": variant, "predictions": len(group), "unlabelled": len(group) - usable}
            | (figures.as_dict() if figures else _no_figures())
        )
    return entries

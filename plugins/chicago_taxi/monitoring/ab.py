"""Champion vs challenger: which trips the challenger answers, and when it may be promoted."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from chicago_taxi.core import monitoring_schema as C
from chicago_taxi.core.monitoring_config import ABSettings

# ---------------------------------------------------------------- promotion on paired evidence
# Trip draws per chunk of resamples: small enough that the indices and the gathered errors stay
# in the CPU cache (~1 MB), which is faster than one big draw as well as bounded in memory.
BOOTSTRAP_CHUNK_CELLS = 100_000


@dataclass(frozen=True)
class PairedComparison:
    """Champion and challenger on the same `pairs` labelled trips: their RMSEs, the difference
    RMSE(challenger) - RMSE(champion) (< 0: the challenger is better) and its bootstrap interval."""

    pairs: int
    champion_version: str
    challenger_version: str
    champion_rmse: float
    challenger_rmse: float
    diff: float
    low: float
    high: float
    confidence: float
    resamples: int

    def as_dict(self) -> dict:
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(self).items()}


def paired_frame(frame: pd.DataFrame, champion_version: str, challenger_version: str) -> pd.DataFrame:
    """The trips both versions scored (whichever answered: the other one ran in shadow), with a
    label within LABEL_RANGE: columns [TRIP_ID, LABEL, "champion", "challenger"]. A trip scored
    twice by one version (a replayed message) counts once, with its last prediction."""

    def scored_by(version: str) -> pd.DataFrame:
        rows = frame[(frame[C.MODEL_VERSION].astype(str) == str(version)) & frame[C.TRIP_ID].notna()]
        return rows.drop_duplicates(C.TRIP_ID, keep="last")[[C.TRIP_ID, C.LABEL, C.PREDICTION]]

    pairs = scored_by(champion_version).merge(scored_by(challenger_version), on=C.TRIP_ID, suffixes=("_champion", "_challenger"))
    # The fare is the trip's, whichever row carries it.
    label = pd.to_numeric(pairs[f"{C.LABEL}_champion"], errors="coerce").combine_first(pd.to_numeric(pairs[f"{C.LABEL}_challenger"], errors="coerce"))
    out = pd.DataFrame(
        {
            C.TRIP_ID: pairs[C.TRIP_ID],
            C.LABEL: label.astype(float),
            "champion": pairs[f"{C.PREDICTION}_champion"].astype(float),
            "challenger": pairs[f"{C.PREDICTION}_challenger"].astype(float),
        }
    )
    low, high = C.LABEL_RANGE
    return out[out[C.LABEL].between(low, high, inclusive="both")].reset_index(drop=True)


def paired_bootstrap(
    labels,
    champion,
    challenger,
    *,
    resamples: int,
    confidence: float,
    seed: int,
    champion_version: str = "",
    challenger_version: str = "",
) -> PairedComparison:
    """RMSE(challenger) - RMSE(champion) on the same trips, with a percentile interval from a
    paired bootstrap: each resample draws trips with replacement and scores both models on the
    same draw, so trip-to-trip difficulty cancels out and only the models' difference varies."""
    labels, champion, challenger = (np.asarray(values, dtype=float) for values in (labels, champion, challenger))
    if not labels.shape == champion.shape == challenger.shape or labels.ndim != 1:
        raise ValueError(f"need three 1-d arrays of one length; got {labels.shape}, {champion.shape}, {challenger.shape}")
    n = len(labels)
    if n == 0:
        raise ValueError("a paired bootstrap needs at least one labelled trip scored by both models")
    if resamples < 1:
        raise ValueError(f"resamples {resamples}: expected at least 1")
    champion_sq, challenger_sq = (champion - labels) ** 2, (challenger - labels) ** 2
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, BOOTSTRAP_CHUNK_CELLS // n))
    gathered = np.empty((chunk, n))
    diffs = np.empty(resamples)
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        draws = rng.integers(0, n, size=(size, n), dtype=np.int32 if n < 2**31 else np.int64)
        challenger_mse = np.take(challenger_sq, draws, out=gathered[:size]).mean(axis=1)
        champion_mse = np.take(champion_sq, draws, out=gathered[:size]).mean(axis=1)
        diffs[start : start + size] = np.sqrt(challenger_mse) - np.sqrt(champion_mse)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    champion_rmse, challenger_rmse = float(np.sqrt(champion_sq.mean())), float(np.sqrt(challenger_sq.mean()))
    return PairedComparison(
        pairs=n,
        champion_version=str(champion_version),
        challenger_version=str(challenger_version),
        champion_rmse=champion_rmse,
        challenger_rmse=challenger_rmse,
        diff=challenger_rmse - champion_rmse,
        low=float(low),
        high=float(high),
        confidence=float(confidence),
        resamples=int(resamples),
    )


@dataclass(frozen=True)
class PromotionVerdict:
    promote: bool
    reason: str
    comparison: PairedComparison | None

    def as_dict(self) -> dict:
        return {"promote": self.promote, "reason": self.reason, "comparison": self.comparison.as_dict() if self.comparison else None}


def decide_promotion(comparison: PairedComparison | None, settings: ABSettings) -> PromotionVerdict:
    """Promote the challenger only on enough paired evidence (`settings.min_labelled_pairs`
    labelled trips scored by both) whose whole interval favours it (high < 0): a challenger that
    is merely not worse keeps the champion."""
    if comparison is None or comparison.pairs == 0:
        return PromotionVerdict(False, f"no labelled trip scored by both models yet, {settings.min_labelled_pairs} needed", comparison)
    if comparison.pairs < settings.min_labelled_pairs:
        return PromotionVerdict(
            False, f"only {comparison.pairs} labelled trips scored by both, {settings.min_labelled_pairs} needed: keep the champion", comparison
        )
    c = comparison
    figures = (
        f"challenger RMSE {c.challenger_rmse:.2f} vs champion {c.champion_rmse:.2f} on {c.pairs} labelled trips; "
        f"{c.confidence * 100:g}% interval of the difference [{c.low:.2f}, {c.high:.2f}]"
    )
    if c.high < 0:
        return PromotionVerdict(True, f"{figures} lies below 0: promote", c)
    if c.low > 0:
        return PromotionVerdict(False, f"{figures} lies above 0 (the challenger is worse): keep the champion", c)
    return PromotionVerdict(False, f"{figures} includes 0: keep the champion", c)

"""Holdout metrics, the per-mile tariff baseline, the promotion rule and the evaluation plots."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from chicago_taxi.core import schema


@dataclass(frozen=True)
class Metrics:
    rmse: float
    mae: float
    r2: float
    rows: int

    def as_dict(self) -> dict:
        return asdict(self)


def regression_metrics(actual, predicted) -> Metrics:
    actual = np.asarray(actual, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    if actual.shape != predicted.shape or actual.size == 0:
        raise ValueError(f"need equal, non-empty arrays; got {actual.shape} and {predicted.shape}")
    if not np.all(np.isfinite(predicted)):
        raise ValueError(f"{int((~np.isfinite(predicted)).sum())} predictions are not finite")
    errors = predicted - actual
    total = float(np.sum((actual - actual.mean()) ** 2))
    r2 = 1.0 - float(np.sum(errors**2)) / total if total > 0 else 0.0
    return Metrics(rmse=float(np.sqrt(np.mean(errors**2))), mae=float(np.mean(np.abs(errors))), r2=r2, rows=int(actual.size))


@dataclass(frozen=True)
class HoldoutMetrics:
    """A model judged on what it will meet: every holdout trip with a usable fare (dirty inputs
    included, as serving receives them) and the clean ones (no repair by the transform graph)."""

    all: Metrics
    clean: Metrics

    @classmethod
    def of(cls, actual, predicted, clean) -> HoldoutMetrics:
        actual, predicted, clean = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float), np.asarray(clean, dtype=bool)
        return cls(regression_metrics(actual, predicted), regression_metrics(actual[clean], predicted[clean]))

    def as_dict(self) -> dict:
        # The whole holdout's figures at the top (what promotion and older readers look at first).
        return self.all.as_dict() | {"clean": self.clean.as_dict()}


@dataclass(frozen=True)
class TariffBaseline:
    """fare = intercept + per_mile * miles + per_second * seconds, fitted by least squares."""

    intercept: float
    per_mile: float
    per_second: float

    @classmethod
    def fit(cls, trips: pd.DataFrame) -> TariffBaseline:
        design = np.column_stack([np.ones(len(trips)), trips["trip_miles"].astype(float), trips["trip_seconds"].astype(float)])
        coef, *_ = np.linalg.lstsq(design, trips[schema.LABEL].astype(float).to_numpy(), rcond=None)
        return cls(*map(float, coef))

    def predict(self, trips: pd.DataFrame) -> np.ndarray:
        # A meter reads what it reads: missing miles or seconds count as 0, as on a taxi meter.
        return (
            self.intercept
            + self.per_mile * trips["trip_miles"].astype(float).fillna(0.0).to_numpy()
            + self.per_second * trips["trip_seconds"].astype(float).fillna(0.0).to_numpy()
        )


@dataclass
class PromotionDecision:
    register: bool
    promote_to_champion: bool
    alias: str | None
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


# A new champion may give up at most this share of RMSE on the clean trips for a better whole holdout.
CLEAN_ROWS_TOLERANCE = 0.05


def decide_promotion(
    candidate: HoldoutMetrics, baseline: HoldoutMetrics, champion: HoldoutMetrics | None, max_ratio_to_baseline: float
) -> PromotionDecision:
    """Register only a candidate that beats the baseline by the margin on the whole holdout and on
    its clean trips; make it champion only when it is no worse than the current champion on the
    whole holdout and at most CLEAN_ROWS_TOLERANCE worse on the clean trips (same rows)."""
    reasons, fails = [], []
    for name, ours, theirs in (("whole holdout", candidate.all, baseline.all), ("clean trips", candidate.clean, baseline.clean)):
        ratio = ours.rmse / theirs.rmse if theirs.rmse > 0 else float("inf")
        text = f"{name}: candidate RMSE {ours.rmse:.3f} is {ratio:.3f}x the baseline's {theirs.rmse:.3f}"
        if ratio > max_ratio_to_baseline:
            fails.append(f"{text}; at most {max_ratio_to_baseline}x is required")
        else:
            reasons.append(f"{text} (limit {max_ratio_to_baseline}x)")
    if fails:
        return PromotionDecision(False, False, None, reasons + fails + ["nothing is registered"])
    if champion is None:
        return PromotionDecision(True, True, "champion", reasons + ["no champion yet: the candidate becomes champion"])
    ours, theirs = distinct_figures(candidate.all.rmse, champion.all.rmse)
    clean_limit = champion.clean.rmse * (1 + CLEAN_ROWS_TOLERANCE)
    if candidate.all.rmse > champion.all.rmse:
        why = f"candidate RMSE {ours} > champion's {theirs} on the whole holdout"
    elif candidate.clean.rmse > clean_limit:
        why = (
            f"candidate RMSE on clean trips {candidate.clean.rmse:.3f} is more than {CLEAN_ROWS_TOLERANCE:.0%} above the champion's "
            f"{champion.clean.rmse:.3f}"
        )
    else:
        return PromotionDecision(
            True,
            True,
            "champion",
            reasons
            + [
                f"candidate RMSE {ours} <= champion's {theirs} on the same holdout, and {candidate.clean.rmse:.3f} on clean trips "
                f"(champion {champion.clean.rmse:.3f}, limit +{CLEAN_ROWS_TOLERANCE:.0%})"
            ],
        )
    return PromotionDecision(True, False, "challenger", reasons + [f"{why}: registered as challenger, champion unchanged"])


def distinct_figures(a: float, b: float, digits: int = 3, most: int = 9) -> tuple[str, str]:
    """`a` and `b` with 3 decimals, or with as many more (up to `most`) as it takes for two
    different values to read differently ("2.03214 > 2.03208", never "2.032 > 2.032")."""
    while digits < most and a != b and f"{a:.{digits}f}" == f"{b:.{digits}f}":
        digits += 1
    return f"{a:.{digits}f}", f"{b:.{digits}f}"


def plot_evaluation(holdout: pd.DataFrame, predicted: np.ndarray, out_dir: Path) -> list[str]:
    """Predicted-vs-actual scatter and RMSE by start hour, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    actual = holdout[schema.LABEL].to_numpy(dtype=float)
    paths = []
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(actual, predicted, s=4, alpha=0.4)
    top = float(np.percentile(actual, 99.5)) * 1.1
    ax.plot([0, top], [0, top], color="red", linewidth=1, label="perfect")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="actual fare ($)", ylabel="predicted fare ($)", title="Holdout: predicted vs actual fare")
    ax.legend()
    paths.append(out_dir / "predicted_vs_actual.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)

    residual = predicted - actual
    by_hour = pd.DataFrame({"hour": holdout["trip_start_hour"].to_numpy(), "residual": residual}).groupby("hour")["residual"]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(by_hour.mean().index, np.sqrt(by_hour.apply(lambda r: np.mean(r**2))), color="steelblue", label="RMSE")
    ax.plot(by_hour.mean().index, by_hour.mean().values, color="darkorange", marker="o", label="mean residual")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set(xlabel="trip start hour", ylabel="$", title="Holdout residuals by start hour")
    ax.legend()
    paths.append(out_dir / "residuals_by_hour.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)
    return [str(p) for p in paths]

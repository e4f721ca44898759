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
        return (
            self.intercept
            + self.per_mile * trips["trip_miles"].astype(float).to_numpy()
            + self.per_second * trips["trip_seconds"].astype(float).to_numpy()
        )


@dataclass
class PromotionDecision:
    register: bool
    promote_to_champion: bool
    alias: str | None
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def decide_promotion(candidate: Metrics, baseline: Metrics, champion: Metrics | None, max_ratio_to_baseline: float) -> PromotionDecision:
    """Register only a candidate that beats the baseline by the margin; make it champion only when
    it is no worse than the current champion on the same holdout."""
    ratio = candidate.rmse / baseline.rmse if baseline.rmse > 0 else float("inf")
    if ratio > max_ratio_to_baseline:
        return PromotionDecision(
            False,
            False,
            None,
            [
                f"candidate RMSE {candidate.rmse:.3f} is {ratio:.3f}x the baseline's {baseline.rmse:.3f}; at most {max_ratio_to_baseline}x is required, so nothing is registered"
            ],
        )
    reasons = [f"candidate RMSE {candidate.rmse:.3f} is {ratio:.3f}x the baseline's {baseline.rmse:.3f} (limit {max_ratio_to_baseline}x)"]
    if champion is None:
        return PromotionDecision(True, True, "champion", reasons + ["no champion yet: the candidate becomes champion"])
    ours, theirs = distinct_figures(candidate.rmse, champion.rmse)
    if candidate.rmse <= champion.rmse:
        return PromotionDecision(True, True, "champion", reasons + [f"candidate RMSE {ours} <= champion's {theirs} on the same holdout"])
    return PromotionDecision(
        True,
        False,
        "challenger",
        reasons + [f"candidate RMSE {ours} > champion's {theirs}: registered as challenger, champion unchanged"],
    )


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

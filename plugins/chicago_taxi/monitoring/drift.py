"""Drift of a window's inputs and predictions against the model's training reference.

The rule is the population stability index (PSI) of each monitored column: numeric columns are
binned at the reference's quantiles, categorical ones by category, a missing value is a bin of
its own (a feature that stops arriving is drift too). The two-sample Kolmogorov-Smirnov test and
the means are reported beside it for numeric columns, to help read a breach, not to judge one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from chicago_taxi.core import monitoring_schema as C
from chicago_taxi.core.monitoring_config import DriftThresholds

MISSING = "(missing)"
# Share given to a bin one side has no row in: ln(0) would make the index infinite.
EPSILON = 1e-4
# Categories rarer than this in the reference are judged together, as OTHER.
RARE_SHARE = 0.01
OTHER = "(other)"
# Fewer non-null values than this on either side: no KS test.
KS_MIN_VALUES = 2
KS_ASYMPTOTIC_FROM = 1000


def category_labels(values: pd.Series) -> pd.Series:
    """The categories of a column as strings, missing as MISSING. Whole numbers read as floats
    (an int column with a NaN) print as ints, so 8.0 in a window matches 8 in the reference."""
    if pd.api.types.is_bool_dtype(values):
        return _text_labels(values)
    if not pd.api.types.is_numeric_dtype(values):
        if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
            return _text_labels(values)
        numbers = pd.to_numeric(values, errors="coerce")
        if (numbers.notna() != values.notna()).any():  # real text (a company name), not numbers stored as objects
            return _text_labels(values)
        values = numbers
    numbers = values.to_numpy(dtype=float, na_value=np.nan)
    missing = np.isnan(numbers)
    whole = np.all(np.mod(numbers[~missing], 1) == 0)
    text = np.full(len(numbers), MISSING, dtype=object)
    present = numbers[~missing]
    text[~missing] = present.astype(np.int64).astype(str) if whole else present.astype(str)
    return pd.Series(text, index=values.index, dtype=object)


def _text_labels(values: pd.Series) -> pd.Series:
    labels = values.astype(object).where(values.notna(), MISSING).astype(str)
    return pd.Series(labels.to_numpy(), index=values.index, dtype=object)


def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _shares(counts: np.ndarray) -> np.ndarray:
    shares = counts / counts.sum()
    return np.where(shares == 0, EPSILON, shares)


def _psi_of_counts(reference: np.ndarray, current: np.ndarray) -> float:
    if reference.sum() == 0 or current.sum() == 0:
        return float("nan")
    r, c = _shares(reference), _shares(current)
    return float(np.sum((c - r) * np.log(c / r)))


def _numeric_counts(reference: np.ndarray, current: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts per reference-quantile bin (right-closed, open at both ends) plus a last bin of
    missing values."""
    present = reference[~np.isnan(reference)]
    cuts = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])) if len(present) else np.empty(0)

    def counts(values: np.ndarray) -> np.ndarray:
        missing = np.isnan(values)
        binned = np.bincount(np.searchsorted(cuts, values[~missing], side="left"), minlength=len(cuts) + 1)
        return np.append(binned, missing.sum())

    return counts(reference), counts(current)


def _categorical_counts(reference: pd.Series, current: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Counts per category; the categories under RARE_SHARE of the reference, and those it never
    saw, share one bin OTHER. With 77 community areas and a hundred companies, most of them
    rare, a bin each would let sampling noise alone push a 500-trip window past any threshold
    (empty bins weigh in at ln(share / EPSILON)); a category that grows from rare to common
    still shows, as OTHER's share."""
    r = category_labels(reference).value_counts()
    c = category_labels(current).value_counts()
    kept = r.index[r / max(1, r.sum()) >= RARE_SHARE]
    r = _fold_rare(r, kept)
    c = _fold_rare(c, kept)
    categories = r.index.union(c.index)
    return r.reindex(categories, fill_value=0).to_numpy(), c.reindex(categories, fill_value=0).to_numpy()


def _fold_rare(counts: pd.Series, kept: pd.Index) -> pd.Series:
    common = counts[counts.index.isin(kept)]
    other = counts[~counts.index.isin(kept)].sum()
    return pd.concat([common, pd.Series({OTHER: other})]) if other else common


def psi(reference: pd.Series, current: pd.Series, kind: str, bins: int = 10) -> float:
    """Population stability index of `current` against `reference`: sum over bins of
    (c - r) * ln(c / r), c and r the shares of rows in the bin (symmetric in the two sides).
    `kind` is "numeric" (bins at the reference's quantiles) or "categorical". NaN when either
    side has no row."""
    if kind == "numeric":
        r, c = _numeric_counts(_numbers(reference), _numbers(current), bins)
    elif kind == "categorical":
        r, c = _categorical_counts(reference, current)
    else:
        raise ValueError(f"psi kind {kind!r}: expected 'numeric' or 'categorical'")
    return _psi_of_counts(r, c)


def _mean(values: np.ndarray) -> float | None:
    present = values[~np.isnan(values)]
    return float(present.mean()) if len(present) else None


def _ks(reference: np.ndarray, current: np.ndarray) -> tuple[float | None, float | None]:
    r, c = reference[~np.isnan(reference)], current[~np.isnan(current)]
    if len(r) < KS_MIN_VALUES or len(c) < KS_MIN_VALUES:
        return None, None
    # The exact distribution costs ~10 ms a column at 10,000 x 5,000; the asymptotic one is as good there.
    result = stats.ks_2samp(r, c, method="asymp" if min(len(r), len(c)) >= KS_ASYMPTOTIC_FROM else "auto")
    return float(result.statistic), float(result.pvalue)


def _missing_share(values: pd.Series) -> float | None:
    return float(values.isna().mean()) if len(values) else None


def _kind(column: str) -> str:
    return "numeric" if column in C.MONITORED_NUMERIC else "categorical"


def drift_table(reference: pd.DataFrame, current: pd.DataFrame, thresholds: DriftThresholds) -> list[dict]:
    """One row per monitored column present in both frames, the most drifted first: its PSI
    (drifted above `thresholds.psi_max`), the missing shares and, for numeric columns, the KS
    test and the means."""
    rows = []
    for column in C.MONITORED:
        if column not in reference or column not in current:
            continue
        kind = _kind(column)
        row = {"feature": column, "kind": kind}
        if kind == "numeric":
            r, c = _numbers(reference[column]), _numbers(current[column])
            value = _psi_of_counts(*_numeric_counts(r, c, thresholds.bins))
            statistic, pvalue = _ks(r, c)
            means = {"reference_mean": _mean(r), "current_mean": _mean(c)}
        else:
            value = _psi_of_counts(*_categorical_counts(reference[column], current[column]))
            statistic, pvalue = None, None
            means = {"reference_mean": None, "current_mean": None}
        rows.append(
            row
            | {
                "psi": value,
                "ks_statistic": statistic,
                "ks_pvalue": pvalue,
                "missing_reference": _missing_share(reference[column]),
                "missing_current": _missing_share(current[column]),
            }
            | means
            | {"drifted": bool(value > thresholds.psi_max)}
        )
    # NaN (an empty side) sorts last.
    return sorted(rows, key=lambda row: -row["psi"] if not np.isnan(row["psi"]) else np.inf)


def prediction_drift(reference: pd.Series, current: pd.Series, thresholds: DriftThresholds) -> dict:
    """The same figures for the model's predictions: a model whose outputs move while its inputs
    do not has changed, or met a change the inputs do not show."""
    r, c = _numbers(reference), _numbers(current)
    value = _psi_of_counts(*_numeric_counts(r, c, thresholds.bins))
    statistic, pvalue = _ks(r, c)
    return {
        "psi": value,
        "ks_statistic": statistic,
        "ks_pvalue": pvalue,
        "reference_mean": _mean(r),
        "current_mean": _mean(c),
        "drifted": bool(value > thresholds.prediction_psi_max),
    }

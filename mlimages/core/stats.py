"""Paired differences over seeds, their 95% interval, and the verdict a claim gets from it.

A claim of the paper says one setting beats another. Seeds are the unit of replication: the
two settings are compared seed by seed (same seed, same data order and initial draw where
the settings share them), so the spread that matters is that of the paired differences, not
of each setting on its own. The interval is Student's t for the mean of those differences
with n - 1 degrees of freedom; the verdict reads only the interval, never the point estimate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """Mean of paired differences, its sample sd and confidence interval (NaN below n = 2)."""

    n: int
    mean: float
    sd: float
    low: float
    high: float
    confidence: float = CONFIDENCE


def paired_differences(a: Mapping[int, float], b: Mapping[int, float]) -> dict[int, float]:
    """`a[seed] - b[seed]` for every seed both have, in seed order (unpaired seeds dropped:
    a seed run for one setting only says nothing about the difference)."""
    return {seed: float(a[seed]) - float(b[seed]) for seed in sorted(set(a) & set(b))}


def t_quantile(confidence: float, df: int) -> float:
    """Two-sided Student t critical value (e.g. 12.706 for 95% with 1 degree of freedom)."""
    from scipy import stats

    if not 0 < confidence < 1 or df < 1:
        raise ValueError(f"confidence {confidence}, df {df}; expected 0 < confidence < 1, df >= 1")
    return float(stats.t.ppf(0.5 + confidence / 2, df))


def mean_interval(values, confidence: float = CONFIDENCE) -> Interval:
    """Mean, sample sd and the t interval of the mean of `values` (one value a seed)."""
    x = np.asarray(list(values), dtype=np.float64)
    if np.isnan(x).any():
        raise ValueError(f"paired differences {x.tolist()}: expected numbers, found NaN")
    n = len(x)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan, confidence)
    mean = float(x.mean())
    if n < 2:
        return Interval(n, mean, math.nan, math.nan, math.nan, confidence)
    sd = float(x.std(ddof=1))
    half = t_quantile(confidence, n - 1) * sd / math.sqrt(n)
    return Interval(n, mean, sd, mean - half, mean + half, confidence)


def paired_interval(
    a: Mapping[int, float], b: Mapping[int, float], confidence: float = CONFIDENCE
) -> Interval:
    """The interval of the mean of `a - b` matched by seed."""
    return mean_interval(paired_differences(a, b).values(), confidence)


def verdict(expected: float, low: float, high: float) -> str:
    """`reproduced` when [low, high] lies entirely on the side of zero of `expected` (the
    paper's difference, or the sign a claim of ours predicts), `not reproduced` when entirely
    on the other side, `inconclusive` otherwise: an interval touching zero, or none (NaN,
    fewer than two paired seeds)."""
    if math.isnan(expected) or expected == 0:
        raise ValueError(f"expected difference {expected}: a claim needs a direction (+ or -)")
    if math.isnan(low) or math.isnan(high):
        return INCONCLUSIVE
    if low > high:
        raise ValueError(f"interval [{low}, {high}]: expected low <= high")
    sign = 1.0 if expected > 0 else -1.0
    lo, hi = sorted((sign * low, sign * high))  # the paper's side is now positive
    if lo > 0:
        return REPRODUCED
    if hi < 0:
        return NOT_REPRODUCED
    return INCONCLUSIVE

"""Median and a distribution-free 95% confidence interval for it, from repeated measurements.

Latencies on a shared machine are skewed with outliers, so the summary is the median, and its interval comes from
order statistics (no normality assumed): with the n sorted values x(1) <= ... <= x(n), the interval
[x(k), x(n+1-k)] contains the true median with probability 1 - 2 P(B <= k-1), B ~ Binomial(n, 1/2). We take the
largest k whose coverage is still >= the level asked for (0.95), so the interval is the narrowest of that kind and
its actual coverage (>= 0.95, reported) is exact, not asymptotic. Below n = 6 no pair of order statistics covers
95%; the interval is then left empty and says so.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

CI_LEVEL = 0.95
MIN_N_FOR_CI = 6  # the smallest n whose [min, max] covers the median with >= 95%: 1 - 2/2^6 = 0.969


@dataclass(frozen=True)
class MedianCI:
    """Median of `n` values with its order-statistic interval; `low`/`high` are None when n is too small."""

    n: int
    median: float | None
    low: float | None
    high: float | None
    coverage: float | None  # the interval's exact coverage probability
    minimum: float | None
    maximum: float | None

    @property
    def has_ci(self) -> bool:
        return self.low is not None


def binomial_cdf_half(k: int, n: int) -> float:
    """P(B <= k) for B ~ Binomial(n, 1/2)."""
    if k < 0:
        return 0.0
    return sum(math.comb(n, i) for i in range(min(k, n) + 1)) / 2**n


def ci_ranks(n: int, level: float = CI_LEVEL) -> tuple[int, int, float] | None:
    """1-based ranks (k, n+1-k) of the narrowest symmetric order-statistic interval with coverage >= level,
    and that coverage; None when even [x(1), x(n)] covers less."""
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    best: tuple[int, int, float] | None = None
    for k in range(1, n // 2 + 1):
        coverage = 1 - 2 * binomial_cdf_half(k - 1, n)
        if coverage < level:
            break
        best = (k, n + 1 - k, coverage)
    return best


def median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2


def median_ci(values: Iterable[float | int | None], level: float = CI_LEVEL) -> MedianCI:
    """Median and its order-statistic CI over the finite numbers in `values` (None/NaN are skipped)."""
    data = sorted(float(v) for v in values if v is not None and math.isfinite(float(v)))
    n = len(data)
    if n == 0:
        return MedianCI(0, None, None, None, None, None, None)
    ranks = ci_ranks(n, level)
    low = high = coverage = None
    if ranks is not None:
        k, upper, coverage = ranks
        low, high = data[k - 1], data[upper - 1]
    return MedianCI(n, median(data), low, high, coverage, data[0], data[-1])


def coefficient_of_variation_pct(values: Iterable[float | None]) -> float | None:
    """Sample standard deviation over mean, in percent, of the finite values; None below two values."""
    data = [v for v in values if v is not None and math.isfinite(v)]
    if len(data) < 2:
        return None
    mean = statistics.fmean(data)
    return 100.0 * statistics.stdev(data) / mean if mean > 0 else None

"""The median and its order-statistic 95% CI (splitbed.stats): exact binomial coverage, the narrowest
interval that still covers, and real coverage on skewed samples."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from splitbed.stats import CI_LEVEL, MIN_N_FOR_CI, binomial_cdf_half, ci_ranks, median, median_ci


def test_binomial_cdf_matches_the_definition() -> None:
    assert binomial_cdf_half(0, 1) == 0.5
    assert binomial_cdf_half(1, 2) == 0.75
    assert binomial_cdf_half(-1, 5) == 0.0
    assert binomial_cdf_half(10, 10) == 1.0
    assert binomial_cdf_half(3, 10) == pytest.approx(176 / 1024)


@pytest.mark.parametrize(("n", "ranks"), [
    (6, (1, 6)),     # 1 - 2/64 = 0.96875
    (10, (2, 9)),    # 1 - 2*11/1024 = 0.97852
    (20, (6, 15)),   # the textbook pair for n = 20
    (30, (10, 21)),
])
def test_known_rank_pairs(n: int, ranks: tuple[int, int]) -> None:
    found = ci_ranks(n)
    assert found is not None
    assert found[:2] == ranks
    assert found[2] == pytest.approx(1 - 2 * binomial_cdf_half(ranks[0] - 1, n))


def test_no_interval_below_six_values() -> None:
    assert MIN_N_FOR_CI == 6
    for n in range(1, 6):
        assert ci_ranks(n) is None
        stats = median_ci(range(n))
        assert stats.n == n and not stats.has_ci and stats.low is None and stats.coverage is None


@given(st.integers(min_value=6, max_value=400))
def test_interval_covers_and_is_the_narrowest(n: int) -> None:
    k, upper, coverage = ci_ranks(n)  # type: ignore[misc]
    assert upper == n + 1 - k
    assert coverage >= CI_LEVEL
    narrower = 1 - 2 * binomial_cdf_half(k, n)  # ranks (k+1, n-k)
    assert k + 1 > n - k or narrower < CI_LEVEL


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=60))
def test_median_lies_in_its_interval_and_between_min_and_max(values: list[float]) -> None:
    stats = median_ci(values)
    assert stats.median is not None and stats.minimum is not None and stats.maximum is not None
    assert stats.minimum <= stats.median <= stats.maximum
    if stats.has_ci:
        assert stats.low is not None and stats.high is not None
        assert stats.low <= stats.median <= stats.high


def test_median_of_even_and_odd_counts_and_missing_values_skipped() -> None:
    assert median([1.0, 2.0, 10.0]) == 2.0
    assert median([1.0, 2.0, 3.0, 10.0]) == 2.5
    stats = median_ci([None, 3, float("nan"), 1, 2])
    assert stats.n == 3 and stats.median == 2.0
    assert median_ci([]).median is None


def test_coverage_on_skewed_samples_is_at_least_the_level() -> None:
    """Lognormal latencies (median 1 by construction): the interval holds the true median >= 95% of the time."""
    rng = random.Random(20240611)
    trials, hits = 3000, 0
    for _ in range(trials):
        sample = [math.exp(rng.gauss(0.0, 0.8)) for _ in range(10)]
        stats = median_ci(sample)
        assert stats.low is not None and stats.high is not None
        hits += stats.low <= 1.0 <= stats.high
    # exact coverage for n = 10 is 0.9785; 3 binomial standard errors below it is still above 0.95
    assert hits / trials >= 0.9785 - 3 * math.sqrt(0.9785 * 0.0215 / trials)


def test_a_level_outside_zero_one_is_refused() -> None:
    with pytest.raises(ValueError, match="level"):
        ci_ranks(10, level=1.0)

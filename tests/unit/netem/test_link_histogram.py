"""The link's latency histogram: exact count/mean/max, percentiles within 0.1 %, bounded memory."""

from __future__ import annotations

import random

import pytest

from netem.link.histogram import LatencyHistogram


def exact_percentile(values: list[int], fraction: float) -> int:
    ordered = sorted(values)
    rank = max(1, int(fraction * len(ordered) + 0.999999))
    return ordered[rank - 1]


def test_percentiles_match_exact_ones_within_a_tenth_of_a_percent() -> None:
    rng = random.Random(4)
    values_us = [int(rng.lognormvariate(8, 1.5)) for _ in range(50_000)]  # ~3 ms median, long tail
    histogram = LatencyHistogram()
    for value in values_us:
        histogram.record_ns(value * 1000)
    assert histogram.count == len(values_us)
    assert histogram.max_us == max(values_us)
    assert histogram.total_us == sum(values_us)
    for fraction in (0.5, 0.9, 0.99, 0.999):
        exact = exact_percentile(values_us, fraction)
        assert histogram.percentile_us(fraction) == pytest.approx(exact, rel=0.001, abs=1)


def test_small_values_are_exact_and_negative_ones_count_as_zero() -> None:
    histogram = LatencyHistogram()
    for value_us in (0, 5, 999, 1023):
        histogram.record_ns(value_us * 1000)
    histogram.record_ns(-50)
    assert [histogram.percentile_us(f) for f in (0.2, 0.4, 0.6, 0.8, 1.0)] == [0, 0, 5, 999, 1023]


def test_summary_is_in_milliseconds_and_empty_is_zero() -> None:
    assert LatencyHistogram().summary_ms() == {"count": 0, "mean": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    histogram = LatencyHistogram()
    for value_ms in range(1, 101):
        histogram.record_ns(value_ms * 1_000_000)
    summary = histogram.summary_ms()
    assert summary["count"] == 100 and summary["mean"] == 50.5 and summary["max"] == 100.0
    assert summary["p50"] == pytest.approx(50.0, rel=0.001) and summary["p99"] == pytest.approx(99.0, rel=0.001)


def test_memory_stays_bounded_whatever_the_spread() -> None:
    histogram = LatencyHistogram()
    for exponent in range(0, 60):
        for mantissa in range(0, 5000, 7):
            histogram.record_ns((mantissa << exponent) * 1000)
    assert len(histogram._buckets) < 40 * 1024

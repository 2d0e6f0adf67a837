"""Bounded-memory latency histogram (log-linear buckets, like HdrHistogram) for the link's delay counters.

The link records one value per packet for hours; keeping every sample would grow without bound, so values
(integer microseconds) go into buckets that are exact below 1024 us and within 0.1 % above. Memory is at most
a few thousand dict entries whatever the packet count.
"""

from __future__ import annotations

SUB_BUCKET_BITS = 10
_SUB = 1 << SUB_BUCKET_BITS
#: Values are clamped to this (about 19 hours in us) so the bucket count stays bounded.
MAX_VALUE_US = (1 << 36) - 1


def _bucket(value_us: int) -> int:
    if value_us < _SUB:
        return value_us
    shift = value_us.bit_length() - SUB_BUCKET_BITS
    return (shift << SUB_BUCKET_BITS) + (value_us >> shift)


def _bucket_value(index: int) -> int:
    """Midpoint (in us) of the values that fall in bucket ``index`` (the inverse of `_bucket`)."""
    if index < _SUB:
        return index
    shift = index >> SUB_BUCKET_BITS
    low = (index & (_SUB - 1)) << shift
    return low + ((1 << shift) >> 1)


class LatencyHistogram:
    """Count, mean, max exactly; percentiles from log-linear buckets (error < 0.1 % above 1 ms)."""

    __slots__ = ("count", "total_us", "max_us", "_buckets")

    def __init__(self) -> None:
        self.count = 0
        self.total_us = 0
        self.max_us = 0
        self._buckets: dict[int, int] = {}

    def record_ns(self, value_ns: int) -> None:
        value_us = value_ns // 1000 if value_ns > 0 else 0
        if value_us > MAX_VALUE_US:
            value_us = MAX_VALUE_US
        self.count += 1
        self.total_us += value_us
        if value_us > self.max_us:
            self.max_us = value_us
        index = value_us if value_us < _SUB else _bucket(value_us)
        buckets = self._buckets
        buckets[index] = buckets.get(index, 0) + 1

    def percentile_us(self, fraction: float) -> int:
        """Smallest recorded value (bucket midpoint) with at least ``fraction`` of samples at or below it."""
        if self.count == 0:
            return 0
        rank = max(1, int(fraction * self.count + 0.999999))
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                return min(_bucket_value(index), self.max_us)
        return self.max_us

    def summary_ms(self) -> dict[str, float | int]:
        """JSON-able figures in milliseconds: count, mean, p50, p99, max."""
        if self.count == 0:
            return {"count": 0, "mean": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
        return {
            "count": self.count,
            "mean": round(self.total_us / self.count / 1000, 4),
            "p50": self.percentile_us(0.50) / 1000,
            "p99": self.percentile_us(0.99) / 1000,
            "max": self.max_us / 1000,
        }

"""Clock-offset estimation and the same-host decision."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from splitbed.nodes.clock import PingSample, boot_id, decide_clock, estimate_offset, to_local_ns


def _sample(offset: int, t1: int, up: int, turnaround: int, down: int) -> PingSample:
    t2 = t1 + up + offset
    t3 = t2 + turnaround
    t4 = t3 - offset + down
    return PingSample(t1, t2, t3, t4)


@given(offset=st.integers(-10**12, 10**12),
       delays=st.lists(st.tuples(st.integers(1, 10**8), st.integers(0, 10**7), st.integers(1, 10**8)),
                       min_size=1, max_size=8))
def test_true_offset_lies_within_the_uncertainty(offset: int, delays: list[tuple[int, int, int]]) -> None:
    samples = [_sample(offset, 10**9 * i, up, turn, down) for i, (up, turn, down) in enumerate(delays)]
    est = estimate_offset(samples)
    assert abs(est.offset_ns - offset) <= est.uncertainty_ns
    assert est.min_rtt_ns == min(up + down for up, _, down in delays)


def test_symmetric_delays_give_the_exact_offset() -> None:
    est = estimate_offset([_sample(5_000_000, 0, 300, 50, 300), _sample(5_000_000, 10**6, 9000, 50, 100)])
    assert est.offset_ns == 5_000_000 and est.min_rtt_ns == 600 and est.uncertainty_ns == 300


def test_same_boot_id_and_zero_offset_is_a_shared_clock() -> None:
    est = estimate_offset([_sample(0, 0, 100_000, 10_000, 100_000)])
    clock = decide_clock("b1", "b1", est)
    assert clock["shared_monotonic"] and clock["method"] == "same-host" and clock["offset_ns"] == 0
    assert to_local_ns(1234, clock) == 1234


def test_different_hosts_use_the_estimate() -> None:
    est = estimate_offset([_sample(7_000_000_000, 0, 100_000, 10_000, 100_000)])
    clock = decide_clock("b1", "b2", est)
    assert not clock["shared_monotonic"] and clock["method"] == "ntp-min-rtt"
    assert clock["offset_ns"] == 7_000_000_000 and clock["offset_uncertainty_ns"] == 100_000
    assert to_local_ns(7_000_000_123, clock) == 123


def test_same_boot_but_offset_is_not_trusted_as_shared() -> None:
    est = estimate_offset([_sample(3_600 * 10**9, 0, 100_000, 10_000, 100_000)])
    clock = decide_clock("b1", "b1", est)
    assert not clock["shared_monotonic"] and "time namespace" in clock["note"]


def test_boot_id_is_this_kernels() -> None:
    assert re.fullmatch(r"[0-9a-f-]{36}", boot_id())

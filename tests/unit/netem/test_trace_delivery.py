"""Transmission time over a capacity trace from any start phase: by hand, and against the link's own stages."""

from __future__ import annotations

import random

import numpy as np
import pytest

from netem.link.queues import DropTail
from netem.link.stages import DeliveryTraceStage, Item, ThroughputTraceStage
from netem.trace import (
    MahimahiTrace,
    ThroughputTrace,
    builtin_trace_dir,
    delivery_ms,
    load_throughput,
    start_phases_ms,
)

MS = 1_000_000
FULL = bytes(1514)


def test_throughput_trace_waits_out_outages_and_wraps_around() -> None:
    trace = ThroughputTrace((10.0, 0.0, 40.0), interval_ms=1000)
    phases = np.array([0.0, 500.0, 1000.0, 1500.0, 2000.0, 2900.0, 3000.0])
    # 1 MB = 8 Mbit: 800 ms at 10; 5 Mbit, the 1 s outage, 3 Mbit at 40 (75 ms); the outage then 200 ms at 40;
    # 100 ms at 40 (4 Mbit) then 400 ms at 10 in the next period; phase 3000 = phase 0
    expected = [800.0, 1575.0, 1200.0, 700.0, 200.0, 500.0, 800.0]
    assert delivery_ms(trace, 1_000_000, phases) == pytest.approx(expected)
    assert delivery_ms(trace, 0, phases) == pytest.approx([0.0] * len(phases))
    # more than a whole period's capacity (50 Mbit per 3 s): 60 Mbit from 0 = one period + 10 Mbit at 10 Mbit/s
    assert delivery_ms(trace, 60_000_000 // 8, np.array([0.0])) == pytest.approx([3000.0 + 1000.0])


def test_mahimahi_trace_counts_opportunities_from_the_start_phase() -> None:
    trace = MahimahiTrace((1, 2, 3, 4))  # period 4 ms, one 1500-byte opportunity per ms
    phases = np.array([0.0, 1.0, 1.5, 3.9, 4.0])
    # an opportunity at the start phase itself is gone (mahimahi spends opportunities up to now, then queues)
    assert delivery_ms(trace, 3000, phases) == pytest.approx([2.0, 2.0, 1.5, 1.1, 2.0])
    assert delivery_ms(trace, 3001, np.array([0.0])) == pytest.approx([3.0])  # a third opportunity


def _last_departure(stage: ThroughputTraceStage | DeliveryTraceStage, start_ns: int, frames: int) -> int:
    for _ in range(frames):
        stage.enqueue((start_ns, start_ns, FULL))
    out: list[Item] = []
    now = start_ns
    while len(out) < frames:
        due = stage.next_due()
        assert due is not None
        now = max(now, due)
        stage.dequeue(now, out)
    return out[-1][0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_agrees_with_the_userspace_links_throughput_stage(seed: int) -> None:
    rng = random.Random(seed)
    trace = ThroughputTrace(tuple(rng.choice([0.0, 5.0, 20.0, 80.0]) for _ in range(12)) + (10.0,), interval_ms=50)
    for _ in range(20):
        start_ns = rng.randrange(0, trace.period_ms * MS)
        frames = rng.randrange(1, 300)
        stage = ThroughputTraceStage(trace, DropTail(limit_packets=1000), origin_ns=0)
        carried_ms = (_last_departure(stage, start_ns, frames) - start_ns) / MS
        predicted = delivery_ms(trace, frames * len(FULL), np.array([start_ns / MS]))[0]
        assert predicted == pytest.approx(carried_ms, abs=frames * 1e-6)  # the stage rounds each frame to 1 ns


@pytest.mark.parametrize("seed", [1, 2])
def test_agrees_with_the_userspace_links_mahimahi_stage(seed: int) -> None:
    rng = random.Random(seed)
    trace = MahimahiTrace(tuple(sorted(rng.randrange(1, 200) for _ in range(150))) + (200,))
    for _ in range(20):
        start_ns = rng.randrange(0, trace.period_ms) * MS + rng.choice([0, MS // 2])
        frames = rng.randrange(1, 400)
        stage = DeliveryTraceStage(trace, DropTail(limit_packets=1000), origin_ns=0)
        carried_ms = (_last_departure(stage, start_ns, frames) - start_ns) / MS
        ip_bytes = frames * (len(FULL) - 14)  # mahimahi counts IP packets
        assert delivery_ms(trace, ip_bytes, np.array([start_ns / MS]))[0] == pytest.approx(carried_ms)


def test_start_phases_see_every_interval_of_the_builtin_driving_trace() -> None:
    trace = load_throughput(builtin_trace_dir() / "mmwave-driving.tput")
    phases = start_phases_ms(trace)
    assert len(phases) == 4 * len(trace.mbit) and phases[0] == 0.0 and phases[-1] < trace.period_ms
    assert np.all(np.diff(phases) <= trace.interval_ms / 4 + 1e-9)
    times = delivery_ms(trace, 3_300_000, phases)
    mean_rate_ms = 3_300_000 * 8 / (trace.mean_rate_mbit() * 1e3)
    # a trace with outages and slow stretches: the typical transfer is much slower than the mean rate implies
    assert np.median(times) > 2 * mean_rate_ms and np.percentile(times, 90) > 5 * mean_rate_ms


def test_a_trace_ending_in_an_outage_never_divides_by_its_zero_rate() -> None:
    """Transfers that end exactly where the capacity runs out before a trailing outage, from many phases."""
    trace = ThroughputTrace((7.0, 3.0, 0.0, 0.0), interval_ms=100)  # 1 Mbit per period, then 200 ms of nothing
    phases = start_phases_ms(trace)
    for size in (125_000, 250_000, 1_000_000 // 3):  # exactly 1 and 2 periods' worth, and a third of one
        times = delivery_ms(trace, size, phases)
        assert np.all(np.isfinite(times)) and np.all(times > 0)
    assert delivery_ms(trace, 125_000, np.array([0.0]))[0] == pytest.approx(200.0)  # ends as the outage begins

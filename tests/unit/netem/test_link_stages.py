"""Link stages under a fake clock: exact departure times, drop counts and statistics of the random stages."""

from __future__ import annotations

import random
import statistics

import pytest

from netem.errors import LinkError
from netem.link.fidelity import binomial_interval
from netem.link.queues import DropTail
from netem.link.stages import (
    DelayStage,
    DeliveryTraceStage,
    GilbertElliottModel,
    Item,
    JitterStage,
    LossStage,
    RandomLossModel,
    RateStage,
    ThroughputTraceStage,
)
from netem.trace import MahimahiTrace, ThroughputTrace

MS = 1_000_000
FULL = bytes(1514)  # a full-MTU Ethernet frame: 14-byte header + 1500-byte IP packet


def run(stage, arrivals: list[tuple[int, bytes]], until: int, step: int = 50_000) -> list[Item]:  # type: ignore[no-untyped-def]
    """Feed arrivals and advance the stage in small clock steps (like the event loop); the items out."""
    out: list[Item] = []
    pending = sorted(arrivals, key=lambda a: a[0])
    now = 0
    index = 0
    while now <= until:
        while index < len(pending) and pending[index][0] <= now:
            t, frame = pending[index]
            stage.enqueue((t, t, frame))
            index += 1
        stage.dequeue(now, out)
        now += step
    return out


def test_delay_stage_releases_each_packet_exactly_delay_later_and_in_order() -> None:
    stage = DelayStage(20 * MS)
    arrivals = [(i * 3 * MS, bytes([i]) * 60) for i in range(10)]
    out = run(stage, arrivals, until=100 * MS)
    assert [item[0] for item in out] == [t + 20 * MS for t, _ in arrivals]
    assert [item[2] for item in out] == [frame for _, frame in arrivals]
    assert len(stage) == 0 and stage.size_bytes == 0


def test_delay_stage_holds_packets_until_due() -> None:
    stage = DelayStage(5 * MS)
    stage.enqueue((0, 0, b"x" * 100))
    out: list[Item] = []
    stage.dequeue(5 * MS - 1, out)
    assert out == [] and stage.next_due() == 5 * MS and len(stage) == 1 and stage.size_bytes == 100
    stage.dequeue(5 * MS, out)
    assert out == [(5 * MS, 0, b"x" * 100)]


def test_rate_stage_serialises_a_burst_back_to_back_counting_whole_frames() -> None:
    # 12 Mbit/s: a 1514-byte frame takes 1514 * 8 / 12e6 s = 1009.333 us.
    stage = RateStage(12e6, DropTail(limit_packets=100))
    out = run(stage, [(0, FULL)] * 10, until=20 * MS, step=10_000)
    per_frame = 1514 * 8 / 12e6 * 1e9
    expected = [round((k + 1) * per_frame) for k in range(10)]
    assert [item[0] for item in out] == pytest.approx(expected, abs=10)
    # queue delay: the k-th frame waited k transmissions
    assert stage.queue_delay.count == 10
    assert stage.queue_delay.max_us == pytest.approx(9 * per_frame / 1000, abs=2)


def test_rate_stage_starts_an_idle_link_at_the_arrival_time() -> None:
    stage = RateStage(8e6, DropTail())
    out = run(stage, [(0, bytes(1000)), (50 * MS, bytes(1000))], until=60 * MS, step=100_000)
    assert [item[0] for item in out] == [1 * MS, 51 * MS]
    assert stage.queue_delay.max_us == 0


def test_rate_stage_droptail_by_packets_counts_overflow() -> None:
    stage = RateStage(1e6, DropTail(limit_packets=5))
    for _ in range(20):
        stage.enqueue((0, 0, FULL))
    # one frame in transmission + 5 queued; the other 14 were refused
    assert stage.drops == {"queue_overflow": 14}
    assert len(stage) == 6
    out = run(stage, [], until=200 * MS, step=MS)
    assert len(out) == 6


def test_rate_stage_droptail_by_bytes() -> None:
    stage = RateStage(1e6, DropTail(limit_bytes=3 * 1514))
    for _ in range(10):
        stage.enqueue((0, 0, FULL))
    assert stage.drops == {"queue_overflow": 6}
    assert stage.queue.size_bytes == 3 * 1514


def test_throughput_trace_stage_waits_out_an_outage_and_resumes_at_the_new_rate() -> None:
    trace = ThroughputTrace((8.0, 0.0, 16.0), interval_ms=1000)
    stage = ThroughputTraceStage(trace, DropTail(), origin_ns=0)
    # 1000 bytes = 8000 bits: 4000 bits go at 8 Mbit/s in the last 0.5 ms of second 0, then a 1 s outage,
    # then the other 4000 bits at 16 Mbit/s take 0.25 ms.
    stage.enqueue((999_500_000, 999_500_000, bytes(1000)))
    assert stage.next_due() == 2_000_250_000
    assert stage.rate_mbit_at(1_500_000_000) == 0.0
    assert stage.rate_mbit_at(3_000_000_000) == 8.0  # the trace repeats with period 3 s


def test_throughput_trace_stage_follows_the_trace_over_time() -> None:
    trace = ThroughputTrace((12.0, 24.0), interval_ms=100)
    stage = ThroughputTraceStage(trace, DropTail(limit_packets=100000), origin_ns=0)
    arrivals = [(0, FULL)] * 3000  # far more than the link can carry in 400 ms
    out = run(stage, arrivals, until=400 * MS, step=MS)
    sent_bits = [0.0] * 4
    for due, _, frame in out:
        if due < 400 * MS:
            sent_bits[due // (100 * MS)] += len(frame) * 8
    mbit = [bits / 0.1 / 1e6 for bits in sent_bits]
    assert mbit == pytest.approx([12.0, 24.0, 12.0, 24.0], rel=0.02)


def test_mahimahi_stage_uses_one_opportunity_per_full_packet_and_repeats() -> None:
    trace = MahimahiTrace((1, 2, 2, 5))  # period 5 ms
    stage = DeliveryTraceStage(trace, DropTail(), origin_ns=0)
    out = run(stage, [(0, FULL)] * 6, until=20 * MS, step=100_000)
    assert [item[0] for item in out] == [1 * MS, 2 * MS, 2 * MS, 5 * MS, 6 * MS, 7 * MS]


def test_mahimahi_stage_packs_small_packets_and_splits_large_ones_across_opportunities() -> None:
    trace = MahimahiTrace((1, 2, 3, 4, 10))
    stage = DeliveryTraceStage(trace, DropTail(), origin_ns=0)
    small = bytes(14 + 500)  # 500 IP bytes: three fit one 1500-byte opportunity
    out = run(stage, [(0, small)] * 3, until=1 * MS, step=100_000)
    assert [item[0] for item in out] == [1 * MS] * 3
    big = bytes(14 + 2000)  # needs 2 opportunities; the 1000 bytes left go to the next packet
    out = run(stage, [(int(1.5 * MS), big), (int(1.5 * MS), small)], until=5 * MS, step=100_000)
    assert [item[0] for item in out] == [3 * MS, 3 * MS]


def test_mahimahi_stage_loses_opportunities_while_idle() -> None:
    trace = MahimahiTrace((1, 2, 3, 4, 5))
    stage = DeliveryTraceStage(trace, DropTail(), origin_ns=0)
    stage.enqueue((int(3.5 * MS), int(3.5 * MS), FULL))  # opportunities at 1, 2, 3 ms went unused
    assert stage.next_due() == 4 * MS
    out: list[Item] = []
    stage.dequeue(4 * MS, out)
    assert [item[0] for item in out] == [4 * MS]
    stage.enqueue((int(1000.5 * MS), int(1000.5 * MS), FULL))  # 200 idle periods later
    assert stage.next_due() == 1001 * MS


def test_random_loss_rate_over_100k_packets_is_within_the_binomial_99_interval() -> None:
    stage = LossStage(RandomLossModel(0.01, random.Random(7)))
    for i in range(100_000):
        stage.enqueue((i, i, b"x"))
    low, high = binomial_interval(100_000, 0.01, 0.99)
    assert low <= stage.drops["loss"] <= high
    assert len(stage) == 100_000 - stage.drops["loss"]


def test_loss_is_reproducible_from_the_seed_and_differs_between_seeds() -> None:
    def pattern(seed: int) -> list[bool]:
        model = RandomLossModel(0.1, random.Random(seed))
        return [model.lose() for _ in range(2000)]

    assert pattern(1) == pattern(1)
    assert pattern(1) != pattern(2)


def test_gilbert_elliott_steady_state_loss_and_burst_length() -> None:
    model = GilbertElliottModel(p=0.01, r=0.3, h=0.001, k=0.3, rng=random.Random(3))
    n = 300_000
    lost = sum(model.lose() for _ in range(n))
    expected = (0.3 * 0.001 + 0.01 * 0.3) / 0.31  # 1.065 %
    assert model.steady_state_loss() == pytest.approx(expected)
    assert lost / n == pytest.approx(expected, rel=0.10)


def test_simple_gilbert_loses_in_bursts_of_mean_length_one_over_r() -> None:
    model = GilbertElliottModel(p=0.02, r=0.25, h=0.0, k=1.0, rng=random.Random(11))
    fates = [model.lose() for _ in range(200_000)]
    bursts = []
    run_length = 0
    for lost in fates:
        if lost:
            run_length += 1
        elif run_length:
            bursts.append(run_length)
            run_length = 0
    assert statistics.mean(bursts) == pytest.approx(1 / 0.25, rel=0.08)
    assert sum(fates) / len(fates) == pytest.approx(0.02 / 0.27, rel=0.08)


def _jitter_delays(distribution: str, jitter_ms: float, reorder: bool = False, n: int = 20_000) -> list[int]:
    stage = JitterStage(10 * MS, int(jitter_ms * MS), distribution, random.Random(5), reorder=reorder)
    spacing = 100 * MS  # far apart: in-order clamping never applies
    delays = []
    for i in range(n):
        stage.enqueue((i * spacing, i * spacing, b"p"))
        out: list[Item] = []
        stage.dequeue(i * spacing + 10**12, out)
        delays.extend(due - i * spacing for due, _, _ in out)
    return delays


def test_uniform_jitter_stays_within_delay_plus_minus_jitter() -> None:
    delays = _jitter_delays("uniform", 2.0)
    assert min(delays) >= 8 * MS and max(delays) < 12 * MS
    assert statistics.mean(delays) == pytest.approx(10 * MS, rel=0.01)
    assert statistics.pstdev(delays) == pytest.approx(2 * MS / 3**0.5, rel=0.03)


def test_normal_jitter_has_standard_deviation_jitter() -> None:
    delays = _jitter_delays("normal", 2.0)
    assert statistics.mean(delays) == pytest.approx(10 * MS, rel=0.01)
    assert statistics.pstdev(delays) == pytest.approx(2 * MS, rel=0.04)


def test_pareto_jitter_is_heavy_on_the_right_as_netem_table() -> None:
    delays = _jitter_delays("pareto", 2.0)
    assert min(delays) >= 10 * MS - int(0.67 * 2 * MS)
    assert max(delays) <= 10 * MS + 4 * 2 * MS
    assert statistics.median(delays) < statistics.mean(delays)  # right-skewed


def test_jitter_never_gives_a_negative_delay() -> None:
    stage = JitterStage(1 * MS, 5 * MS, "normal", random.Random(1))
    for i in range(5000):
        stage.enqueue((i * 50 * MS, i * 50 * MS, b"p"))
    out: list[Item] = []
    stage.dequeue(10**15, out)
    assert all(due >= rx for due, rx, _ in out)


def test_in_order_jitter_never_reorders_but_reorder_mode_does() -> None:
    def order(reorder: bool) -> list[int]:
        stage = JitterStage(10 * MS, 5 * MS, "uniform", random.Random(2), reorder=reorder)
        for i in range(2000):  # 0.1 ms apart, far less than the jitter
            stage.enqueue((i * 100_000, i * 100_000, i.to_bytes(2, "big")))
        out: list[Item] = []
        stage.dequeue(10**12, out)
        assert [item[0] for item in out] == sorted(item[0] for item in out)
        return [int.from_bytes(item[2], "big") for item in out]

    assert order(False) == list(range(2000))
    assert order(True) != list(range(2000))


def test_stage_parameters_are_checked() -> None:
    with pytest.raises(LinkError, match="delay"):
        DelayStage(-1)
    with pytest.raises(LinkError, match="rate"):
        RateStage(0, DropTail())
    with pytest.raises(LinkError, match="jitter distribution"):
        JitterStage(0, 1, "lognormal", random.Random(1))
    with pytest.raises(LinkError, match="probability"):
        RandomLossModel(1.5, random.Random(1))
    with pytest.raises(LinkError, match="Gilbert-Elliott"):
        GilbertElliottModel(0.1, 0.2, -0.1, 1.0, random.Random(1))


def test_drain_returns_every_held_frame_oldest_first() -> None:
    stage = RateStage(1e6, DropTail())
    frames = [bytes([i]) * 200 for i in range(5)]
    for frame in frames:
        stage.enqueue((0, 0, frame))
    assert [item[2] for item in stage.drain()] == frames
    assert len(stage) == 0 and stage.size_bytes == 0 and stage.next_due() is None


def test_rate_stage_never_overlaps_a_frame_stamped_during_a_finished_transmission() -> None:
    # Kernel receive stamps can be older than the loop's last advance: a frame stamped at 0.5 ms, read after
    # the loop already completed the transmission that ran 0 - 1 ms, still waits for that transmission.
    stage = RateStage(8e6, DropTail())
    stage.enqueue((0, 0, bytes(1000)))
    out: list[Item] = []
    stage.dequeue(2 * MS, out)
    assert [item[0] for item in out] == [1 * MS]
    stage.enqueue((MS // 2, MS // 2, bytes(1000)))
    assert stage.next_due() == 2 * MS
    assert stage.queue_delay.max_us == 500

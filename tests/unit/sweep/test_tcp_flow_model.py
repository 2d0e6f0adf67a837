"""The advisor's TCP window model over repeated transfers (splitbed.tcpflow), by hand-computed cases: the link's
BDP and queue, Linux's restart after idle (halving per RTO, not a reset), CUBIC's reduction when the queue
overflows and its return to W_max after K seconds, growth only while the window is used, and the steady state that
latency.predict ranks with."""

from __future__ import annotations

import math

import pytest

from netem.profile import LinkProfile
from splitbed.host.tcpinfo import restart_after_idle
from splitbed.latency import ModelTiming, PartitionTiming, predict
from splitbed.linkmodel import DirectionModel, LinkModel, queue_segments
from splitbed.tcpflow import (
    CUBIC_BETA,
    CUBIC_C,
    MSS_BYTES,
    Bottleneck,
    Window,
    after_idle,
    steady_transfer,
    transfer,
)

FRAME_MS_LTE = 1514 * 8 / 48_097  # one full frame at lte's uplink rate (48.097 Mbit/s of frames)
BLOCK1_CONV1 = 12_845_077         # VGG16's block1_conv1 tensor as one TLV data unit (bytes)


def lte_up() -> tuple[DirectionModel, Bottleneck]:
    up = LinkModel.from_profile("lte", slow_start_after_idle=True).uplink
    assert up.queue_segments is not None
    return up, Bottleneck(up.rate_mbit, 32.6, up.queue_segments)


def test_the_bottleneck_of_lte_has_its_bdp_and_its_100_ms_queue() -> None:
    up, path = lte_up()
    assert up.queue_segments == pytest.approx(601_213 / 1514)  # the profile's queue_bytes in full frames
    assert path.frame_ms == pytest.approx(FRAME_MS_LTE)
    assert path.bdp_segments == pytest.approx(32.6 / FRAME_MS_LTE)  # 129.5 segments in one RTT
    assert path.capacity_segments == pytest.approx(32.6 / FRAME_MS_LTE + 601_213 / 1514)
    assert path.queue_delay_ms(361) == pytest.approx((361 - 32.6 / FRAME_MS_LTE) * FRAME_MS_LTE)
    assert path.queue_delay_ms(10) == 0.0 and path.queue_delay_ms(10_000) == pytest.approx(601_213 / 1514 *
                                                                                           FRAME_MS_LTE)
    # no limit given: the default of 1000 packets both link backends apply
    assert queue_segments(LinkProfile.load("ideal").uplink) == 1000.0


def test_an_idle_halves_the_window_once_per_rto_it_does_not_reset_it() -> None:
    """A record of lte's block1_conv1 warm-up (2026-12-05): cwnd 470, ssthresh 28, RTO 316 ms, idle 1332 ms. The
    idle spans four RTOs past the first (1016, 700, 384, 68 > 0): 470 -> 235 -> 117 -> 58 -> 29; ssthresh becomes
    max(28, 3/4 x 470 = 235 + 117)."""
    assert restart_after_idle(470, 28, 1332.0, 316.0) == (29, 352)
    assert restart_after_idle(470, 28, 316.0, 316.0) == (470, 28)  # not longer than the RTO: unchanged
    assert restart_after_idle(470, None, 600.0, 316.0) == (235, None)  # no loss yet: the threshold stays infinite
    assert restart_after_idle(22, 393, 924.0, 240.0) == (10, 393)  # never below the initial window
    assert restart_after_idle(470, 28, 1332.0, 316.0, in_reduction=True) == (29, 28)


def test_a_window_that_covers_the_bdp_sends_at_the_link_rate() -> None:
    up, path = lte_up()
    done = transfer(path, Window(cwnd=200, ssthresh=300), BLOCK1_CONV1, delay_ms=16.3,
                    serialisation_ms=up.serialisation_ms)
    assert done.ms == pytest.approx(up.transfer_ms(BLOCK1_CONV1, rtt_ms=32.6, slow_start=False))
    assert done.window_limited_rounds == 0


def test_from_the_initial_window_slow_start_pays_a_round_trip_per_doubling_below_the_bdp() -> None:
    link = DirectionModel(rate_mbit=100.0, delay_ms=25.0)  # BDP 50 ms x 100 Mbit/s = 412.8 frames
    path = Bottleneck(100.0, 50.0, None)
    payload = 150 * MSS_BYTES
    done = transfer(path, Window(), payload, delay_ms=25.0, serialisation_ms=link.serialisation_ms)
    # windows of 10, 20 and 40 segments take one RTT each (70 sent), the last 80 go at the link's rate
    assert done.window_limited_rounds == 3
    assert done.ms == pytest.approx(3 * 50.0 + link.serialisation_ms(80 * MSS_BYTES) + 25.0)
    assert done.ms == pytest.approx(link.transfer_ms(payload, rtt_ms=50.0, slow_start=True))
    assert done.end.cwnd == 160  # grown by one segment per segment ACKed: 10 + 10 + 20 + 40 + 80


def test_the_window_grows_only_while_the_transfer_fills_it() -> None:
    """A 12-segment tensor (VGG16's fc1, 16,405 bytes) from the initial window: 10 go, their ACKs grow the
    window to 20, the last 2 go in the next round, which uses too little of 20 to grow it (Linux
    tcp_is_cwnd_limited: cwnd < 2 x in flight). The testbed's records show 20-22 before every fc1 transfer."""
    up, path = lte_up()
    done = transfer(path, Window(), 16_405, delay_ms=16.3, serialisation_ms=up.serialisation_ms)
    assert done.end.cwnd == 20 and done.window_limited_rounds == 1
    assert done.ms == pytest.approx(32.6 + up.serialisation_ms(16_405 - 10 * MSS_BYTES) + 16.3)


def test_a_queue_overflow_is_cubics_reduction_with_w_max_at_the_overflow() -> None:
    _, path = lte_up()
    filled = Window.after_filling(path)
    overflow = path.capacity_segments + 1
    assert filled.w_max == pytest.approx(overflow)
    assert filled.cwnd == filled.ssthresh == pytest.approx(CUBIC_BETA * overflow)
    assert filled.epoch_ms is None
    assert Window.after_filling(Bottleneck(None, 32.6, None)) == Window()  # unshaped: nothing to fill


def test_after_a_reduction_cubic_regains_w_max_after_k_seconds_of_sending() -> None:
    """W(t) = C (t - K)^3 + W_max with K = cbrt(W_max (1 - beta) / C) (RFC 9438): sending at the link's rate from
    the reduced window, half-way to K the window is W_max - C (K/2)^3 = W_max (1 - (1 - beta) / 8) (one round's
    lag allowed); the queue overflows again as the window comes back to W_max (the window that overflowed it)."""
    up, path = lte_up()
    filled = Window.after_filling(path)
    k_s = (filled.w_max * (1 - CUBIC_BETA) / CUBIC_C) ** (1 / 3)
    per_s = 1000 / path.frame_ms * MSS_BYTES  # payload bytes per second at the link's rate
    half = transfer(path, filled, int(0.5 * k_s * per_s), delay_ms=16.3, serialisation_ms=up.serialisation_ms)
    assert half.end.cwnd == pytest.approx(filled.w_max * (1 - (1 - CUBIC_BETA) / 8), rel=0.02)
    assert half.end.w_max == filled.w_max  # no loss yet
    late = transfer(path, filled, int(1.3 * k_s * per_s), delay_ms=16.3, serialisation_ms=up.serialisation_ms)
    assert late.end.w_max < filled.w_max  # overflowed again below the old maximum: fast convergence lowers W_max
    assert late.end.ssthresh == pytest.approx(CUBIC_BETA * (path.capacity_segments + 1), rel=0.01)


def test_a_multi_mb_tensor_keeps_a_window_above_the_bdp_through_a_short_idle() -> None:
    """lte, VGG16's block1_conv1 every cycle, the rest of the cycle 475 ms: the window ends near BDP + queue
    with the RTT inflated by the queue, so the idle spans one RTO past the first at most, and the halved window
    still covers the BDP. The transfer runs at the link's rate; restarting it from 10 segments would add the
    round trips of four doublings."""
    up, path = lte_up()
    steady = steady_transfer(path, BLOCK1_CONV1, delay_ms=16.3, between_ms=475.0, restart=True,
                             serialisation_ms=up.serialisation_ms)
    assert min(steady.start_cwnd) > path.bdp_segments and not steady.pays_round_trips
    assert steady.ms == pytest.approx(up.transfer_ms(BLOCK1_CONV1, rtt_ms=32.6, slow_start=False))
    restarted = up.transfer_ms(BLOCK1_CONV1, rtt_ms=32.6, slow_start=True)
    assert restarted - steady.ms == pytest.approx(4 * 32.6 - up.serialisation_ms(150 * MSS_BYTES))


def test_a_long_idle_brings_the_window_back_to_the_initial_one() -> None:
    """Idle for many RTOs, every transfer starts from 10 segments: the steady state is the restart from the
    initial window (the threshold, beta x (BDP + queue), lies above the BDP, so slow start doubles up to it)."""
    up, path = lte_up()
    steady = steady_transfer(path, 3_211_285, delay_ms=16.3, between_ms=10_000.0, restart=True,
                             serialisation_ms=up.serialisation_ms)
    assert set(steady.start_cwnd) == {10}
    assert steady.ms == pytest.approx(up.transfer_ms(3_211_285, rtt_ms=32.6, slow_start=True))
    kept = steady_transfer(path, 3_211_285, delay_ms=16.3, between_ms=10_000.0, restart=False,
                           serialisation_ms=up.serialisation_ms)  # tcp_slow_start_after_idle = 0
    assert kept.ms == pytest.approx(up.transfer_ms(3_211_285, rtt_ms=32.6, slow_start=False))


def test_the_rto_counts_the_queue_the_transfer_left() -> None:
    """A sender idle 300 ms after a transfer that left no queue (RTO 32.6 + 200 ms) restarts; after one whose
    last segment queued behind 100 segments (25 ms more RTT) it does not restart before 257.8 ms."""
    _, path = lte_up()
    base = transfer(path, Window(cwnd=100, ssthresh=300), 100 * MSS_BYTES, delay_ms=16.3,
                    serialisation_ms=lambda b: 0.0)
    assert base.last_queue_ms == 0.0
    assert after_idle(path, base, 240.0, restart=True).cwnd < base.end.cwnd
    queued = transfer(path, Window(cwnd=230, ssthresh=300), 230 * MSS_BYTES, delay_ms=16.3,
                      serialisation_ms=lambda b: 0.0)
    assert queued.last_queue_ms == pytest.approx((230 - path.bdp_segments) * FRAME_MS_LTE)
    assert after_idle(path, queued, 240.0, restart=True).cwnd == queued.end.cwnd
    assert math.isclose(after_idle(path, queued, 240.0, restart=False).cwnd, queued.end.cwnd)


def test_predict_charges_round_trips_only_where_the_window_falls_short() -> None:
    """lte, phone-sized cycle: the 12.8 MB tensor goes at the link's rate, the 16 kB one pays the round trip of
    its restarted initial window (the '+' of `splitbed advise`)."""
    timing = ModelTiming("m", "tlv", "none", "img", {}, 5, 1.0, 0.5, (
        PartitionTiming("early", 0, 10.0, 440.0, 0.1, 1.0, BLOCK1_CONV1, BLOCK1_CONV1, 2_140),
        PartitionTiming("late", 1, 560.0, 6.0, 0.1, 0.1, 16_405, 16_405, 2_140)))
    lte = LinkModel.from_profile("lte", slow_start_after_idle=True)
    by_name = {p.partition: p for p in predict(timing, lte)}
    assert by_name["early"].uplink_ms == pytest.approx(lte.uplink.transfer_ms(BLOCK1_CONV1, rtt_ms=32.6,
                                                                              slow_start=False))
    assert not by_name["early"].slow_start
    assert by_name["late"].slow_start
    assert by_name["late"].uplink_ms == pytest.approx(32.6 + lte.uplink.serialisation_ms(16_405 - 10 * MSS_BYTES)
                                                      + 16.3)

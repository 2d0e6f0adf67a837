"""The advisor's link and ranking arithmetic (splitbed.linkmodel, splitbed.latency, splitbed.advise), by hand-computed cases: frames on the wire,
slow start after idle, profile reading, Spearman with ties, and the comparison's contradiction rule."""

from __future__ import annotations

import numpy as np
import pytest

from netem.profile import LinkProfile
from netem.trace import delivery_ms, start_phases_ms
from splitbed.advise import Measured, compare, ranks, spearman
from splitbed.devices import load
from splitbed.latency import AdviseError, ModelTiming, PartitionTiming, predict
from splitbed.linkmodel import (
    FRAME_OVERHEAD_BYTES,
    MSS_BYTES,
    DirectionModel,
    LinkModel,
    SendWindow,
    wire_bytes,
)


def test_wire_bytes_counts_headers_per_frame() -> None:
    assert wire_bytes(1) == 1 + FRAME_OVERHEAD_BYTES
    assert wire_bytes(MSS_BYTES) == MSS_BYTES + FRAME_OVERHEAD_BYTES
    assert wire_bytes(MSS_BYTES + 1) == MSS_BYTES + 1 + 2 * FRAME_OVERHEAD_BYTES


def test_transfer_without_slow_start_is_delay_plus_serialisation() -> None:
    link = DirectionModel(rate_mbit=8.0, delay_ms=10.0)
    payload = 100 * MSS_BYTES
    expected = 10.0 + (payload + 100 * FRAME_OVERHEAD_BYTES) * 8 / 8000  # bytes * 8 / (kbit per ms)
    assert link.transfer_ms(payload, rtt_ms=20.0, slow_start=False) == pytest.approx(expected)


def test_slow_start_adds_round_trips_until_the_window_covers_the_bdp() -> None:
    link = DirectionModel(rate_mbit=100.0, delay_ms=25.0)  # BDP = 100 Mbit/s x 50 ms = 625,000 bytes
    payload = 150 * MSS_BYTES
    # windows of 10, 20, 40 segments take one RTT each (70 sent), the remaining 80 go at line rate
    expected = 3 * 50.0 + (80 * MSS_BYTES + 80 * FRAME_OVERHEAD_BYTES) * 8 / 100e3 + 25.0
    assert link.transfer_ms(payload, rtt_ms=50.0, slow_start=True) == pytest.approx(expected)
    assert link.transfer_ms(payload, rtt_ms=50.0, slow_start=True) > link.transfer_ms(payload, rtt_ms=50.0,
                                                                                       slow_start=False)


def test_small_bdp_makes_slow_start_irrelevant() -> None:
    link = DirectionModel(rate_mbit=2.0, delay_ms=1.0)  # BDP 500 bytes < initial window
    assert link.transfer_ms(10**6, rtt_ms=2.0, slow_start=True) == link.transfer_ms(10**6, rtt_ms=2.0,
                                                                                    slow_start=False)


def test_a_recorded_window_grows_by_slow_start_then_one_segment_per_round_trip() -> None:
    link = DirectionModel(rate_mbit=100.0, delay_ms=25.0)  # BDP 625,000 bytes: no round is rate-limited
    payload = 100 * MSS_BYTES
    # windows of 20 (slow start, capped at ssthresh 30), 30 and 31 segments (congestion avoidance): 81 sent
    # in three round trips, the remaining 19 go at line rate
    expected = 3 * 50.0 + (19 * MSS_BYTES + 19 * FRAME_OVERHEAD_BYTES) * 8 / 100e3 + 25.0
    window = SendWindow(20, ssthresh_segments=30)
    assert link.transfer_ms(payload, rtt_ms=50.0, slow_start=False, window=window) == pytest.approx(expected)


def test_a_window_that_holds_the_transfer_costs_no_round_trip() -> None:
    link = DirectionModel(rate_mbit=46.0, delay_ms=16.3)
    payload = 69 * MSS_BYTES
    full = link.transfer_ms(payload, rtt_ms=32.6, slow_start=False)
    assert link.transfer_ms(payload, rtt_ms=32.6, slow_start=False, window=SendWindow(69)) == pytest.approx(full)
    # one segment short: the last one waits for the first window's ACKs
    assert link.transfer_ms(payload, rtt_ms=32.6, slow_start=False, window=SendWindow(68, 10)) == pytest.approx(
        32.6 + link.serialisation_ms(MSS_BYTES) + 16.3)


def test_an_unshaped_direction_still_pays_round_trips_for_a_small_window() -> None:
    link = DirectionModel(rate_mbit=None, delay_ms=16.3)
    # 17 segments from a window of 10: one round trip, then the rest (no transmission time when unshaped)
    assert link.transfer_ms(17 * MSS_BYTES, rtt_ms=32.6, slow_start=False, window=SendWindow(10)) == \
        pytest.approx(32.6 + 16.3)
    assert link.transfer_ms(17 * MSS_BYTES, rtt_ms=32.6, slow_start=False) == pytest.approx(16.3)


def test_window_from_a_recorded_tcp_state_applies_the_idle_restart() -> None:
    state = {"congestion_control": "cubic", "ca_state": "open", "cwnd_segments": 80, "ssthresh_segments": None,
             "mss_bytes": 1448, "rtt_ms": 33.0, "rttvar_ms": 2.0, "min_rtt_ms": 32.6, "rto_ms": 233.0,
             "idle_ms": 300.0, "unacked_segments": 0, "total_retrans": 0, "peer_window_bytes": None}
    assert SendWindow.from_tcp_state(state, slow_start_after_idle=True) == SendWindow(40, None, 1448)  # no loss: doubling again
    assert SendWindow.from_tcp_state(state, slow_start_after_idle=False) == SendWindow(80, None, 1448)


def test_link_model_reads_the_profile_and_its_unshaped_directions() -> None:
    lte = LinkProfile.load("lte")
    model = LinkModel.from_profile(lte, slow_start_after_idle=False)
    assert (model.uplink.rate_mbit, model.uplink.delay_ms) == (48.097, 16.3)
    assert model.downlink.rate_mbit is None and "unshaped" in model.downlink.rate_note
    assert model.rtt_ms == pytest.approx(32.6)
    assert LinkModel.from_profile("ideal", unshaped_rate_mbit=250).uplink.rate_mbit == 250


def test_a_trace_driven_uplink_is_predicted_at_its_median_start_phase_not_its_mean_rate() -> None:
    driving = LinkModel.from_profile("5g-mmwave-driving", slow_start_after_idle=False)
    trace = driving.uplink.trace
    assert trace is not None and "at the median of 7200 start phases" in driving.uplink.rate_note
    # the trace's median in frames (65.2 Mbit/s of TCP payload x 1514/1448); its mean is 156.4
    assert driving.uplink.rate_mbit == pytest.approx(65.2 * 1514 / 1448, abs=0.1)
    payload = 3_300_000
    median = float(np.median(delivery_ms(trace, wire_bytes(payload), start_phases_ms(trace))))
    assert driving.uplink.transfer_ms(payload, rtt_ms=driving.rtt_ms, slow_start=False) == \
        pytest.approx(driving.uplink.delay_ms + median)
    at_mean_rate = wire_bytes(payload) * 8 / (trace.mean_rate_mbit() * 1e3)
    assert median > 2 * at_mean_rate


def _timing(parts: list[tuple[str, float, float, int]]) -> ModelTiming:
    return ModelTiming("m", "tlv", "none", "img", {}, 5, 1.0, 0.5,
                       tuple(PartitionTiming(n, i, h, t, 0.1, 0.1, b, b, 20_000)
                             for i, (n, h, t, b) in enumerate(parts)))


def test_prediction_ranks_by_the_sum_and_the_slow_link_favours_small_tensors() -> None:
    timing = _timing([("early", 1.0, 10.0, 600_000), ("late", 25.0, 1.0, 4_000)])
    fast = LinkModel(DirectionModel(1000.0, 0.5), DirectionModel(None, 0.5), "fast", False)
    slow = LinkModel(DirectionModel(2.0, 20.0), DirectionModel(None, 20.0), "slow", False)
    fast_rank = [p.partition for p in predict(timing, fast)]
    slow_rank = [p.partition for p in predict(timing, slow)]
    assert fast_rank == ["early", "late"] and slow_rank == ["late", "early"]
    early = predict(timing, fast)[0]
    assert early.e2e_ms == pytest.approx(early.local_ms + early.uplink_ms + early.remote_ms + early.downlink_ms)
    assert early.local_ms == pytest.approx(1.0 + 1.0 + 0.1)
    with pytest.raises(AdviseError, match="share of the model was not measured"):
        predict(timing, fast, ue_device=load("phone-midrange"))
    with pytest.raises(AdviseError, match="objective must be one of latency, energy"):
        predict(timing, fast, objective="speed")


def _shared(parts: list[tuple[str, float, float, int, float]]) -> ModelTiming:
    """Timings with each head's share of the model (the tail's is the rest)."""
    return ModelTiming("vgg16", "tlv", "none", "img", {}, 5, 1.0, 0.5,
                       tuple(PartitionTiming(n, i, h, t, 0.1, 0.1, b, b, 20_000, share, 1 - share)
                             for i, (n, h, t, b, share) in enumerate(parts)))


def test_a_phone_ue_makes_the_head_take_the_phones_share_and_ranks_by_energy_too() -> None:
    """Neurosurgeon-style: on a phone the late partition's head costs 0.9 x 564.84 ms, so a fast uplink favours
    sending early; the energy ranking weighs the phone's compute power against its radio model."""
    timing = _shared([("early", 1.0, 150.0, 400_000, 0.05), ("late", 150.0, 1.0, 16_000, 0.95)])
    lte = LinkModel(DirectionModel(46.0, 16.3), DirectionModel(None, 16.3), "lte", False, "lte")
    phone, edge = load("phone-midrange"), load("edge-l4")
    on_phone = {p.partition: p for p in predict(timing, lte, ue_device=phone, edge_device=edge)}
    assert on_phone["late"].head_ms == pytest.approx(564.84 * 0.95)
    assert on_phone["early"].tail_ms == pytest.approx(1.42455 * 0.95)  # the L4's int8 VGG16 x the tail's share
    assert on_phone["late"].compute_mj == pytest.approx(2.768 * 564.84 * 0.95)
    early = on_phone["early"]
    assert early.radio_mj == pytest.approx(438.39e-9 * 400_000 * 8 * 1e3 + 1288.04 * early.uplink_ms / 1e3)
    assert early.ue_energy_mj == pytest.approx(early.compute_mj + early.radio_mj)
    assert [p.partition for p in predict(timing, lte, ue_device=phone)] == ["early", "late"]
    by_energy = predict(timing, lte, ue_device=phone, objective="energy")
    assert by_energy[0].ue_energy_mj <= by_energy[1].ue_energy_mj
    on_host = {p.partition: p for p in predict(timing, lte)}  # host: the times measured here, no energy
    assert on_host["late"].head_ms == 150.0 and on_host["late"].ue_energy_mj is None
    sub6 = LinkModel(lte.uplink, lte.downlink, "5g-embb", False, "nr-sub6")
    with pytest.raises(AdviseError, match="cannot rank by energy on 5g-embb: device 'phone-midrange'"):
        predict(timing, sub6, ue_device=phone, objective="energy")
    assert predict(timing, sub6, ue_device=phone)[0].radio_mj is None  # latency still ranks
    with pytest.raises(AdviseError, match="needs a UE device profile"):
        predict(timing, lte, objective="energy")


def test_ranks_and_spearman() -> None:
    assert ranks([30.0, 10.0, 20.0, 10.0]) == [4.0, 1.5, 3.0, 1.5]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    with pytest.raises(AdviseError):
        spearman([1], [1])


def test_comparison_flags_only_clearly_measured_contradictions() -> None:
    timing = _timing([("a", 1, 1, 1000), ("b", 1, 1, 2000), ("c", 1, 1, 3000)])
    preds = predict(timing, LinkModel(DirectionModel(1.0, 0.0), DirectionModel(None, 0.0), "x", False))
    assert [p.partition for p in preds] == ["a", "b", "c"]
    measured = {"a": Measured(50, 45, 55, 6), "b": Measured(20, 18, 22, 6), "c": Measured(52, 40, 60, 6)}
    result = compare(preds, measured)
    assert result.contradictions == [("a", "b")]  # b clearly faster than a; a vs c overlaps: not counted
    assert result.predicted_best == "a" and result.measured_best == "b" and not result.best_matches
    assert not result.best_indistinguishable  # b's CI [18, 22] lies clearly below a's [45, 55]
    tie = compare(preds, dict(measured, b=Measured(44, 40, 46, 6)))
    assert tie.measured_best == "b" and not tie.best_matches and tie.best_indistinguishable  # [40, 46] vs [45, 55]
    assert result.spearman == pytest.approx(0.5)


def test_a_sender_restarts_only_after_idling_longer_than_rtt_plus_the_minimum_rto() -> None:
    """Linux's RTO is the smoothed RTT + at least TCP_RTO_MIN (200 ms), so on lte (32.6 ms RTT) a sender idle
    for 220 ms keeps its window and one idle for 240 ms starts again from 10 segments."""
    lte = LinkModel.from_profile("lte", slow_start_after_idle=True)
    assert not lte.restarts_after(220.0) and lte.restarts_after(240.0)
    assert not LinkModel.from_profile("lte", slow_start_after_idle=False).restarts_after(10_000.0)


def test_the_downlink_result_pays_the_round_trips_of_a_restarted_window() -> None:
    """The remote node idles from one RESULT to the next; a 23,611-byte RESULT does not fit the initial window of
    10 segments (14,480 bytes), so after a restart it needs a second round trip, unshaped downlink or not."""
    timing = ModelTiming("m", "tlv", "none", "img", {}, 5, 1.0, 0.5,
                         (PartitionTiming("p", 0, 300.0, 10.0, 0.1, 0.1, 1000, 1000, 23_611),))
    rtt = 32.6
    restarting = LinkModel(DirectionModel(46.0, 16.3), DirectionModel(None, 16.3), "lte", True)
    steady = LinkModel(DirectionModel(46.0, 16.3), DirectionModel(None, 16.3), "lte", False)
    down_restart = predict(timing, restarting)[0].downlink_ms
    down_steady = predict(timing, steady)[0].downlink_ms
    assert down_steady == pytest.approx(16.3 + 0.5)  # delay + result decode: no transmission time when unshaped
    assert down_restart == pytest.approx(rtt + 16.3 + 0.5)  # one more round trip for the second window
    short = ModelTiming("m", "tlv", "none", "img", {}, 5, 1.0, 0.5,
                        (PartitionTiming("p", 0, 10.0, 10.0, 0.1, 0.1, 1000, 1000, 23_611),))
    assert predict(short, restarting)[0].downlink_ms == pytest.approx(down_steady)  # idle < RTT + 200 ms

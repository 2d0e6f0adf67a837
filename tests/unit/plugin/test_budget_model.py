"""splitbed.plugin.budget's prediction by hand-computed cases: per-record compute + network, the network taken
from each record's TCP states (or, without them, from splitbed.tcpflow's steady state over the idle time)."""

from __future__ import annotations

from typing import Any

import pytest

from netem.profile import LinkProfile
from splitbed.linkmodel import FRAME_OVERHEAD_BYTES, MSS_BYTES, _sysctl_slow_start
from splitbed.plugin.budget import network_ms, predict_e2e_ms

LTE = LinkProfile.load("lte")  # 48.097 Mbit/s of frames up (46 of TCP), downlink unshaped, 16.3 ms one-way each
RTT = 32.6


def _tcp(cwnd: int, idle_ms: float = 50.0, ssthresh: int | None = None) -> dict[str, Any]:
    return {"congestion_control": "cubic", "ca_state": "open", "cwnd_segments": cwnd, "ssthresh_segments": ssthresh,
            "mss_bytes": MSS_BYTES, "rtt_ms": 33.0, "rttvar_ms": 2.0, "min_rtt_ms": 32.6, "rto_ms": 233.0,
            "idle_ms": idle_ms, "unacked_segments": 0, "total_retrans": 0, "peer_window_bytes": None}


def _record(compute: float, uplink_segments: int, up: dict[str, Any] | None, down: dict[str, Any] | None) -> dict:
    return {"preprocess_ms": compute / 5, "local_inference_ms": compute / 5, "encode_ms": compute / 5,
            "remote_processing_ms": compute / 5, "result_decode_ms": compute / 5,
            "uplink_bytes": uplink_segments * MSS_BYTES, "downlink_bytes": 1000, "uplink_tcp": up, "downlink_tcp": down}


def _line_rate_ms(segments: int) -> float:
    return segments * (MSS_BYTES + FRAME_OVERHEAD_BYTES) * 8 / (LTE.uplink.rate_mbit * 1e3)


def test_a_full_window_sends_at_the_link_rate() -> None:
    net = network_ms(69 * MSS_BYTES, 1000, 100.0, LTE, uplink_tcp=_tcp(120), downlink_tcp=_tcp(10))
    assert net["uplink_ms"] == pytest.approx(16.3 + _line_rate_ms(69))
    assert net["downlink_ms"] == pytest.approx(16.3)
    assert (net["uplink_start_cwnd"], net["from_tcp_state"]) == (120, 1.0)


def test_a_small_recorded_window_costs_round_trips() -> None:
    # 69 segments from cwnd 20 after a loss (ssthresh 25): rounds of 20 and 25 segments, then 24 at line rate
    net = network_ms(69 * MSS_BYTES, 1000, 100.0, LTE, uplink_tcp=_tcp(20, ssthresh=25), downlink_tcp=_tcp(10))
    assert net["uplink_ms"] == pytest.approx(2 * RTT + _line_rate_ms(24) + 16.3)


def test_a_window_restarted_after_idle_is_modelled_from_the_recorded_idle_time() -> None:
    # cwnd 80 idle for 10 s: restarted at 10 segments, then doubling: 10, 20, 40 -> 70 >= 69 after 2 rounds
    if not _sysctl_slow_start():
        pytest.skip("net.ipv4.tcp_slow_start_after_idle is off on this host: Linux does not restart the window")
    net = network_ms(69 * MSS_BYTES, 1000, 100.0, LTE, uplink_tcp=_tcp(80, idle_ms=10_000.0),
                     downlink_tcp=_tcp(10))
    assert net["uplink_start_cwnd"] == 10
    assert net["uplink_ms"] == pytest.approx(2 * RTT + _line_rate_ms(69 - 30) + 16.3)


def test_without_tcp_state_a_short_idle_keeps_the_window() -> None:
    short = network_ms(69 * MSS_BYTES, 1000, 100.0, LTE)
    assert short["uplink_ms"] == pytest.approx(16.3 + _line_rate_ms(69)) and short["from_tcp_state"] == 0.0


def test_without_tcp_state_an_idle_past_the_rto_halves_the_window_it_does_not_reset_it() -> None:
    """The steady state of splitbed.tcpflow: the connection's window (beta x (BDP + queue), 369 segments on lte)
    halved once per RTO of idle. 400 ms idle (+ 16.3 ms one-way) is one RTO (232.6 ms) past the first: one halving
    per cycle, which each transfer's slow start (below the threshold of 3/4 of the window the idle found) doubles
    back, so every transfer starts with its 69 segments' worth and sends them in one flight, where a reset to 10
    would charge two round trips; after 10 s the halvings reach the initial 10 segments: 10 and 20 in a round
    trip each, the last 39 at the link's rate."""
    once = network_ms(69 * MSS_BYTES, 1000, 400.0, LTE)
    assert once["uplink_start_cwnd"] >= 69
    assert once["uplink_ms"] == pytest.approx(16.3 + _line_rate_ms(69))
    long = network_ms(69 * MSS_BYTES, 1000, 10_000.0, LTE)
    assert long["uplink_start_cwnd"] == 10
    assert long["uplink_ms"] == pytest.approx(2 * RTT + _line_rate_ms(69 - 30) + 16.3)


def test_prediction_is_the_median_of_per_record_sums() -> None:
    records = [_record(100.0, 69, _tcp(120), _tcp(10)), _record(140.0, 69, _tcp(20, ssthresh=25), _tcp(10)),
               _record(60.0, 69, _tcp(120), _tcp(10))]
    total, detail = predict_e2e_ms(records, LTE)
    full = 16.3 + _line_rate_ms(69) + 16.3
    windowed = 2 * RTT + _line_rate_ms(24) + 16.3 + 16.3
    assert total == pytest.approx(sorted([100.0 + full, 140.0 + windowed, 60.0 + full])[1])
    assert detail["compute_ms"] == pytest.approx(100.0) and detail["uplink_bytes"] == 69 * MSS_BYTES


def test_no_records_is_an_error() -> None:
    with pytest.raises(ValueError, match="no records"):
        predict_e2e_ms([], LTE)

"""splitbed.nodes.timing: the delivery, downlink, processing, round-trip and end-to-end figures from both nodes'
stamps and the clock offset, by hand-computed cases (docs/METRICS.md)."""

from __future__ import annotations

import pytest

from splitbed.nodes.timing import APP_READ, KERNEL_RX, KERNEL_RX_BOUND, LocalSegments, Transfer

MS = 1_000_000  # ns


def test_kernel_stamps_end_both_transfers_and_the_offset_maps_the_remote_clock() -> None:
    offset = 500 * MS  # the remote's clock is 500 ms ahead of ours
    t = Transfer.derive(first_send=1_000 * MS, result_read=1_030 * MS, result_kernel=1_029 * MS,
                        last_byte_read=offset + 1_012 * MS, last_byte_kernel=offset + 1_010 * MS,
                        result_send=offset + 1_025 * MS, offset_ns=offset, uncertainty_ns=MS // 4)
    assert t.delivery_ms == pytest.approx(10.0)       # kernel arrival, not the read 2 ms later
    assert t.delivery_read_ms == pytest.approx(12.0)
    assert t.remote_read_lag_ms == pytest.approx(2.0)
    assert (t.delivery_end, t.downlink_end) == (KERNEL_RX, KERNEL_RX)
    assert t.downlink_ms == pytest.approx(4.0)        # 1029 - 1025
    assert t.local_read_lag_ms == pytest.approx(1.0)
    assert t.remote_processing_ms == pytest.approx(15.0)  # from the delivery's end to the RESULT sent
    assert t.round_trip_ms == pytest.approx(30.0)
    assert t.delivery_uncertainty_ms == pytest.approx(0.25)
    # the segments add up: delivery + remote processing + downlink = round trip on a shared clock's terms
    assert t.delivery_ms + t.remote_processing_ms + t.downlink_ms == pytest.approx(t.round_trip_ms - 1.0)


def test_without_kernel_stamps_the_reads_end_the_transfers() -> None:
    t = Transfer.derive(first_send=0, result_read=20 * MS, result_kernel=None, last_byte_read=8 * MS,
                        last_byte_kernel=None, result_send=15 * MS, offset_ns=0, uncertainty_ns=0)
    assert (t.delivery_ms, t.delivery_read_ms, t.remote_read_lag_ms) == (8.0, 8.0, None)
    assert (t.downlink_ms, t.local_read_lag_ms, t.remote_processing_ms) == (5.0, None, 7.0)
    assert (t.delivery_end, t.downlink_end) == (APP_READ, APP_READ)
    assert set(t.figures()) == {"delivery_ms", "delivery_end", "delivery_read_ms", "remote_read_lag_ms",
                                "delivery_uncertainty_ms", "downlink_ms", "downlink_end", "local_read_lag_ms",
                                "remote_processing_ms", "round_trip_ms"}


def test_a_bound_from_the_result_rest_ends_the_downlink_and_leaves_the_read_lag_out() -> None:
    """The leading unit read with its RESULT_REST: the downlink ends at the RESULT_REST's kernel stamp (a bound),
    named as such, and the rest of the wait up to the read stays the local read lag (the testbed's share)."""
    t = Transfer.derive(first_send=0, result_read=20 * MS, result_kernel=17 * MS, last_byte_read=8 * MS,
                        last_byte_kernel=7 * MS, result_send=15 * MS, offset_ns=0, uncertainty_ns=0,
                        result_bounded=True)
    assert (t.downlink_ms, t.local_read_lag_ms, t.downlink_end) == (2.0, 3.0, KERNEL_RX_BOUND)
    assert t.delivery_ms + t.remote_processing_ms + t.downlink_ms + t.local_read_lag_ms == t.round_trip_ms
    unbounded = Transfer.derive(first_send=0, result_read=20 * MS, result_kernel=None, last_byte_read=8 * MS,
                                last_byte_kernel=7 * MS, result_send=15 * MS, offset_ns=0, uncertainty_ns=0,
                                result_bounded=True)
    assert unbounded.downlink_end == APP_READ  # no stamp to bound with: the read, as before


def test_local_segments_and_what_is_missing_after_a_failure() -> None:
    stamps: dict[str, int | None] = {"local_start": 0, "local_preprocessed": 2 * MS, "local_head_done": 12 * MS,
                                     "local_encoded": 13 * MS, "local_first_send": 13 * MS,
                                     "local_send_done": 14 * MS, "local_result_received": 40 * MS,
                                     "local_end": 41 * MS}
    seg = LocalSegments.derive(stamps)
    assert (seg.preprocess_ms, seg.local_inference_ms, seg.encode_ms, seg.send_ms) == (2.0, 10.0, 1.0, 1.0)
    assert (seg.result_decode_ms, seg.e2e_latency_ms) == (1.0, 41.0)
    failed = LocalSegments.derive({k: v for k, v in stamps.items() if k not in ("local_result_received", "local_end")})
    assert failed.result_decode_ms is None and failed.e2e_latency_ms is None
    with pytest.raises(ValueError, match="local_head_done"):
        LocalSegments.derive({"local_start": 0, "local_preprocessed": 1})

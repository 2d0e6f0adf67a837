"""Check 4, capture: scapy captures on the ue and edge sides during one inference in a new session; the uplink TCP
stream is reassembled from each pcap and decoded with splitbed.format.Decoder alone.

- the decoded tensors are the ones the local node sent (CRC-32 from the record) and, lossless, equal the reference
  head's; lossy, the remote decoded the same values as the capture and they are within the documented bound;
- the stream the edge received is byte-identical to the one the UE sent; unit sizes equal the record's;
- bytes on the wire and the overhead ratio (wire bytes / TLV bytes) are reported (<results-dir>/capture/wire.csv);
- capture-based delivery time (first frame of the inference leaving the UE -> last frame reaching the edge, both
  pcaps stamped by this host's CLOCK_REALTIME: a duration on one clock) agrees with the record's delivery_ms
  (CLOCK_MONOTONIC, local first send -> remote read of the last byte) within [capture] delivery_tolerance_ms."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from netem.flows import tcp_stream
from splitbed.plugin.matrix import SuiteCase, check_settings, suite_settings
from splitbed.plugin.reference import Reference, error_bound_violations
from splitbed.plugin.wire import decode_uplink, find_connection, inference_figures

pytestmark = pytest.mark.root

TOLERANCE_MS = float(check_settings("capture")["delivery_tolerance_ms"])


@pytest.mark.suite("capture")
def test_capture(suite_case: SuiteCase, testbed: Any, capture: Any, reference: Reference,
                 wire_table: list[dict[str, Any]]) -> None:
    from splitbed.nodes.formatio import tensor_crc32

    with capture(testbed) as both:
        testbed.run({"action": "reconnect", "model": suite_case.model})  # the SYN is in the capture
        record = testbed.infer(suite_case.job())
    assert both.complete, f"a capture dropped or truncated packets: ue {both.ue.summary}, edge {both.edge.summary}"

    topology = testbed.topology
    conn = find_connection(both.pcaps["ue"], topology.edge_addr, testbed.remote_port)
    sent = tcp_stream(both.pcaps["ue"], conn.src, conn.sport, conn.dst, conn.dport)
    received = tcp_stream(both.pcaps["edge"], conn.src, conn.sport, conn.dst, conn.dport)
    assert received == sent, f"the edge received {len(received)} bytes, the UE sent {len(sent)}: streams differ"

    units = decode_uplink(sent)
    [aips] = [u for u in units if u.kind == "aips"]
    [data] = [u for u in units if u.kind == "data"]
    assert aips.size == record["aips_bytes"] and aips.aips_id == data.aips_id == record["aips_id"]
    assert data.size == record["serialized_intermediate_bytes"]
    assert data.offset == aips.offset + aips.size, "the AIPS and its data unit go in one send"

    check = record["delivery_check"]
    assert [tensor_crc32(t) for t in data.tensors] == check["received_crc32"], (
        "the tensors decoded from the capture differ from those the remote node decoded")
    head = reference.head(suite_case.partition, suite_settings()["image"])
    assert [tensor_crc32(t) for t in head] == check["sent_crc32"], "the reference head differs from the node's"
    for index, (ours, wire) in enumerate(zip(head, data.tensors, strict=True)):
        assert wire.shape == ours.shape and wire.dtype == ours.dtype
        if suite_case.lossless:
            assert np.array_equal(wire, ours), f"tensor {index} changed on the wire"
        else:
            assert error_bound_violations(suite_case.compression, ours, wire) == 0, (
                f"tensor {index} outside the {suite_case.compression} error bound")

    figures = inference_figures(both.pcaps["ue"], both.pcaps["edge"], conn, aips.offset, data.offset + data.size)
    assert figures["stream_bytes"] == record["uplink_bytes"]
    assert figures["overhead_ratio"] > 1.0
    difference = figures["capture_delivery_ms"] - record["delivery_ms"]
    wire_table.append({"case": suite_case.id, "tlv_bytes": record["uplink_bytes"], **figures,
                       "app_delivery_ms": record["delivery_ms"], "difference_ms": difference,
                       "retransmissions": sum(f.retransmissions for f in both.ue.flows if f.dport == conn.dport)})
    assert abs(difference) <= TOLERANCE_MS, (
        f"capture-based delivery {figures['capture_delivery_ms']:.3f} ms vs app-level {record['delivery_ms']:.3f} ms")

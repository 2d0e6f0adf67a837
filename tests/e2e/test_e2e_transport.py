"""Both transport bindings end to end (docs/PROTOCOL.md, section 8): the same session over TCP and over QUIC
(aioquic, a certificate made for the run) through the userspace link in namespaces, real nodes, real packets.

For each binding: every inference is ok and delivered bit-exact (CRC-32 of each tensor, sent vs decoded), the
record says which binding carried it (handshake, congestion controller, losses), and a capture on the UE side
sees the session's bytes on that binding only: QUIC is encrypted, so what is counted is UDP packets and bytes,
which must carry at least the TLV bytes the records say were sent (plus QUIC's and UDP's own headers).

The default suite runs QUIC, the binding only this test takes through a testbed end to end; TCP runs with --full,
its path being every other testbed's (delivered bit-exact: tests/e2e/test_e2e_correctness.py; captured and
counted on the UE side: tests/integration/sweep/test_sweep_capture.py; started on the fixed port:
tests/integration/sweep/test_sweep_run.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netem.capture import Capture
from splitbed.nodes.metrics import check_record
from splitbed.pytest_plugin import requires
from splitbed.testbed import EDGE_PORT, Testbed

pytestmark = pytest.mark.root

MODEL, PARTITION, WEIGHTS = "mobilenet_v2", 3, "random:1"
REPETITIONS = 3


@pytest.mark.parametrize("transport", [pytest.param("tcp", marks=pytest.mark.slow), "quic"])
def test_binding_end_to_end(transport: str, tmp_path: Path) -> None:
    requires("netns")
    with Testbed("5g-split-ai", "userspace", models=(MODEL,), weights=WEIGHTS, transport=transport,
                 warmup_partition=PARTITION, local_args=["--verify-delivery"]) as bed:
        assert bed.topology is not None
        with Capture(bed.topology, "ue", path=tmp_path / "ue.pcap") as cap:  # pytest removes it, not /tmp
            bed.run({"action": "reconnect", "model": MODEL})  # the handshake is in the capture
            records = bed.run({"model": MODEL, "partition": PARTITION, "compression": "none",
                               "repetitions": REPETITIONS, "tags": {"suite": "transport"}})
            bed.run({"action": "reconnect", "model": MODEL})  # ends the session: its last packets are sent
        edge, port = bed.topology.edge_addr, bed.remote_port
        # Over TCP both nodes started at once (the local node was given the fixed port before the remote's ready
        # line); a QUIC local node needs that line's certificate, so its remote announced an ephemeral port.
        assert (port == EDGE_PORT) == (transport == "tcp"), port
        stamps = bed.start_stamps  # the order of two stamps: the local node launched before that line came, or after
        assert (stamps["local_launched"] < stamps["remote_ready"]) == (transport == "tcp"), stamps
    assert [r["status"] for r in records] == ["ok"] * REPETITIONS, [r["error"] for r in records]
    for record in records:
        check_record(record)
        assert record["delivery_check"]["match"] is True, record["delivery_check"]
        block: dict[str, Any] = record["transport"]
        assert block["binding"] == transport
        assert block["handshake_ms"] is not None and block["handshake_ms"] > 0
        assert block["congestion_control"] in (("reno", "cubic") if transport == "quic" else ("cubic", "bbr", "reno"))
        if transport == "quic":
            assert block["lost_packets"] is not None and block["packets_sent"] > 0 and block["cpu_ms"] is not None
            assert record["delivery_end_reason"] == "userspace_transport"  # no kernel stamp through QUIC
            assert record["uplink_tcp"] is None
        else:
            assert record["transport"]["retransmitted_segments"] is not None
    assert cap.complete, cap.summary
    proto = "udp" if transport == "quic" else "tcp"
    uplink = [f for f in cap.flows if f.dst == edge and f.dport == port]
    assert {f.proto for f in uplink} == {proto}, [f.to_dict() for f in uplink]
    payload = sum(f.payload_bytes for f in uplink)
    sent = sum(r["uplink_bytes"] for r in records)
    # The session's uplink (configuration, AIPS, data units) all went this way, wrapped in the binding's headers.
    assert payload > sent, f"{payload} {proto} payload bytes to the edge, but the records sent {sent} bytes"
    assert payload < 2 * sent + 200_000, f"{payload} {proto} payload bytes for {sent} session bytes"

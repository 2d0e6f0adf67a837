"""Connections, stream reassembly without a SYN, and the per-inference join, on pcaps crafted with scapy where
every figure is known by construction (the real captures are in tests/integration/sweep/test_sweep_capture.py)."""

from __future__ import annotations

import random
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import RawPcapReader, wrpcap

from netem.flows import flow_stats
from splitbed.sweep.capture import point_dir_name, reported_capture_cpus, snap_pcap
from splitbed.traffic.inference import inference_units, match, peak_mbit, point_traffic
from splitbed.traffic.streams import connections, walk_units

UE, EDGE, PORT, SPORT = "198.18.0.1", "198.18.0.2", 7000, 40000
MSS = 1000


def unit(kind: int, size: int) -> bytes:
    """A TLV unit of `size` bytes in all (5-byte header included)."""
    return struct.pack("!BI", kind, size - 5) + bytes([kind]) * (size - 5)


def up(seq: int, data: bytes = b"", t: float = 0.0, flags: str = "A") -> Ether:
    packet = Ether() / IP(src=UE, dst=EDGE) / TCP(sport=SPORT, dport=PORT, seq=seq % (1 << 32), flags=flags)
    if data:
        packet = packet / Raw(data)
    packet.time = t
    return packet


def down(seq: int, data: bytes = b"", t: float = 0.0) -> Ether:
    packet = Ether() / IP(src=EDGE, dst=UE) / TCP(sport=PORT, dport=SPORT, seq=seq % (1 << 32), flags="A")
    if data:
        packet = packet / Raw(data)
    packet.time = t
    return packet


def record(aips: int, data: int, status: str = "ok", sent: bool = True) -> dict[str, Any]:
    return {"status": status, "aips_bytes": aips, "serialized_intermediate_bytes": data,
            "timestamps_ns": {"local_first_send": 1 if sent else None}, "tags": {}}


def session(isn: int = (1 << 32) - 3000) -> tuple[list[Ether], bytes, list[tuple[float, int]]]:
    """No SYN (the capture starts mid-session): PREPARE (23 B), then inference 1 = AIPS 33 + DATA 2,505,
    inference 2 = DATA 2,505 (one segment retransmitted), inference 3 = JSON-baseline unit 1,200; a RESULT of
    100 bytes after each. Returns packets, the uplink stream, and (time, index) of each inference's first frame."""
    stream = unit(0xFB, 23) + unit(1, 33) + unit(2, 2505) + unit(2, 2505) + unit(0xF8, 1200)
    bounds = [(0, 23), (23, 23 + 33 + 2505), (2561, 2561 + 2505), (5066, 5066 + 1200)]
    packets: list[Ether] = []
    clock = 10.0
    downseq = 5000
    starts = []
    for index, (start, end) in enumerate(bounds):
        clock += 0.050
        if index:
            starts.append((clock, index))
        for offset in range(start, end, MSS):
            packets.append(up(isn + offset, stream[offset:min(end, offset + MSS)], t=clock))
            clock += 0.0002
        if index == 2:  # the first segment of inference 2 again: a retransmission of 1000 bytes
            packets.append(up(isn + start, stream[start:start + MSS], t=clock))
            clock += 0.0002
        packets.append(down(downseq, t=clock))  # ACK
        clock += 0.001
        packets.append(down(downseq, b"r" * 100, t=clock))  # a reply
        downseq += 100
        clock += 0.0005
        packets.append(up(isn + end, t=clock))  # ACK of the reply
    return packets, stream, starts


def test_a_stream_without_its_syn_reassembles_from_the_first_payload_byte(tmp_path: Path) -> None:
    packets, stream, _ = session()
    body = packets[1:]
    random.Random(3).shuffle(body)  # reordered in the file (not in time): offsets are by sequence number
    path = tmp_path / "s.pcap"
    wrpcap(str(path), [packets[0], *body])
    [conn] = connections(path, EDGE, PORT)
    assert conn.client == (UE, SPORT) and not conn.up.syn_seen
    assert bytes(conn.up.stream) == stream and conn.up.hole_at is None
    assert [(o, k) for o, k, _ in walk_units(conn.up.stream)] == [(0, 0xFB), (23, 1), (56, 2), (2561, 2), (5066, 0xF8)]
    assert bytes(conn.down.stream) == b"r" * 400


def test_a_hole_is_reported_not_glued_over(tmp_path: Path) -> None:
    packets, _, _ = session()
    missing = [p for p in packets if not (p.haslayer(Raw) and p[TCP].seq == ((1 << 32) - 3000 + 1023) % (1 << 32))]
    path = tmp_path / "h.pcap"
    wrpcap(str(path), missing)
    [conn] = connections(path, EDGE, PORT)
    assert conn.up.hole_at == 1023 and len(conn.up.stream) == 1023
    units, notes = inference_units([conn])
    assert units == [] and "missing from the capture" in notes[0]


def test_per_inference_figures_add_up_to_the_flow_and_match_the_records(tmp_path: Path) -> None:
    packets, _, starts = session()
    path = tmp_path / "p.pcap"
    wrpcap(str(path), packets)
    conns = connections(path, EDGE, PORT)
    units, notes = inference_units(conns)
    assert notes == [] and [(u.aips_bytes, u.unit_bytes, u.unit_type) for u in units] == [
        (33, 2505, 2), (0, 2505, 2), (0, 1200, 0xF8)]
    records = [record(33, 2505), record(0, 0, "error", sent=False), record(0, 2505), record(0, 1200)]
    joined = point_traffic(records, conns, conns, {"pcaps": {}})
    assert joined.note is None and sorted(joined.figures) == [0, 2, 3]
    first, second, third = (joined.figures[i] for i in (0, 2, 3))
    # bursts: the frames carrying each inference's units
    assert first["burst"]["app_bytes"] == 33 + 2505 and first["burst"]["packets"] == 3
    assert second["burst"]["packets"] == 4 and second["burst"]["retransmitted_bytes"] == MSS
    assert second["burst"]["retransmitted_packets"] == 1 and first["burst"]["retransmitted_bytes"] == 0
    assert second["burst"]["payload_bytes"] == 2505 + MSS
    assert first["burst"]["gap_ms"] is None
    gap = second["burst"]["gap_ms"]
    assert gap == pytest.approx((starts[1][0] - (starts[0][0] + 2 * 0.0002)) * 1e3, abs=1e-6)
    assert second["burst"]["interval_ms"] == pytest.approx((starts[1][0] - starts[0][0]) * 1e3, abs=1e-6)
    # windows add up to the whole flow, less the frames before the first burst (the PREPARE and its replies)
    flows = {f.key[:4]: f for f in flow_stats(path)}
    uplink = flows[(UE, SPORT, EDGE, PORT)]
    downlink = flows[(EDGE, PORT, UE, SPORT)]
    assert sum(f["uplink"]["wire_bytes"] for f in (first, second, third)) + \
        joined.unassigned["ue_uplink"]["wire_bytes"] == uplink.wire_bytes
    assert sum(f["uplink"]["retransmitted_bytes"] for f in (first, second, third)) == uplink.retransmitted_bytes
    assert sum(f["downlink"]["wire_bytes"] for f in (first, second, third)) + \
        joined.unassigned["edge_downlink"]["wire_bytes"] == downlink.wire_bytes
    assert third["uplink"]["packets"] == 2 + 1 and third["downlink"]["packets"] == 2
    overhead = third["uplink"]["header_overhead_pct"]
    wire = third["uplink"]["wire_bytes"]
    assert overhead == pytest.approx(100 * (wire - 1200) / wire)


def test_a_record_whose_sizes_differ_stops_the_join_and_says_where(tmp_path: Path) -> None:
    packets, _, _ = session()
    path = tmp_path / "m.pcap"
    wrpcap(str(path), packets)
    conns = connections(path, EDGE, PORT)
    units, _ = inference_units(conns)
    pairs, why = match([record(33, 2505), record(0, 9999), record(0, 1200)], units)
    assert pairs == {0: 0} and why is not None and "record 1" in why and "9999" in why
    joined = point_traffic([record(33, 2505), record(0, 9999)], conns, conns, {})
    assert sorted(joined.figures) == [0] and joined.note is not None


def test_peak_bitrate_uses_fixed_bins_from_the_first_frame() -> None:
    stamps = [0.0, 0.0004, 0.0009, 0.0015, 0.0150]
    sizes = [1000, 1000, 1000, 500, 250]
    assert peak_mbit(stamps, sizes, 1) == pytest.approx(3000 * 8 / 1000)      # 3000 B in the first ms
    assert peak_mbit(stamps, sizes, 10) == pytest.approx(3500 * 8 / 10_000)  # the first 10 ms bin
    assert peak_mbit(stamps, sizes, 100) == pytest.approx(3750 * 8 / 100_000)
    assert peak_mbit([], [], 1) == 0.0


def test_snap_keeps_every_frame_header_and_its_original_length(tmp_path: Path) -> None:
    packets, _, _ = session()
    full, snapped = tmp_path / "full.pcap", tmp_path / "snap.pcap"
    wrpcap(str(full), packets)
    assert snap_pcap(full, snapped, 60) == len(packets)
    with RawPcapReader(str(snapped)) as reader:
        rows = [(len(data), meta.wirelen) for data, meta in reader]
    assert rows == [(min(60, len(p)), len(p)) for p in packets]
    # every byte and retransmission figure survives the cut: payload lengths come from the IP header
    assert [f.to_dict() for f in flow_stats(snapped)] == [f.to_dict() for f in flow_stats(full)]
    [conn] = connections(snapped, EDGE, PORT)
    assert conn.up.cut and sum(conn.up.repeated) == 1000 and sum(conn.up.payload) == 23 + 33 + 2 * 2505 + 1200 + 1000


def test_captured_records_say_where_each_capture_child_reported_it_ran() -> None:
    assert reported_capture_cpus({"edge": {"cpus": [1]}, "ue": {"cpus": [0, 1]}}) == \
        "ue child on 0,1; edge child on 1 (as each reported)"
    assert reported_capture_cpus({"ue": {"cpus": [0]}}) == \
        "ue child on 0; edge child: no report of its CPUs (as each reported)"  # its stop failed
    assert reported_capture_cpus({}) == "captured, but no capture child reported its CPUs"


def test_point_folder_names_are_readable_and_distinct() -> None:
    a = point_dir_name("5g-split-ai|vgg16|block1_pool|tlv|none|builtin:chelsea|auto|auto|process")
    b = point_dir_name("5g-split-ai|vgg16|block1_pool|tlv|none|builtin:chelsea|auto|auto|docker")
    assert a.startswith("5g-split-ai_vgg16_block1_pool_tlv-none_") and a != b and "/" not in a + b


def test_every_traffic_field_is_documented_in_metrics_md(tmp_path: Path) -> None:
    packets, _, _ = session()
    path = tmp_path / "d.pcap"
    wrpcap(str(path), packets)
    conns = connections(path, EDGE, PORT)
    section = point_traffic([record(33, 2505)], conns, conns, {}).figures[0]
    section["complete"] = True  # added by splitbed.sweep.capture
    text = (Path(__file__).resolve().parents[3] / "docs" / "METRICS.md").read_text()
    docs = text[text.index("## Added by the sweep: `traffic`"):text.index("## Other lines in driven mode")]
    names = set(re.findall(r"`([a-z0-9_]+)`", docs))
    nested = set(section["burst"]) | set(section["uplink"])
    assert set(section) - names == set() and nested - names == set()

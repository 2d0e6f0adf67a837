"""Flow statistics and TCP reassembly on pcaps crafted with scapy (the real captures are in integration tests)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from netem.errors import CaptureError
from netem.flows import flow_stats, parse_frame, tcp_stream

A, B = "198.18.0.1", "198.18.0.2"


def segment(seq: int, data: bytes = b"", flags: str = "A", t: float = 0.0) -> Ether:
    packet = Ether() / IP(src=A, dst=B) / TCP(sport=40000, dport=5201, seq=seq % (1 << 32), flags=flags)
    if data:
        packet = packet / Raw(data)
    packet.time = t
    return packet


def stream_packets(payload: bytes, isn: int, mss: int = 1000) -> list[Ether]:
    packets = [segment(isn, flags="S", t=1.0)]
    for i, offset in enumerate(range(0, len(payload), mss)):
        packets.append(segment(isn + 1 + offset, payload[offset:offset + mss], t=1.0 + 0.001 * (i + 1)))
    return packets


def test_counts_retransmissions_and_bytes(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 20  # 5120 bytes
    packets = stream_packets(payload[:5000], isn=1000)
    packets.append(segment(1001 + 2000, payload[2000:3000], t=2.0))  # full repeat
    packets.append(segment(1001 + 4500, payload[4500:5120], t=2.1))  # partial repeat (4500..5000 seen)
    packets.append(segment(1001 + 5120, b"", flags="FA", t=2.2))
    packets.append(Ether() / IP(src=B, dst=A) / UDP(sport=53, dport=9999) / Raw(b"x" * 10))
    packets.append(Ether() / ARP())
    path = tmp_path / "a.pcap"
    wrpcap(str(path), packets)
    tcp, udp = flow_stats(path)
    assert tcp.key == (A, 40000, B, 5201, "tcp") and udp.key == (B, 53, A, 9999, "udp")
    assert tcp.packets == 1 + 5 + 3 and tcp.payload_bytes == 5000 + 1000 + 620
    assert tcp.retransmissions == 2 and tcp.retransmitted_bytes == 1000 + 500
    assert tcp.wire_bytes == sum(len(p) for p in packets[:9])
    assert tcp.first_ts == pytest.approx(1.0) and tcp.last_ts == pytest.approx(2.2)
    assert udp.payload_bytes == 10 and udp.retransmissions == 0
    assert tcp_stream(path, A, 40000, B, 5201) == payload


def test_reassembly_across_sequence_wrap_and_reordering(tmp_path: Path) -> None:
    payload = random.Random(4).randbytes(50_000)
    packets = stream_packets(payload, isn=(1 << 32) - 20_000)  # wraps mid-stream
    body = packets[1:]
    random.Random(5).shuffle(body)
    path = tmp_path / "w.pcap"
    wrpcap(str(path), [packets[0], *body, body[3]])
    assert tcp_stream(path, A, 40000, B, 5201) == payload
    (flow,) = flow_stats(path)
    assert flow.retransmissions == 1  # only the explicit duplicate, not the reordering


def test_a_missing_range_is_an_error_not_silence(tmp_path: Path) -> None:
    packets = stream_packets(b"z" * 3000, isn=7)
    del packets[2]  # bytes 1000..2000 never captured
    path = tmp_path / "gap.pcap"
    wrpcap(str(path), packets)
    with pytest.raises(CaptureError, match="1000..2000 .* missing"):
        tcp_stream(path, A, 40000, B, 5201)
    with pytest.raises(CaptureError, match="no TCP stream"):
        tcp_stream(path, B, 5201, A, 40000)
    with pytest.raises(CaptureError, match="exceeds 100 bytes"):
        tcp_stream(path, A, 40000, B, 5201, max_bytes=100)


def test_bad_files_get_specific_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a pcap at all, sorry")
    with pytest.raises(CaptureError, match="not a readable pcap"):
        flow_stats(junk)
    with pytest.raises(CaptureError, match="cannot read pcap"):
        flow_stats(tmp_path / "missing.pcap")


def test_parse_frame_rejects_truncated_headers() -> None:
    frame = bytes(Ether() / IP(src=A, dst=B) / TCP(sport=1, dport=2, seq=5) / Raw(b"hello"))
    parsed = parse_frame(frame, 1.5, len(frame))
    assert parsed is not None and parsed.payload == b"hello" and parsed.seq == 5
    assert parse_frame(frame[:20], 0.0, 20) is None
    truncated_tcp = parse_frame(frame[:14 + 20 + 10], 0.0, 44)
    assert truncated_tcp is not None and truncated_tcp.sport == 0  # header cut: no ports invented

"""The QUIC binding's pieces that need no connection: the per-run certificate, the UDP buffers, and the record's
transport block (losses over one inference, when the binding's CPU set the pace)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from cryptography import x509

from splitbed.nodes.inference import CPU_BOUND_SHARE, transport_figures
from splitbed.nodes.quic import make_certificate, size_buffers


def test_the_certificate_is_made_for_the_address_and_only_its_public_part_leaves() -> None:
    cert, key, pem = make_certificate("198.18.0.2")
    assert b"PRIVATE" not in pem and pem.startswith(b"-----BEGIN CERTIFICATE-----")
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("198.18.0.2")]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 1
    other, _, _ = make_certificate("198.18.0.2")
    assert other.serial_number != cert.serial_number  # a new one every run


def test_udp_buffers_are_sized() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        before = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        granted = size_buffers(sock)
        assert granted is not None and granted >= before


class _Fake:
    def describe(self) -> dict[str, Any]:
        return {"binding": "quic"}


def test_transport_block_counts_over_the_inference_and_says_when_the_cpu_paced_it() -> None:
    stamps: dict[str, int | None] = {"local_first_send": 0, "local_result_received": 10_000_000}  # 10 ms
    before = {"packets_sent": 100, "packets_lost": 2, "cpu_ns": 1_000_000}
    slow = transport_figures(_Fake(), before, {"packets_sent": 150, "packets_lost": 5, "cpu_ns": 10_000_000,
                                               "cwnd_bytes": 1200}, stamps, None)
    assert (slow["packets_sent"], slow["lost_packets"], slow["cpu_ms"]) == (50, 3, 9.0)
    assert slow["cpu_bound"] is (9.0 >= CPU_BOUND_SHARE * 10)
    fast = transport_figures(_Fake(), before, {"packets_sent": 150, "packets_lost": 2, "cpu_ns": 2_000_000},
                             stamps, None)
    assert fast["cpu_bound"] is False and fast["lost_packets"] == 0
    tcp = transport_figures(_Fake(), {}, {}, stamps, 4)
    assert tcp["retransmitted_segments"] == 4 and tcp["cpu_ms"] is None and tcp["cpu_bound"] is None

"""Capture in a namespace: a real TCP transfer through the topology, pcap readable, flows and payload exact."""

from __future__ import annotations

import hashlib
import struct
import sys
import time

import pytest

from netem.capture import Capture
from netem.errors import CaptureError
from netem.flows import flow_stats, tcp_stream
from netem.topology import Topology

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

SERVER = """
import hashlib, socket, sys
listener = socket.create_server((sys.argv[1], 7000))
print("LISTENING", flush=True)
conn, _ = listener.accept()
digest, total = hashlib.sha256(), 0
while chunk := conn.recv(65536):
    digest.update(chunk); total += len(chunk)
    if total > 50_000_000: break
print(total, digest.hexdigest(), flush=True)
"""
CLIENT = """
import random, socket, sys
payload = random.Random(int(sys.argv[2])).randbytes(int(sys.argv[3]))
with socket.create_connection((sys.argv[1], 7000), timeout=20) as conn:
    conn.sendall(payload)
"""


def test_capture_of_a_tcp_transfer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    size, seed = 3_000_000, 11
    import random

    expected = random.Random(seed).randbytes(size)
    with Topology("ideal") as topo:
        with Capture(topo, "ue", path=tmp_path / "ue.pcap") as capture:
            server = topo.popen("edge", [sys.executable, "-c", SERVER, topo.edge_addr], stdout=-1, text=True)
            assert server.stdout is not None and server.stdout.readline().strip() == "LISTENING"
            client = topo.run("ue", [sys.executable, "-c", CLIENT, topo.edge_addr, str(seed), str(size)], timeout=60)
            assert client.returncode == 0, client.stderr
            received = server.stdout.readline().split()
            server.wait(10)
            time.sleep(0.05)
        assert int(received[0]) == size and received[1] == hashlib.sha256(expected).hexdigest()
    summary = capture.summary
    assert capture.complete, summary
    # A standard pcap Wireshark opens: nanosecond magic, version 2.4, link type Ethernet.
    magic, major, minor, _, _, _, linktype = struct.unpack("<IHHiIII", (tmp_path / "ue.pcap").read_bytes()[:24])
    assert (magic, major, minor, linktype) == (0xA1B23C4D, 2, 4, 1)
    flows = {f.key: f for f in capture.flows}
    assert summary["packets_written"] == sum(f.packets for f in flows.values())
    (data_key,) = [k for k in flows if k[0] == topo.ue_addr and k[3] == 7000]
    data = flows[data_key]
    # Unique bytes = the transfer; a busy host can trigger a spurious tail-loss-probe retransmission even on an
    # ideal link, and the capture must then count it, not hide it.
    assert data.payload_bytes - data.retransmitted_bytes == size
    assert (data.retransmissions == 0) == (data.retransmitted_bytes == 0)
    # On the wire: every frame = payload + Ethernet 14 + IP 20 + TCP 32 (with timestamps); the SYN's TCP
    # header is 40 (MSS, SACK-permitted, timestamps, window scale).
    assert data.wire_bytes == data.payload_bytes + data.packets * (14 + 20 + 32) + 8
    assert data.packets >= size // 1448 and data.first_ts < data.last_ts
    assert tcp_stream(capture.pcap_path, *data_key[:4]) == expected
    assert flow_stats(capture.pcap_path)[0].key == next(iter(flows))


def test_capture_side_is_checked() -> None:
    with Topology("ideal") as topo:
        with pytest.raises(CaptureError, match="'ue' or 'edge'"):
            Capture(topo, "middle")
        failing = Capture(topo, "ue", interface="nonexistent0")
        with pytest.raises(CaptureError, match="did not start"):
            failing.start()
        assert not failing.pcap_path.exists()  # its temporary pcap is not left behind


def test_a_capture_child_runs_on_the_cpus_it_is_given(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    cpu = max(os.sched_getaffinity(0))  # one CPU this process may use; the child must have exactly it
    with Topology("ideal") as topo:
        with Capture(topo, "edge", path=tmp_path / "edge.pcap", cpus=[cpu]) as capture:
            assert capture.pid is not None  # the child itself (topology.popen enters the namespace in-process)
            assert "netem.capture" in open(f"/proc/{capture.pid}/cmdline").read()
            affinity = os.sched_getaffinity(capture.pid)  # set before it said READY
        assert affinity == {cpu}
        assert capture.summary["cpus"] == [cpu]
        with pytest.raises(CaptureError, match="CPU numbers"):
            Capture(topo, "ue", cpus=[-1])
        failing = Capture(topo, "ue", cpus=[4095])  # a CPU this host does not have: one clear line, no traceback
        with pytest.raises(CaptureError, match="cannot run the capture on CPUs"):
            failing.start()

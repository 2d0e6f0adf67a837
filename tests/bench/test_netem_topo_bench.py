"""netem topology costs, each against a baseline in the same run:

- building + removing a topology vs creating + removing its bare namespaces (what the isolation itself costs);
- flow statistics of a pcap with netem.flows (struct header parsing) vs scapy's full dissection of the same file.
Ratios go to extra_info; the numbers are reported in docs/NETEM.md.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import PcapReader, wrpcap

from netem.flows import flow_stats
from netem.naming import new_prefix
from netem.netns import create_namespace, remove_namespace
from netem.topology import Topology

pytestmark = pytest.mark.bench
MEDIANS: dict[str, float] = {}


def _median(benchmark: Any) -> float | None:
    stats = getattr(benchmark, "stats", None)
    return None if stats is None or getattr(stats, "stats", None) is None else float(stats.stats.median)


def _bare_namespaces() -> None:
    prefix, _ = new_prefix()
    names = [prefix + "ue", prefix + "ed"]
    for name in names:
        create_namespace(name)
    for name in names:
        remove_namespace(name)


@pytest.mark.root
def test_bare_namespaces_baseline(benchmark: Any) -> None:
    benchmark.group = "netem-topology-lifecycle"
    benchmark.pedantic(_bare_namespaces, rounds=10, iterations=1, warmup_rounds=1)
    MEDIANS["bare"] = _median(benchmark) or 0.0


@pytest.mark.root
@pytest.mark.parametrize("backend", ["kernel", "userspace"])
def test_topology_start_and_close(benchmark: Any, backend: str) -> None:
    benchmark.group = "netem-topology-lifecycle"

    def lifecycle() -> None:
        with Topology("ideal", backend=backend, sweep=False):
            pass

    benchmark.pedantic(lifecycle, rounds=5 if backend == "userspace" else 10, iterations=1, warmup_rounds=1)
    median = _median(benchmark)
    if median is not None and MEDIANS.get("bare"):
        benchmark.extra_info["ratio_to_bare_namespaces"] = round(median / MEDIANS["bare"], 2)


@pytest.fixture(scope="module")
def transfer_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2,000-segment TCP transfer (about 3 MB) with its ACKs, as a capture would hold it."""
    rng = random.Random(1)
    packets = []
    seq = 1000
    for i in range(2000):
        data = rng.randbytes(1448)
        segment = Ether() / IP(src="198.18.0.1", dst="198.18.0.2") / TCP(sport=40000, dport=7000, seq=seq) / Raw(data)
        segment.time = 1.0 + i * 1e-4
        ack = Ether() / IP(src="198.18.0.2", dst="198.18.0.1") / TCP(sport=7000, dport=40000, flags="A", ack=seq)
        ack.time = segment.time + 5e-5
        packets += [segment, ack]
        seq += len(data)
    path = tmp_path_factory.mktemp("bench") / "transfer.pcap"
    wrpcap(str(path), packets)
    return path


def _scapy_flow_bytes(path: Path) -> int:
    total = 0
    with PcapReader(str(path)) as reader:
        for packet in reader:
            if TCP in packet:
                total += len(packet[TCP].payload)
    return total


def test_scapy_dissection_baseline(benchmark: Any, transfer_pcap: Path) -> None:
    benchmark.group = "netem-flow-stats"
    total = benchmark.pedantic(_scapy_flow_bytes, args=(transfer_pcap,), rounds=3, iterations=1)
    assert total == 2000 * 1448
    MEDIANS["scapy"] = _median(benchmark) or 0.0


def test_flow_stats(benchmark: Any, transfer_pcap: Path) -> None:
    benchmark.group = "netem-flow-stats"
    flows = benchmark.pedantic(flow_stats, args=(transfer_pcap,), rounds=5, iterations=1)
    assert sum(f.payload_bytes for f in flows) == 2000 * 1448
    median = _median(benchmark)
    if median is not None:
        benchmark.extra_info["packets_per_s"] = round(4_000 / median)
        if MEDIANS.get("scapy"):
            benchmark.extra_info["speedup_vs_scapy_dissection"] = round(MEDIANS["scapy"] / median, 1)
    assert os.path.getsize(transfer_pcap) > 2_900_000

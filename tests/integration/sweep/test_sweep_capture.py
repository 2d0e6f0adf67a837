"""Captures in a real sweep (splitbed.sweep.capture): the traffic figures each record carries agree with the
packets, counted again by netem.flows over the same pcaps, and with the sender's own kernel count of its
retransmissions (TCP_INFO, in the record since schema 2.1) on an uplink that loses 2 % of its frames.

Figures checked (every measured and warm-up record of the point):
- the burst's application bytes equal the record's `uplink_bytes` (AIPS + data unit), on both captures;
- the uplink windows (UE side) and the frames before the first burst add up to the flow's wire bytes,
  payload bytes and retransmitted bytes as netem.flows.flow_stats counts them in the UE pcap; the downlink
  windows (edge side) to the reverse flow in the edge pcap;
- retransmitted segments per inference in the capture equal the local TCP's `uplink_retransmitted_segments`;
- a pcap above the size cap is kept with only its headers, every frame still there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from scapy.utils import RawPcapReader

from netem.flows import flow_stats
from splitbed.sweep import read_records, run_sweep
from splitbed.sweep.capture import HEADER_SNAP_BYTES
from tests.integration.sweep.conftest import SharedBed, sweep_spec

pytestmark = pytest.mark.root

LOSSY = """name = "lossy-uplink"
description = "50 Mbit/s uplink losing 2 % of its frames, 2 ms each way"
source = "tests/integration/sweep/test_sweep_capture.py"
seed = 7
[uplink]
rate_mbit = 50.0
delay_ms = 2.0
queue_packets = 1000
loss = { model = "random", p = 0.02 }
[downlink]
delay_ms = 2.0
"""


@pytest.fixture(scope="module")
def lossy_sweep(shared_bed: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One point (MobileNetV2 block_3_project_BN, 100 kB per inference = ~70 frames), 6 + 1 warm-up inferences;
    at 2 % loss the chance that none of ~490 frames is lost is below 1e-4. Pcaps capped at 0.3 MB (~0.75 MB
    each in full)."""
    out = tmp_path_factory.mktemp("lossy")
    profile = out / "lossy-uplink.toml"
    profile.write_text(LOSSY)
    spec = sweep_spec(profiles=(str(profile),), partitions=("block_3_project_BN",), encodings=("tlv",),
                      max_pcap_mb=0.3)
    try:
        outcome = run_sweep(spec, out, testbed_factory=SharedBed(shared_bed).factory)
    finally:
        shared_bed.update_link("5g-split-ai")
    assert not outcome.incomplete, outcome
    return out


def _point(directory: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    records = [r for r in read_records(directory).records if r.get("record_type") == "inference"]
    [summary_path] = (directory / "captures").glob("*/capture-*.json")
    return records, json.loads(summary_path.read_text())


def test_records_and_captures_agree_on_bytes_and_retransmissions(lossy_sweep: Path) -> None:
    records, summary = _point(lossy_sweep)
    assert len(records) == 7 and all(r["status"] == "ok" for r in records)
    assert summary["records_with_figures"] == 7 and summary["note"] is None
    sections = [r["traffic"] for r in records]
    assert all(s.get("unavailable") is None and s["complete"] for s in sections), sections[0]
    for record, section in zip(records, sections, strict=True):
        assert section["burst"]["app_bytes"] == section["burst_at_edge"]["app_bytes"] == record["uplink_bytes"]
        assert section["uplink"]["capture_side"] == "ue" and section["downlink"]["capture_side"] == "edge"
        assert section["burst"]["packets"] <= section["uplink"]["packets"]
        assert 0 < section["uplink"]["header_overhead_pct"] < 10
    # the capture's count of each inference's retransmitted segments is the sender's own (TCP_INFO)
    assert [s["uplink"]["retransmitted_packets"] for s in sections] == \
        [r["uplink_retransmitted_segments"] for r in records]
    assert sum(s["uplink"]["retransmitted_bytes"] for s in sections) > 0, "no frame lost: the check proved nothing"

    capture = sections[0]["capture"]
    pcaps = {side: lossy_sweep / path for side, path in capture["pcaps"].items()}
    edge_addr, ue_addr = records[0]["link"]["edge_addr"], records[0]["link"]["ue_addr"]
    for side, direction, key, before in (("ue", (ue_addr, edge_addr), "uplink", "ue_uplink"),
                                         ("edge", (edge_addr, ue_addr), "downlink", "edge_downlink")):
        [flow] = [f for f in flow_stats(pcaps[side]) if (f.src, f.dst) == direction and f.proto == "tcp"]
        assert sum(s[key]["wire_bytes"] for s in sections) + summary["before_first_burst"][before]["wire_bytes"] \
            == flow.wire_bytes
        assert sum(s[key]["packets"] for s in sections) + summary["before_first_burst"][before]["packets"] \
            == flow.packets
        assert sum(s[key]["retransmitted_bytes"] for s in sections) + \
            summary["before_first_burst"][before]["retransmitted_bytes"] == flow.retransmitted_bytes


def test_a_pcap_over_the_cap_keeps_every_frame_header(lossy_sweep: Path) -> None:
    records, summary = _point(lossy_sweep)
    capture = records[0]["traffic"]["capture"]
    assert capture["kept"] == {"ue": f"headers ({HEADER_SNAP_BYTES} bytes per frame)",
                               "edge": f"headers ({HEADER_SNAP_BYTES} bytes per frame)"}
    path = lossy_sweep / capture["pcaps"]["ue"]
    assert path.stat().st_size <= 0.3e6
    with RawPcapReader(str(path)) as reader:
        lengths = [(len(data), meta.wirelen) for data, meta in reader]
    assert len(lengths) == summary["summaries"]["ue"]["packets_written"]
    planned = records[0]["link"]["cpus"]["capture"]  # the CPU plan's capture role: where both children ran
    assert planned and all(summary["summaries"][side]["cpus"] == planned for side in ("ue", "edge")), summary
    ran = ",".join(map(str, planned))  # and the records say so from the children's own reports
    assert {r["link"]["cpus"]["applied"]["capture"] for r in records} == {
        f"ue child on {ran}; edge child on {ran} (as each reported)"}
    assert max(n for n, _ in lengths) == HEADER_SNAP_BYTES and max(w for _, w in lengths) > HEADER_SNAP_BYTES

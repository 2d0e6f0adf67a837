"""The two nodes as processes in the testbed's namespaces, over the emulated 5G eMBB link (netem Topology):
the records must show the link — delivery no faster than the uplink's delay plus the bytes at its rate, round
trip no shorter than both delays — and carry the topology's description as their link info."""

from __future__ import annotations

import json
import select
import sys
import time
from typing import Any

import pytest
from nodes_harness import MODEL, WEIGHTS

from splitbed.nodes.metrics import check_record

pytestmark = [pytest.mark.root, pytest.mark.requires("netns"), pytest.mark.timeout(600)]

PROFILE = "5g-embb"
READY_TIMEOUT_S = 180.0


PORT = 5599  # the edge namespace is ours alone: a fixed port lets both nodes start at once


def _ready_port(proc: object, timeout: float) -> int:
    stdout = proc.stdout  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:  # type: ignore[attr-defined]
            raise RuntimeError("remote node in the edge namespace did not become ready")
        if select.select([stdout], [], [], left)[0]:
            line += stdout.read1(4096)
    info = json.loads(line)
    return int(info["port"])


def run_nodes(profile: Any, jobs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Any, str]:
    """Both nodes as processes in the namespaces of a Topology on ``profile``; (inference records, the link
    profile, the edge address)."""
    import subprocess

    from netem.topology import Topology

    with Topology(profile) as topo:
        remote = topo.popen("edge", [sys.executable, "-m", "splitbed", "remote-node", "--host", topo.edge_addr,
                                     "--port", str(PORT), "--model", MODEL, "--weights", WEIGHTS],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        link = {"profile": topo.profile.name, "backend": topo.backend, "topology": topo.describe()}
        local = topo.popen("ue", [sys.executable, "-m", "splitbed", "local-node", "--connect",
                                  f"{topo.edge_addr}:{PORT}", "--weights", WEIGHTS, "--jobs", "-", "--preload", MODEL,
                                  "--verify-delivery", "--link-info", json.dumps(link)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert _ready_port(remote, READY_TIMEOUT_S) == PORT  # the local node loads its model meanwhile
        stdout, stderr = local.communicate("".join(json.dumps(j) + "\n" for j in jobs), timeout=300)
        assert local.returncode == 0, stderr[-3000:]
        remote.terminate()
        assert remote.wait(30) == 0
        records = [json.loads(line) for line in stdout.splitlines()]
        return [r for r in records if r["record_type"] == "inference"], topo.profile, topo.edge_addr


def test_nodes_over_the_emulated_link() -> None:
    jobs = [{"job_id": "raw", "partition": 3, "compression": "none", "repetitions": 2},
            {"job_id": "zstd", "partition": 5, "compression": "zstd", "repetitions": 2}]
    records, profile, edge_addr = run_nodes(PROFILE, jobs)
    assert len(records) == 4
    up, down = profile.uplink, profile.downlink
    for rec in records:
        check_record(rec)
        assert rec["status"] == "ok", rec["error"]
        assert rec["delivery_check"]["match"]
        assert rec["link"]["profile"] == PROFILE and rec["link"]["topology"]["addresses"]["edge"] == edge_addr
        assert rec["clock"]["shared_monotonic"]  # namespaces share the host's CLOCK_MONOTONIC
        transfer_ms = rec["uplink_bytes"] * 8 / (up.rate_mbit * 1e3)
        assert rec["delivery_ms"] >= 0.95 * (up.delay_ms - up.jitter_ms + transfer_ms), rec["delivery_ms"]
        assert rec["round_trip_ms"] >= up.delay_ms + down.delay_ms - up.jitter_ms - down.jitter_ms
        assert rec["downlink_ms"] >= down.delay_ms - down.jitter_ms
    raw = [r for r in records if r["job_id"] == "raw"]
    # 301 kB at 50 Mbit/s: at least 48 ms on the wire; loopback takes well under 5 ms
    assert all(r["delivery_ms"] > 48 for r in raw)


def test_a_lossy_uplink_ends_delivery_at_the_read_not_at_a_stale_kernel_stamp() -> None:
    """After a loss the hole-filling retransmission arrives last but is not the last packet read, so the kernel
    stamp of the last read would end the delivery too early: records with out-of-order packets fall back to the
    node's read (docs/METRICS.md, "Receive stamps"). 2 % loss over ~210 packets per inference: P(no loss in
    all 4) < 1e-7."""
    from netem.profile import DirectionProfile, LinkProfile, RandomLoss

    lossy = LinkProfile("lossy-uplink", "2 % random loss on the uplink", "tests/integration/nodes/test_nodes_netem.py",
                        DirectionProfile(rate_mbit=100.0, delay_ms=2.0, loss=RandomLoss(0.02), seed=3),
                        DirectionProfile(rate_mbit=100.0, delay_ms=2.0))
    records, _, _ = run_nodes(lossy, [{"job_id": "raw", "partition": 3, "compression": "none", "repetitions": 4}])
    assert len(records) == 4
    for rec in records:
        check_record(rec)
        assert rec["status"] == "ok" and rec["delivery_check"]["match"], rec["error"]
        if rec["uplink_out_of_order_packets"]:
            assert rec["delivery_end"] == "app_read" and rec["remote_read_lag_ms"] is None
            assert rec["delivery_end_reason"] == "out_of_order"
            assert rec["delivery_ms"] == rec["delivery_read_ms"]
        else:  # in order: the kernel stamp, unless the wall clock was stepped meanwhile (then the read)
            assert rec["uplink_out_of_order_packets"] == 0 and rec["delivery_end"] in ("kernel_rx", "app_read")
            assert rec["delivery_end_reason"] in (None, "clock_step", "stamp_after_read")
    assert any(rec["uplink_out_of_order_packets"] for rec in records), [r["uplink_tcp"] for r in records]
    # The retransmissions that filled those holes are counted per inference, not for the connection so far: the
    # link dropped frames of every inference, and the per-inference counts add up to the connection's growth.
    retransmitted = [rec["uplink_retransmitted_segments"] for rec in records]
    assert all(isinstance(n, int) and n >= 0 for n in retransmitted) and sum(retransmitted) > 0, retransmitted
    growth = records[-1]["uplink_tcp"]["total_retrans"] - records[0]["uplink_tcp"]["total_retrans"]
    assert sum(retransmitted[:-1]) == growth, (retransmitted, growth)

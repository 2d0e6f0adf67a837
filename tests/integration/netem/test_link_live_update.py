"""TCP across a live link change: successive, idle-separated bursts on one connection must settle, not grow.

The bug report: after `update` from 5g-split-ai to lte, 602 kB deliveries on the old connection grew
128 -> 145 -> 198 -> 298 -> 538 ms while a fresh connection stayed at 126-134 ms. The cause was not the link
emulator (its queues drained, no drops, lateness p99 ~0.15 ms, and re-applying a profile or raising the rate
changed nothing) but the congestion control the namespaces inherited from this host: BBR (v1). BBR keeps its
minimum-RTT estimate for 10 s; after the switch it still believed the RTT was ~2 ms while it was ~37 ms, so its
window (2 x bandwidth x min-RTT) fell far below what the bandwidth needed, the lower delivery rates it then saw
became its bandwidth estimate, and each burst shrank the window again (estimate 141 -> 37 -> 12 -> 6 Mbit/s),
until the 10 s expired. The topology now pins the congestion control (CUBIC by default, netem.tcp) and records
it; docs/LINK.md ("Live changes and TCP") has the measurements.

Each burst: 602,112 bytes (a float32 tensor of that size), 0.5 s idle between bursts (longer than the RTO, so
Linux's slow start after idle applies, as between inferences). Delivery = first byte handed to TCP -> last byte
read by the receiver (CLOCK_MONOTONIC on both sides). Sender and receiver run under SCHED_FIFO 5, below the
link's 10, so that a busy host does not charge their own scheduling delays to the link.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from netem.profile import LinkProfile
from netem.topology import Topology

pytestmark = [pytest.mark.root, pytest.mark.requires("netns", "realtime"), pytest.mark.timeout(240)]

PEERS = str(Path(__file__).with_name("live_update_peers.py"))
BURST_BYTES = 602_112
PORT = 5731
#: Header + payload per burst; a full TCP segment carries 1448 bytes (timestamps on) in a 1514-byte frame.
WIRE_HEADER_BYTES = 8
MSS_BYTES = 1448
FRAME_OVERHEAD_BYTES = 66
#: The bar: from the third burst after the change, every delivery on the old connection is at most this many
#: times a fresh connection's first delivery (slow start from the initial window: the slowest a new session is).
SETTLE_TOLERANCE = 1.5
#: ...and the last burst after the change is no slower than the first ones (median of the first three) by more
#: than this factor plus GROWTH_SLACK_MS (host noise): a settled series does not grow.
GROWTH_TOLERANCE = 1.25
GROWTH_SLACK_MS = 10.0


def realtime(argv: list[str]) -> list[str]:
    return ["chrt", "-f", "5", *argv]


def floor_ms(profile: LinkProfile, size: int = BURST_BYTES) -> float:
    """The least delivery time the profile allows: serialising every frame at the uplink rate + one-way delay,
    minus 4 jitter standard deviations (the last frame may draw a short delay)."""
    up = profile.uplink
    assert up.rate_mbit is not None
    payload = size + WIRE_HEADER_BYTES
    frames = -(-payload // MSS_BYTES)
    wire_bits = (payload + frames * FRAME_OVERHEAD_BYTES) * 8
    return wire_bits / (up.rate_mbit * 1e3) + up.delay_ms - 4 * up.jitter_ms


class Bursts:
    """A receiver on the edge side and a sender on the ue side; `burst(key)` -> the sender's JSON line."""

    def __init__(self, topo: Topology) -> None:
        self.receiver = topo.popen("edge", realtime([sys.executable, PEERS, "recv", topo.edge_addr, str(PORT)]),
                                   stdout=subprocess.PIPE, text=True)
        assert self.receiver.stdout is not None
        ready = self.receiver.stdout.readline().strip()
        assert ready == "ready", f"receiver did not start: {ready!r}"
        self.sender = topo.popen("ue", realtime([sys.executable, PEERS, "send", topo.edge_addr, str(PORT),
                                                 str(BURST_BYTES)]),
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def burst(self, key: str, gap_s: float = 0.5) -> dict[str, Any]:
        assert self.sender.stdin is not None and self.sender.stdout is not None
        self.sender.stdin.write(f"burst {key}\n")
        self.sender.stdin.flush()
        line = self.sender.stdout.readline()
        assert line, f"sender died (exit {self.sender.poll()})"
        time.sleep(gap_s)  # the idle gap between bursts (as between inferences)
        return dict(json.loads(line))

    def series(self, key: str, count: int) -> list[dict[str, Any]]:
        return [self.burst(key) for _ in range(count)]


def delivered(series: list[dict[str, Any]]) -> list[float]:
    return [round(burst["delivery_ms"], 1) for burst in series]


def run_switch(before: str, after: str, *, congestion_control: str | None = "cubic",
               after_count: int = 6) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """3 bursts on one connection, live change, `after_count` more on it, then 3 on a fresh connection."""
    kwargs: dict[str, Any] = {} if congestion_control == "cubic" else {"tcp_congestion_control": congestion_control}
    with Topology(before, backend="userspace", **kwargs) as topo:
        bursts = Bursts(topo)
        result = {"before": bursts.series("old", 3)}
        topo.update(after)
        result["after"] = bursts.series("old", after_count)
        result["fresh"] = bursts.series("fresh", 3)
        link = topo.stats()["link"]
        link["tcp"] = topo.describe().get("tcp")
    return result, link


def test_old_connection_settles_after_a_switch_to_a_slower_longer_link() -> None:
    """The reported case, 5g-split-ai (144 Mbit/s, 2 x 1 ms) -> lte (46 Mbit/s, 2 x 16.3 ms)."""
    result, link = run_switch("5g-split-ai", "lte")
    after, fresh = delivered(result["after"]), delivered(result["fresh"])
    context = (f"old connection after the change {after} ms, fresh connection {fresh} ms; "
               f"old connection TCP state {[{k: b[k] for k in ('cc', 'cwnd', 'rtt_ms')} for b in result['after']]}")
    bar = SETTLE_TOLERANCE * fresh[0]
    assert max(after[2:]) <= bar, f"old connection did not settle within {SETTLE_TOLERANCE} x fresh ({bar:.0f} ms): {context}"
    first = statistics.median(after[:3])
    assert after[-1] <= GROWTH_TOLERANCE * first + GROWTH_SLACK_MS, f"deliveries grow: {context}"
    # The link itself: never faster than the profile allows, nothing dropped by its queue, frames on time.
    least = floor_ms(LinkProfile.load("lte"))
    assert min(after + fresh) >= least, f"faster than lte allows ({least:.1f} ms): {context}"
    up = link["uplink"]
    assert up["dropped"]["queue_overflow"] == 0 and up["queued_packets"] == 0, up
    assert up["late_ms"]["p50"] < 1.0, up["late_ms"]
    # The namespaces ran the pinned congestion control, and the topology's record says so.
    assert {burst["cc"] for burst in result["after"] + result["fresh"]} == {"cubic"}, context
    assert link["tcp"]["ue"]["tcp_congestion_control"] == link["tcp"]["edge"]["tcp_congestion_control"] == "cubic"


@pytest.mark.slow
def test_reapplying_the_same_profile_changes_nothing() -> None:
    """lte -> lte: the live change itself (stages rebuilt, trace and counters kept) must not disturb TCP."""
    result, _ = run_switch("lte", "lte", after_count=4)
    before, after = delivered(result["before"]), delivered(result["after"])
    settled = statistics.median(before[1:])
    assert max(after) <= 1.2 * settled + GROWTH_SLACK_MS, f"before {before} ms, after {after} ms"
    assert min(after) >= floor_ms(LinkProfile.load("lte")), f"after {after} ms"


@pytest.mark.slow
def test_old_connection_speeds_up_after_a_switch_to_a_faster_link() -> None:
    """5g-embb (50 Mbit/s, 2 x 4 ms) -> 5g-split-ai (144 Mbit/s, 2 x 1 ms): within tolerance of a fresh one."""
    result, _ = run_switch("5g-embb", "5g-split-ai", after_count=4)
    after, fresh = delivered(result["after"]), delivered(result["fresh"])
    assert max(after[1:]) <= SETTLE_TOLERANCE * statistics.median(fresh[1:]) + GROWTH_SLACK_MS, (
        f"old connection {after} ms, fresh {fresh} ms")
    assert min(after) >= floor_ms(LinkProfile.load("5g-split-ai")), f"after {after} ms"


def bbr_available() -> bool:
    return "bbr" in Path("/proc/sys/net/ipv4/tcp_available_congestion_control").read_text().split()


@pytest.mark.slow
@pytest.mark.skipif(not bbr_available(), reason="this kernel has no tcp_bbr")
def test_bbr_keeps_the_old_links_min_rtt_and_its_deliveries_grow() -> None:
    """The mechanism behind the report, shown with the kernel's own BBR state (TCP_CC_INFO): what a topology
    that inherits a BBR host default (tcp_congestion_control=None on this host) measures after the switch."""
    result, link = run_switch("5g-split-ai", "lte", congestion_control="bbr", after_count=6)
    after = result["after"]
    context = [{k: b.get(k) for k in ("delivery_ms", "cwnd", "rtt_ms", "bbr_bw_mbit", "bbr_min_rtt_ms")}
               for b in after]
    assert all(b["cc"] == "bbr" for b in after), context
    assert all(b["bbr_min_rtt_ms"] < 5.0 and b["rtt_ms"] > 25.0 for b in after), context  # stale min-RTT
    assert after[-1]["delivery_ms"] > 2 * after[0]["delivery_ms"], context  # grows while it is stale
    assert after[-1]["bbr_bw_mbit"] < 0.5 * LinkProfile.load("lte").uplink.rate_mbit, context  # bw estimate fell
    assert link["uplink"]["dropped"]["queue_overflow"] == 0 and after[-1]["total_retrans"] <= 2, context

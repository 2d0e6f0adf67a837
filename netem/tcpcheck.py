"""What TCP gets through a link profile, measured with iperf3 on a real topology (docs/PROFILES.md, "What TCP
gets").

A profile's rate is a capacity in Ethernet frames; what a study reports is usually what an application got over
TCP. The two differ by the headers (1448 payload bytes per 1514-byte frame) and, where the profile adds random
loss, by TCP's reaction to it (a 13.9 ms-RTT CUBIC flow at 1e-4 loss stays near 100 Mbit/s whatever the rate).
So each built-in profile states in its `[expected_tcp]` table what TCP should reach and why, and this module
measures it: one bulk iperf3 transfer per shaped direction, both ends under SCHED_FIFO below the link process
(a starved endpoint would idle the link), the goodput taken from the receiver's per-interval byte counts after
slow start (`settle_s`), so the figure is TCP's steady state, not its ramp.

Needs root, network namespaces and iperf3 (`apt-get install iperf3`).
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netem.errors import NetemError
from netem.hostload import HostCpuWindow, read_counters
from netem.profile import LinkProfile
from netem.topology import Topology

IPERF_PORT = 5471
INTERVAL_S = 0.25
DEFAULT_SECONDS = 6.0
MAX_SECONDS = 120.0
TOOL_PRIORITY = 5  # SCHED_FIFO, below the userspace link's 10


class TcpCheckError(NetemError):
    """iperf3 is missing, did not start or gave no usable report."""


@dataclass(frozen=True)
class TcpGoodput:
    """One direction's measured TCP goodput (Mbit/s of payload) after slow start, and the host meanwhile."""

    profile: str
    direction: str
    backend: str
    goodput_mbit: float
    seconds: float        # the steady-state span the goodput is averaged over
    retransmits: int | None
    host: HostCpuWindow

    def describe(self) -> str:
        retrans = "" if self.retransmits is None else f", {self.retransmits} retransmitted segments"
        return (f"{self.profile} {self.direction} ({self.backend} link): {self.goodput_mbit:.2f} Mbit/s over {self.seconds:.1f} s"
                f"{retrans} ({self.host.describe()})")


def _realtime(argv: list[str]) -> list[str]:
    return ["chrt", "-f", str(TOOL_PRIORITY), *argv]


def _wait_listening(topo: Topology, port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if f":{port} " in topo.run("edge", ["ss", "-lntH"], timeout=10).stdout:
            return
        time.sleep(0.05)
    raise TcpCheckError(f"iperf3 did not listen on port {port} in the edge namespace within {timeout_s:g} s")


def steady_goodput(intervals: list[dict[str, Any]], settle_s: float) -> tuple[float, float]:
    """(Mbit/s, seconds) over the receiver's intervals that start at or after `settle_s`."""
    kept = [i["sum"] for i in intervals if i["sum"]["start"] >= settle_s - 1e-6]
    seconds = sum(float(s["seconds"]) for s in kept)
    if seconds <= 0:
        raise TcpCheckError(f"no receiver interval after {settle_s:g} s: make the transfer longer")
    return sum(int(s["bytes"]) for s in kept) * 8 / seconds / 1e6, seconds


def measure_direction(topo: Topology, direction: str, *, seconds: float = DEFAULT_SECONDS,
                      settle_s: float | None = None, port: int = IPERF_PORT) -> TcpGoodput:
    """One bulk TCP transfer through `topo` in `direction` (uplink = ue -> edge); the receiver's goodput."""
    if direction not in ("uplink", "downlink"):
        raise ValueError(f"direction must be uplink or downlink, not {direction!r}")
    if not 1.0 <= seconds <= MAX_SECONDS:
        raise ValueError(f"seconds must be in [1, {MAX_SECONDS:g}], got {seconds}")
    settle = seconds / 3 if settle_s is None else settle_s
    server = topo.popen("edge", _realtime(["iperf3", "-s", "-1", "-J", "-i", str(INTERVAL_S), "-p", str(port)]),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_listening(topo, port)
        argv = ["timeout", str(int(seconds + 60)), "iperf3", "-c", topo.edge_addr, "-p", str(port), "-J",
                "-i", str(INTERVAL_S), "-t", f"{seconds:g}"]
        if direction == "downlink":
            argv.append("-R")
        before = read_counters()
        client = topo.popen("ue", _realtime(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        client_out, client_err = client.communicate(timeout=seconds + 90)
        host = read_counters().since(before)
        if client.returncode != 0:
            raise TcpCheckError(f"iperf3 client failed ({client.returncode}): {(client_err or client_out)[-500:]}")
        server_out, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    # the receiver's view: the server for the uplink, the client (-R) for the downlink
    receiver = json.loads(server_out if direction == "uplink" else client_out)
    sender = json.loads(client_out if direction == "uplink" else server_out)
    goodput, span = steady_goodput(receiver["intervals"], settle)
    retrans = sender.get("end", {}).get("sum_sent", {}).get("retransmits")
    return TcpGoodput(topo.profile.name, direction, str(topo.backend), goodput, span, retrans if isinstance(retrans, int) else None,
                      host)


def measure_profile(profile: LinkProfile | str, directions: tuple[str, ...] = ("uplink",), *,
                    backend: str = "auto", seconds: float = DEFAULT_SECONDS,
                    settle_s: float | None = None) -> list[TcpGoodput]:
    """TCP goodput through `profile` in each direction, on one fresh topology."""
    with Topology(profile, backend) as topo:
        return [measure_direction(topo, d, seconds=seconds, settle_s=settle_s, port=IPERF_PORT + i)
                for i, d in enumerate(directions)]


TOLERANCE = 0.05  # a profile's TCP claim holds when the measured goodput is within 5 % of it
MEASURED_FILE = Path(__file__).resolve().parent / "data" / "tcp_goodput.json"


def claimed_directions(profile: LinkProfile) -> tuple[str, ...]:
    """The directions for which `profile` states a TCP figure."""
    claim = profile.expected_tcp
    if claim is None:
        return ()
    return tuple(d for d in ("uplink", "downlink") if claim.direction(d) is not None)


def seconds_for(profile: LinkProfile) -> float:
    """Transfer length: slow links need longer to leave slow start and fill their queue."""
    rates = [profile.direction(d).rate_mbit for d in claimed_directions(profile)]
    return 12.0 if any(r is not None and r < 20 for r in rates) else 6.0


def within_claim(measured_mbit: float, claimed_mbit: float, tolerance: float = TOLERANCE) -> bool:
    return abs(measured_mbit - claimed_mbit) <= tolerance * claimed_mbit


def check_profile(profile: LinkProfile | str, *, backend: str = "auto") -> list[TcpGoodput]:
    """Measure every direction `profile` makes a TCP claim for (see `seconds_for`)."""
    link = profile if isinstance(profile, LinkProfile) else LinkProfile.load(profile)
    directions = claimed_directions(link)
    if not directions:
        return []
    return measure_profile(link, directions, backend=backend, seconds=seconds_for(link))


def read_measured(path: Path = MEASURED_FILE) -> dict[str, Any]:
    """The stored measurements docs/PROFILES.md shows: {"measured": {profile: {direction: {...}}}, ...}."""
    if not path.is_file():
        return {"measured": {}}
    data = json.loads(path.read_text(encoding="utf-8")[: 1 << 20])
    return data if isinstance(data, dict) and isinstance(data.get("measured"), dict) else {"measured": {}}


def write_measured(results: list[TcpGoodput], date: str, path: Path = MEASURED_FILE) -> None:
    """Store `results` (replacing those profiles' and directions' previous figures)."""
    data = read_measured(path)
    for result in results:
        stolen = result.host.stolen_share
        data["measured"].setdefault(result.profile, {})[result.direction] = {
            "goodput_mbit": round(result.goodput_mbit, 2), "backend": result.backend, "seconds": round(result.seconds, 2),
            "retransmits": result.retransmits, "date": date,
            "host_cpu_stolen_pct": None if stolen is None else round(100 * stolen, 1)}
    data["method"] = ("netem tcp-check: one iperf3 TCP flow (CUBIC) per direction through the userspace or kernel "
                      "link, both ends SCHED_FIFO below the link, goodput from the receiver's 0.25 s intervals "
                      "after the first third of the transfer (slow start)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")

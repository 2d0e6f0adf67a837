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

import dataclasses
import itertools
import json
import math
import os
import subprocess
import threading
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
TCP_PAYLOAD_PER_FRAME = 1448 / 1514  # full segments: 1448 payload bytes (timestamps on) per 1514-byte frame


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
    expected_mbit: float | None = None  # on a trace: what the stretch allows TCP (its capacity x 1448/1514)
    stretch: str = ""                   # on a trace: which seconds of it were measured

    def describe(self) -> str:
        retrans = "" if self.retransmits is None else f", {self.retransmits} retransmitted segments"
        where = f" on {self.stretch}" if self.stretch else ""
        return (f"{self.profile} {self.direction} ({self.backend} link): {self.goodput_mbit:.2f} Mbit/s over "
                f"{self.seconds:.1f} s{where}{retrans} ({self.host.describe()})")


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


def trace_directions(profile: LinkProfile) -> tuple[str, ...]:
    """Directions that follow a throughput trace (checked on a stretch of it: `measure_trace_stretch`)."""
    return tuple(d for d in ("uplink", "downlink") if (t := profile.direction(d).trace) is not None
                 and t.kind == "throughput")


def seconds_for(profile: LinkProfile) -> float:
    """Transfer length: slow links need longer to leave slow start and fill their queue."""
    rates = [profile.direction(d).rate_mbit for d in claimed_directions(profile)]
    return 12.0 if any(r is not None and r < 20 for r in rates) else 6.0


def within_claim(measured_mbit: float, claimed_mbit: float, tolerance: float = TOLERANCE) -> bool:
    return abs(measured_mbit - claimed_mbit) <= tolerance * claimed_mbit


def check_profile(profile: LinkProfile | str, *, backend: str = "auto") -> list[TcpGoodput]:
    """Measure every direction `profile` makes a TCP claim for (see `seconds_for`), and every direction that
    follows a throughput trace on a stretch of it without outages."""
    link = profile if isinstance(profile, LinkProfile) else LinkProfile.load(profile)
    directions = claimed_directions(link)
    results = measure_profile(link, directions, backend=backend, seconds=seconds_for(link)) if directions else []
    return results + [measure_trace_stretch(link, d, backend=backend) for d in trace_directions(link)]


def expected_of(profile: LinkProfile, result: TcpGoodput) -> float | None:
    """What `result` should have reached: the profile's claim, or on a trace the stretch's allowance."""
    if result.expected_mbit is not None:
        return result.expected_mbit
    return None if profile.expected_tcp is None else profile.expected_tcp.direction(result.direction)


# -- a stretch of a capacity trace ------------------------------------------------------------------------------
STRETCH_SECONDS = 8.0
LEAD_S = 2.0           # TCP leaves slow start and fills the queue before the measured stretch begins
MIN_STRETCH_MBIT = 20.0  # every second of the stretch at least this (no outage, no near-outage)
SAMPLE_PERIOD_S = 0.005


def quiet_stretch(capacity: tuple[float, ...], interval_s: float, seconds: float) -> int:
    """Index of the first trace interval from which `seconds` (whole intervals) all carry >= MIN_STRETCH_MBIT."""
    count = int(math.ceil(seconds / interval_s))
    for start in range(len(capacity)):
        if all(capacity[(start + k) % len(capacity)] >= MIN_STRETCH_MBIT for k in range(count)):
            return start
    raise TcpCheckError(f"the trace has no {seconds:g} s without an outage (all >= {MIN_STRETCH_MBIT:g} Mbit/s)")


def trace_mean_mbit(capacity: tuple[float, ...], interval_s: float, begin_s: float, end_s: float) -> float:
    """Mean capacity over [begin_s, end_s) of the trace's own time (wrapping at its period)."""
    total, t = 0.0, begin_s
    while t < end_s - 1e-12:
        index = int(math.floor(t / interval_s + 1e-9))
        step_end = min(end_s, (index + 1) * interval_s)
        total += capacity[index % len(capacity)] * (step_end - t)
        t = step_end
    return total / (end_s - begin_s)


class _RxSampler(threading.Thread):
    """Reads a namespace's veth rx_bytes every SAMPLE_PERIOD_S (monotonic time, SCHED_FIFO where allowed): what
    the link delivered, on the clock the trace was placed with."""

    def __init__(self, namespace: str, ifname: str) -> None:
        super().__init__(name="tcpcheck-rx", daemon=True)
        self.namespace, self.ifname = namespace, ifname
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        from pyroute2 import IPRoute

        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(TOOL_PRIORITY))
        except (PermissionError, OSError):
            pass
        with IPRoute(netns=self.namespace, flags=0) as ipr:
            index = ipr.link_lookup(ifname=self.ifname)[0]
            while not self.stop.is_set():
                before = time.monotonic()
                stats = ipr.get_links(index)[0].get_attr("IFLA_STATS64")
                self.samples.append(((before + time.monotonic()) / 2, int(stats["rx_bytes"])))
                time.sleep(SAMPLE_PERIOD_S)

    def bytes_at(self, when: float) -> float:
        """rx_bytes at `when`, interpolated between the samples around it."""
        for (t0, b0), (t1, b1) in itertools.pairwise(self.samples):
            if t0 <= when <= t1:
                return b0 + (b1 - b0) * (when - t0) / (t1 - t0) if t1 > t0 else float(b1)
        raise TcpCheckError(f"no rx sample around t={when:.3f} (sampled {len(self.samples)} times)")


def measure_trace_stretch(profile: LinkProfile, direction: str = "uplink", *, backend: str = "auto",
                          seconds: float = STRETCH_SECONDS) -> TcpGoodput:
    """One bulk TCP flow over a stretch of the direction's throughput trace without outages: the trace is
    restarted LEAD_S before the stretch (a live update, on this process's clock), the receiver's veth counts
    what the link delivered during the stretch, and TCP's goodput is those frames' payload (1448 of 1514 bytes);
    it should equal the stretch's capacity x 1448/1514 (`expected_mbit`)."""
    from netem.trace import ThroughputTrace
    from netem.trace import load as load_trace

    ref = profile.direction(direction).trace
    if ref is None or ref.kind != "throughput":
        raise TcpCheckError(f"{profile.name} {direction} follows no throughput trace")
    trace = load_trace(ref.path, ref.kind)
    assert isinstance(trace, ThroughputTrace)
    interval_s = trace.interval_ms / 1000.0
    first = quiet_stretch(trace.mbit, interval_s, LEAD_S + seconds)
    begin_s = first * interval_s + LEAD_S
    placed = profile.replace(**{direction: dataclasses.replace(profile.direction(direction),
                                                               trace=ref.starting_at(first * interval_s))})
    receiver_side = "edge" if direction == "uplink" else "ue"
    with Topology(profile, backend) as topo:
        sampler = _RxSampler(topo.namespace(receiver_side),
                             topo.edge_ifname if receiver_side == "edge" else topo.ue_ifname)
        server = topo.popen("edge", _realtime(["iperf3", "-s", "-1", "-J", "-p", str(IPERF_PORT)]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_listening(topo, IPERF_PORT)
            sampler.start()
            before = read_counters()
            asked = time.monotonic()
            topo.update(placed)
            origin = (asked + time.monotonic()) / 2  # the trace's first second began here, +- half the update
            argv = ["timeout", "120", "iperf3", "-c", topo.edge_addr, "-p", str(IPERF_PORT), "-J",
                    "-t", f"{LEAD_S + seconds + 1:g}"] + (["-R"] if direction == "downlink" else [])
            client = topo.popen("ue", _realtime(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            client_out, client_err = client.communicate(timeout=LEAD_S + seconds + 90)
            host = read_counters().since(before)
            if client.returncode != 0:
                raise TcpCheckError(f"iperf3 client failed ({client.returncode}): {(client_err or client_out)[-500:]}")
            server_out, _ = server.communicate(timeout=30)
        finally:
            sampler.stop.set()
            sampler.join(10)
            if server.poll() is None:
                server.kill()
                server.communicate()
        frames = sampler.bytes_at(origin + LEAD_S + seconds) - sampler.bytes_at(origin + LEAD_S)
        backend_name = str(topo.backend)
    sender = json.loads(client_out if direction == "uplink" else server_out)
    retrans = sender.get("end", {}).get("sum_sent", {}).get("retransmits")
    payload = TCP_PAYLOAD_PER_FRAME
    capacity = trace_mean_mbit(trace.mbit, interval_s, begin_s, begin_s + seconds)
    return TcpGoodput(profile.name, direction, backend_name, frames * 8 / seconds / 1e6 * payload, seconds,
                      retrans if isinstance(retrans, int) else None, host, expected_mbit=capacity * payload,
                      stretch=f"trace seconds {begin_s:g}-{begin_s + seconds:g} ({capacity:.1f} Mbit/s of frames)")


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
            **({} if result.expected_mbit is None else {"expected_mbit": round(result.expected_mbit, 2),
                                                        "stretch": result.stretch}),
            "host_cpu_stolen_pct": None if stolen is None else round(100 * stolen, 1)}
    data["method"] = ("netem tcp-check: one iperf3 TCP flow (CUBIC) per direction through the userspace or kernel "
                      "link, both ends SCHED_FIFO below the link, goodput from the receiver's 0.25 s intervals "
                      "after the first third of the transfer (slow start)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")

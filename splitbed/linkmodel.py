"""The link and TCP latency model: how long a payload takes from its first byte sent to its last byte delivered
over one direction of a link profile (docs/SWEEP.md, "Advisor").

- one-way delay + frames on the wire (1448-byte TCP segments + 66 bytes of TCP/IP/Ethernet headers, the bytes a
  rate limit counts) at the profile's rate;
- the window a transfer starts with: in a steady stream of inferences, what the earlier transfers and the idle
  between them leave (`steady_transfer_ms`, splitbed.tcpflow: Linux CUBIC over the profile's rate, queue limit and
  RTT; after an idle longer than the RTO the kernel halves the window once per RTO, it does not reset it); or
  the window read off the sender's socket (`SendWindow`, `transfer_ms`);
- unshaped directions use `unshaped_rate_mbit` (None: no transmission time, but still the round trips of a
  restarted window);
- trace-driven directions take each transmission's median time over evenly spaced start phases of the trace
  (netem.trace.delivery_ms), not the trace's mean rate, which a trace with slow stretches and outages makes
  optimistic (5g-mmwave-driving: mean 150 Mbit/s, but a 3.3 MB upload takes 390 ms at the median phase, not
  the 176 ms the mean implies).

Pure arithmetic on a profile (and one sysctl read); used by the advisor, the adaptive policy of the local node,
the sweep's wall-time estimate and the suite's budget checks, so it sits below all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netem.profile import DirectionProfile, LinkProfile
from netem.trace import MahimahiTrace, Trace, delivery_ms, start_phases_ms
from netem.trace import load as load_trace
from splitbed.tcpflow import (
    FRAME_OVERHEAD_BYTES,
    INITIAL_WINDOW_SEGMENTS,
    MIN_RTO_MS,
    MSS_BYTES,
    Bottleneck,
    SteadyTransfer,
    steady_transfer,
)

ETHERNET_HEADER_BYTES = 14     # not counted by a mahimahi trace, which counts IP packets
SLOW_START_SYSCTL = Path("/proc/sys/net/ipv4/tcp_slow_start_after_idle")


@dataclass(frozen=True)
class DirectionModel:
    """One direction of the link as the predictor sees it.

    `trace`: a capacity trace the direction follows; transmission times then come from the trace itself (the
    median over start phases, netem.trace.delivery_ms) and `rate_mbit` is the rate the link has at the median
    start phase, used only to size the bandwidth-delay product and the queue's delay.
    `queue_segments`: the bottleneck's drop-tail limit in full frames (None: no limit)."""

    rate_mbit: float | None
    delay_ms: float
    rate_note: str = ""
    trace: Trace | None = field(default=None, compare=False, repr=False)
    queue_segments: float | None = None

    @classmethod
    def from_profile(cls, direction: DirectionProfile, unshaped_rate_mbit: float | None) -> DirectionModel:
        if direction.trace is not None:
            trace = load_trace(direction.trace.path, direction.trace.kind)
            typical = trace_rate_at_median_phase(trace)
            note = (f"trace, {typical:.1f} Mbit/s at the median of {len(start_phases_ms(trace))} start phases; "
                    f"mean {trace.mean_rate_mbit():.1f}")
            return cls(typical, direction.delay_ms, note, trace, queue_segments(direction))
        if direction.rate_mbit is None:
            note = "unshaped: no transmission time" if unshaped_rate_mbit is None else \
                f"unshaped: taken as {unshaped_rate_mbit:g} Mbit/s"
            return cls(unshaped_rate_mbit, direction.delay_ms, note)
        return cls(direction.rate_mbit, direction.delay_ms, f"{direction.rate_mbit:g} Mbit/s", None,
                   queue_segments(direction))

    def serialisation_ms(self, payload_bytes: int) -> float:
        if self.trace is not None:
            return _trace_serialisation_ms(self.trace, payload_bytes)
        if self.rate_mbit is None:
            return 0.0
        return wire_bytes(payload_bytes) * 8 / (self.rate_mbit * 1e3)

    def transfer_ms(self, payload_bytes: int, *, rtt_ms: float, slow_start: bool,
                    window: SendWindow | None = None) -> float:
        """Time from the first byte sent to the last byte delivered.

        `window`: the congestion window the sender starts with, read off its socket (SendWindow.from_tcp_state);
        it overrides `slow_start`. Without it: slow_start=True starts from the initial window, False assumes a
        window that already covers the bandwidth-delay product (the transfer runs at the link's rate)."""
        if payload_bytes <= 0:
            return self.delay_ms
        if window is None:
            if not slow_start:
                return self.delay_ms + self.serialisation_ms(payload_bytes)
            window = SendWindow(INITIAL_WINDOW_SEGMENTS)
        bdp_bytes = math.inf if self.rate_mbit is None else self.rate_mbit * 1e3 / 8 * rtt_ms
        cwnd, ssthresh, mss = max(1, window.cwnd_segments), window.ssthresh_segments, window.mss_bytes
        sent, elapsed = 0, 0.0
        while payload_bytes - sent > cwnd * mss and cwnd * mss < bdp_bytes:
            sent += cwnd * mss                           # one window, then wait for its ACKs
            elapsed += max(rtt_ms, self.serialisation_ms(cwnd * mss))
            cwnd = window.next_cwnd(cwnd, ssthresh)
        return elapsed + self.serialisation_ms(payload_bytes - sent) + self.delay_ms

    def steady_transfer(self, payload_bytes: int, *, rtt_ms: float, between_ms: float,
                        slow_start_after_idle: bool) -> SteadyTransfer:
        """The typical transfer of `payload_bytes` when every inference sends one on the same connection and the
        sender waits `between_ms` from one transfer's delivery to the next one's first byte (splitbed.tcpflow)."""
        path = Bottleneck(self.rate_mbit, rtt_ms, self.queue_segments)
        return steady_transfer(path, payload_bytes, delay_ms=self.delay_ms, between_ms=between_ms,
                               restart=slow_start_after_idle, serialisation_ms=self.serialisation_ms)


def queue_segments(direction: DirectionProfile) -> float | None:
    """The bottleneck queue's limit in full frames, as both link backends apply it (netem.link.queues, the kernel's
    tbf/pfifo): the profile's byte limit over the frame size and/or its packet limit, else the default of
    1000 packets (DirectionProfile.effective_queue_packets)."""
    limits = []
    if direction.effective_queue_packets is not None:
        limits.append(float(direction.effective_queue_packets))
    if direction.queue_bytes is not None:
        limits.append(direction.queue_bytes / (MSS_BYTES + FRAME_OVERHEAD_BYTES))
    return min(limits) if limits else None


@dataclass(frozen=True)
class SendWindow:
    """The congestion window a transfer starts with, in segments of `mss_bytes`.

    Growth per round trip: slow start (doubling) below `ssthresh_segments` (None: no threshold yet), then one
    segment per round trip (congestion avoidance; CUBIC grows at least that fast right after an idle restart,
    which re-bases its curve on the current window)."""

    cwnd_segments: int
    ssthresh_segments: int | None = None
    mss_bytes: int = MSS_BYTES

    @staticmethod
    def next_cwnd(cwnd: int, ssthresh: int | None) -> int:
        if ssthresh is None:
            return cwnd * 2
        if cwnd < ssthresh:
            return min(cwnd * 2, max(ssthresh, cwnd + 1))
        return cwnd + 1

    @classmethod
    def from_tcp_state(cls, state: dict[str, Any], *, slow_start_after_idle: bool) -> SendWindow:
        """The window of a sender whose TCP_INFO (splitbed.host.tcpinfo, as recorded in a metrics record) was read just
        before the transfer, after the kernel's restart-after-idle rule."""
        from splitbed.host.tcpinfo import TcpState

        tcp = TcpState.from_dict(state)
        cwnd, ssthresh = tcp.send_window_segments(slow_start_after_idle=slow_start_after_idle,
                                                  initial_window=INITIAL_WINDOW_SEGMENTS)
        return cls(cwnd, ssthresh, tcp.mss_bytes or MSS_BYTES)


def wire_bytes(payload_bytes: int) -> int:
    """Bytes a rate limit counts for a TCP payload: full segments plus headers per frame."""
    frames = max(1, math.ceil(payload_bytes / MSS_BYTES))
    return payload_bytes + frames * FRAME_OVERHEAD_BYTES


def _trace_serialisation_ms(trace: Trace, payload_bytes: int) -> float:
    """Median transmission time of a payload over the trace's start phases, counting bytes as its stage does
    (Ethernet frames for throughput traces; IP packets, 14 bytes less per frame, for mahimahi ones)."""
    counted = wire_bytes(payload_bytes)
    if isinstance(trace, MahimahiTrace):
        counted -= max(1, math.ceil(payload_bytes / MSS_BYTES)) * ETHERNET_HEADER_BYTES
    return float(np.median(delivery_ms(trace, counted, start_phases_ms(trace))))


def trace_rate_at_median_phase(trace: Trace) -> float:
    """The trace's capacity (Mbit/s) exceeded at half of all start phases: what a transfer typically meets."""
    one_second = 125_000  # bytes: the average rate over 1 s of transmission from each phase
    times = delivery_ms(trace, one_second, start_phases_ms(trace))
    return float(one_second * 8 / (np.median(times) * 1e3))


@dataclass(frozen=True)
class LinkModel:
    uplink: DirectionModel
    downlink: DirectionModel
    profile: str
    slow_start_after_idle: bool
    radio: str | None = None  # the profile's radio access (netem.profile.RADIO_ACCESS), for the UE's radio energy

    @classmethod
    def from_profile(cls, profile: LinkProfile | str, *, unshaped_rate_mbit: float | None = None,
                     slow_start_after_idle: bool | None = None) -> LinkModel:
        link = profile if isinstance(profile, LinkProfile) else LinkProfile.load(profile)
        if slow_start_after_idle is None:
            slow_start_after_idle = _sysctl_slow_start()
        return cls(DirectionModel.from_profile(link.uplink, unshaped_rate_mbit),
                   DirectionModel.from_profile(link.downlink, unshaped_rate_mbit), link.name, slow_start_after_idle,
                   link.radio)

    @property
    def rtt_ms(self) -> float:
        return self.uplink.delay_ms + self.downlink.delay_ms

    def restarts_after(self, idle_ms: float) -> bool:
        """Whether a sender idle this long restarts from the initial window: idle longer than its RTO, which
        Linux keeps at the smoothed RTT + at least TCP_RTO_MIN."""
        return self.slow_start_after_idle and idle_ms > self.rtt_ms + MIN_RTO_MS


def _sysctl_slow_start() -> bool:
    try:
        return SLOW_START_SYSCTL.read_text().strip() != "0"
    except OSError:
        return True  # the Linux default

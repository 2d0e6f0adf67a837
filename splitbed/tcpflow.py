"""The congestion window of a TCP connection that sends one tensor per inference, carried from one transfer to
the next, and how long each transfer takes: the advisor's uplink and downlink model (docs/SWEEP.md, "Advisor").

Why: a split-inference UE sends a burst (the tensor), then idles while the edge computes, the result comes back
and the next frame's head runs. How long the next burst takes depends on the window it starts with, which is what
the earlier bursts and the idle left. Linux does not reset that window to the initial 10 segments after an idle
longer than the RTO: it halves it once per RTO that elapsed (tcp_cwnd_restart), and the RTO is the smoothed RTT,
inflated by the bottleneck queue the last burst filled, plus TCP_RTO_MIN. A window that grew far above the
bandwidth-delay product (BDP) during a multi-MB burst therefore often starts the next burst still at or above
the BDP, and a model that restarts every burst from 10 segments charges round trips the transfer never pays.

The model, per round trip of one sender over one bottleneck (the profile's rate, its drop-tail queue limit, its
base RTT) running CUBIC, the congestion control the testbed pins (netem.tcp):

- **round**: the window `w` goes out (at most what is left). A round whose segments do not fill the BDP is
  window-limited and lasts one base RTT; otherwise the link is the limit and the segments go at its rate. The
  last round ends when its last byte is delivered (one-way delay after its transmission).
- **growth**, on the ACKs of a round, and only while the sender is cwnd-limited (Linux tcp_is_cwnd_limited: in
  slow start while cwnd < 2 x the segments in flight, afterwards only when the window was full): slow start adds
  one segment per segment ACKed (Linux counts segments, RFC 3465, so delayed ACKs do not slow it), up to
  ssthresh; congestion avoidance follows CUBIC (RFC 9438 as Linux's tcp_cubic.c implements it): W(t) =
  C (t - K)^3 + W_max one minimum RTT ahead, at most one segment per 2 ACKed, never slower than the
  Reno-friendly estimate (tcp_friendliness).
- **loss**: a window above BDP + queue overflows the drop-tail queue; the loss is seen a round later, so a
  slow-start window overshoots by that round's growth. CUBIC then sets W_max (with fast convergence) and
  ssthresh = cwnd = beta x cwnd; SACK recovery keeps the link busy while beta x window still covers the BDP,
  so no time is charged for the recovery itself (a reduced window below the BDP costs window-limited rounds).
- **between transfers**: the sender is idle from its last segment (which then waits in the queue and crosses
  the link) until its next send; the restart rule is splitbed.host.tcpinfo.restart_after_idle with RTO = the
  RTT at the end of the transfer (base + queue delay) + TCP_RTO_MIN (RTO = srtt + rttvar in tcp_set_rto, and
  tcp_rtt_estimator floors rttvar at TCP_RTO_MIN);
  CUBIC's clock pauses while idle (tcp_cubic.c shifts epoch_start on CA_EVENT_TX_START, Linux commit
  30927520dbae "tcp_cubic: better follow cubic curve after idle period").
- **steady state**: transfers are repeated on one connection, like a sweep point (warm-ups, then the measured
  repetitions); the figure is the median of the repetitions. The connection starts as one whose window has
  filled the link once: ssthresh = beta x (BDP + queue), which no later restart lowers (tcp_current_ssthresh
  only raises it). That is the testbed's session, one connection for every inference of a testbed, after its
  first tensor larger than BDP + queue (a sweep's first example partition, VGG16's block1_conv1, is one), and any
  long-lived connection that once carried a bulk transfer. A connection that never filled the link has a lower
  threshold (HyStart, on by default in tcp_cubic.c, ends its first slow start near the BDP), which costs
  mid-size tensors, whose windows never grow far past the threshold, more round trips after each idle.

Not modelled: random loss (the profiles' 1e-6 residual loss), the retransmitted frames of a queue overflow, delay
jitter, the receiver's window (Linux autotuning grows it past BDP + queue on these links), BBR and other
algorithms (the testbed pins CUBIC).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace

from splitbed.host.tcpinfo import restart_after_idle

MSS_BYTES = 1448               # TCP payload per segment: 1500 MTU - 20 IP - 32 TCP (with timestamps)
FRAME_OVERHEAD_BYTES = 66      # 14 Ethernet + 20 IP + 32 TCP: what a rate limit counts on top of the payload
INITIAL_WINDOW_SEGMENTS = 10   # Linux initial congestion window (TCP_INIT_CWND; RFC 6928)
MIN_RTO_MS = 200.0             # Linux TCP_RTO_MIN: the floor of rttvar in RTO = srtt + rttvar (tcp_set_rto)
CUBIC_BETA = 717 / 1024        # tcp_cubic.c module parameter beta (default 717 of BICTCP_BETA_SCALE 1024)
CUBIC_C = 41 * 10 / 1024       # tcp_cubic.c bic_scale = 41: C = 41 x 10 / 1024 = 0.4 segments / s^3 (RFC 9438)
CUBIC_MIN_CNT = 2              # tcp_cubic.c: ca->cnt >= 2, at most 1 segment per 2 ACKed (1.5 x per round)
#: tcp_cubic.c beta_scale = 8 x (1024 + beta) / 3 / (1024 - beta) in integers: the Reno-friendly estimate
#: grows by one segment per cwnd x beta_scale / 8 segments ACKed
CUBIC_BETA_SCALE = 8 * (1024 + 717) // 3 // (1024 - 717)
#: the sweep's defaults (docs/SWEEP.md): up to 5 warm-up inferences (--warmup-max), then 10 measured ones
#: (--repetitions); the steady state is the median of the measured ones
WARMUP_TRANSFERS = 5
MEASURED_TRANSFERS = 10


@dataclass(frozen=True)
class Bottleneck:
    """One direction's bottleneck as a sender's window sees it. `rate_mbit` counts frames (None: unshaped, no
    transmission time and no queue); `queue_segments`: the drop-tail limit in full frames (None: unlimited)."""

    rate_mbit: float | None
    rtt_ms: float
    queue_segments: float | None
    frame_bytes: int = MSS_BYTES + FRAME_OVERHEAD_BYTES

    @property
    def frame_ms(self) -> float:
        return 0.0 if self.rate_mbit is None else self.frame_bytes * 8 / (self.rate_mbit * 1e3)

    @property
    def bdp_segments(self) -> float:
        return math.inf if self.rate_mbit is None else self.rtt_ms / self.frame_ms

    @property
    def capacity_segments(self) -> float:
        """Segments in flight before the queue overflows: the BDP plus the queue."""
        return self.bdp_segments + (math.inf if self.queue_segments is None else self.queue_segments)

    def queue_delay_ms(self, in_flight: float) -> float:
        """Queueing delay behind `in_flight` segments: what exceeds the BDP waits, up to the queue's limit."""
        if self.rate_mbit is None:
            return 0.0
        waiting = max(0.0, in_flight - self.bdp_segments)
        if self.queue_segments is not None:
            waiting = min(waiting, self.queue_segments)
        return waiting * self.frame_ms


@dataclass(frozen=True)
class Window:
    """A sender's congestion state between transfers (segments). `epoch_ms` is CUBIC's clock since its epoch
    began (transfer time only: it pauses while idle); None: no epoch (fresh, or since the last loss)."""

    cwnd: float = INITIAL_WINDOW_SEGMENTS
    ssthresh: float | None = None      # None: no loss yet, slow start has no threshold
    w_max: float = 0.0                 # tcp_cubic.c last_max_cwnd
    epoch_ms: float | None = None
    origin: float = 0.0                # tcp_cubic.c bic_origin_point
    k_s: float = 0.0                   # tcp_cubic.c bic_K, seconds
    reno: float = 0.0                  # tcp_cubic.c tcp_cwnd: the Reno-friendly estimate

    @property
    def in_slow_start(self) -> bool:
        return self.ssthresh is None or self.cwnd < self.ssthresh

    @classmethod
    def after_filling(cls, path: Bottleneck) -> Window:
        """The state of a connection whose window once overflowed the bottleneck's queue: CUBIC's reduction at
        BDP + queue (fresh, with the initial window, where nothing bounds the window: an unshaped direction)."""
        if math.isinf(path.capacity_segments):
            return cls()
        return _overflow(path, cls(cwnd=path.capacity_segments + 1), math.inf)


@dataclass(frozen=True)
class Transfer:
    """One transfer: its time (first byte sent to last byte delivered), the window it started with and left,
    the window-limited round trips it paid, and the queueing delay its last segment met."""

    ms: float
    start: Window
    end: Window
    window_limited_rounds: int
    last_queue_ms: float


def transfer(path: Bottleneck, window: Window, payload_bytes: int, *, delay_ms: float,
             serialisation_ms: Callable[[int], float]) -> Transfer:
    """Send `payload_bytes` starting from `window`; `serialisation_ms(bytes)` is the transmission time of that
    much TCP payload at the link's rate (a trace's own for trace-driven links)."""
    start = window
    if payload_bytes <= 0:
        return Transfer(delay_ms, start, window, 0, 0.0)
    left = math.ceil(payload_bytes / MSS_BYTES)
    limited_ms, limited_rounds, limited_segments = 0.0, 0, 0
    previous = 0  # segments of the round before
    while True:
        w = max(1, int(window.cwnd))  # Linux's cwnd is a whole number of segments
        sent = min(w, left)
        left -= sent
        link_bound = sent >= path.bdp_segments
        if left and not link_bound:
            limited_ms += path.rtt_ms
            limited_rounds += 1
            limited_segments += sent
        round_ms = sent * path.frame_ms if link_bound else path.rtt_ms
        window = _on_acks(path, window, w, sent, left, round_ms)
        if not left:
            break
        previous = sent
    link_bytes = payload_bytes - limited_segments * MSS_BYTES
    took = limited_ms + serialisation_ms(link_bytes) + delay_ms
    # the last segment leaves while the previous round's tail is still in flight
    return Transfer(took, start, window, limited_rounds, path.queue_delay_ms(min(w, previous + sent)))


def _on_acks(path: Bottleneck, window: Window, w: int, sent: int, left: int, round_ms: float) -> Window:
    """The window after the ACKs of one round of `sent` segments sent with window `w`, `left` segments still to
    send (see the module doc)."""
    if window.epoch_ms is not None:
        window = replace(window, epoch_ms=window.epoch_ms + round_ms)
    cwnd_limited = w < 2 * sent if window.in_slow_start else sent >= w
    if not cwnd_limited:
        return window
    acked = sent
    if window.in_slow_start:
        room = math.inf if window.ssthresh is None else window.ssthresh - window.cwnd
        if acked <= room:
            return _overflow(path, replace(window, cwnd=window.cwnd + acked), sent + left)
        assert window.ssthresh is not None
        window, acked = replace(window, cwnd=window.ssthresh), int(acked - room)  # the rest goes to CUBIC
    return _overflow(path, _cubic(path, window, acked, round_ms), sent + left)


def _cubic(path: Bottleneck, window: Window, acked: int, round_ms: float) -> Window:
    """Congestion avoidance on `acked` segments' ACKs, as tcp_cubic.c's bictcp_update."""
    cwnd = window.cwnd
    if window.epoch_ms is None:  # a new epoch: K from how far the window is below the last maximum
        if window.w_max > cwnd:
            k_s, origin = ((window.w_max - cwnd) / CUBIC_C) ** (1 / 3), window.w_max
        else:
            k_s, origin = 0.0, cwnd
        window = replace(window, epoch_ms=round_ms, origin=origin, k_s=k_s, reno=cwnd)
    assert window.epoch_ms is not None
    t_s = (window.epoch_ms - round_ms + path.rtt_ms) / 1000  # the target one minimum RTT ahead of the round
    target = window.origin + CUBIC_C * (t_s - window.k_s) ** 3
    cnt = cwnd / (target - cwnd) if target > cwnd else 100 * cwnd
    if window.w_max == 0 and cnt > 20:  # tcp_cubic.c: no loss yet, grow at least 5 % per round trip
        cnt = 20
    reno = window.reno + acked * 8 / (cwnd * CUBIC_BETA_SCALE)
    if reno > cwnd:
        cnt = min(cnt, cwnd / (reno - cwnd))
    cnt = max(cnt, CUBIC_MIN_CNT)
    return replace(window, cwnd=cwnd + acked / cnt, reno=reno)


def _overflow(path: Bottleneck, window: Window, unsent: float) -> Window:
    """A round's peak in flight (the grown window, or what is left to send) beyond BDP + queue loses a segment at
    the drop-tail queue: CUBIC's reduction (bictcp_recalc_ssthresh with fast convergence; after recovery the
    window is the new ssthresh)."""
    if min(window.cwnd, unsent) <= path.capacity_segments:
        return window
    cwnd = window.cwnd
    w_max = cwnd * (1 + CUBIC_BETA) / 2 if cwnd < window.w_max else cwnd
    reduced = max(cwnd * CUBIC_BETA, 2.0)
    return replace(window, cwnd=reduced, ssthresh=reduced, w_max=w_max, epoch_ms=None)


def after_idle(path: Bottleneck, done: Transfer, idle_ms: float, *, restart: bool) -> Window:
    """The window the next transfer starts with after the sender sat `idle_ms` since its last segment."""
    window = done.end
    if not restart:
        return window
    rto_ms = path.rtt_ms + done.last_queue_ms + MIN_RTO_MS
    ssthresh = None if window.ssthresh is None else int(window.ssthresh)
    cwnd, ssthresh = restart_after_idle(int(window.cwnd), ssthresh, idle_ms, rto_ms,
                                        initial_window=INITIAL_WINDOW_SEGMENTS)
    return replace(window, cwnd=float(cwnd), ssthresh=None if ssthresh is None else float(ssthresh))


@dataclass(frozen=True)
class SteadyTransfer:
    """The median transfer of a steady stream of equal transfers, with what it is made of."""

    ms: float
    transfers_ms: tuple[float, ...]      # every measured transfer, in order
    start_cwnd: tuple[int, ...]          # the window each measured transfer started with
    window_limited_rounds: int           # round trips the median transfer paid for its window

    @property
    def pays_round_trips(self) -> bool:
        return self.window_limited_rounds > 0


def steady_transfer(path: Bottleneck, payload_bytes: int, *, delay_ms: float, between_ms: float, restart: bool,
                    serialisation_ms: Callable[[int], float]) -> SteadyTransfer:
    """Repeat the transfer on one connection, the sender idle `between_ms` from one delivery to the next send
    (plus its last segment's queueing and one-way delay), and return the median of the measured transfers.
    The connection starts as one that has filled the link once (`Window.after_filling`)."""
    window = Window.after_filling(path)
    done: list[Transfer] = []
    known: dict[int, float] = {}  # a trace's transmission time is a median over thousands of start phases

    def serialise(size: int) -> float:
        if size not in known:
            known[size] = serialisation_ms(size)
        return known[size]

    for _ in range(WARMUP_TRANSFERS + MEASURED_TRANSFERS):
        one = transfer(path, window, payload_bytes, delay_ms=delay_ms, serialisation_ms=serialise)
        done.append(one)
        window = after_idle(path, one, one.last_queue_ms + delay_ms + max(0.0, between_ms), restart=restart)
    measured = done[WARMUP_TRANSFERS:]
    ordered = sorted(measured, key=lambda t: t.ms)
    middle = ordered[(len(ordered) - 1) // 2]
    return SteadyTransfer(float(statistics.median(t.ms for t in measured)), tuple(t.ms for t in measured),
                          tuple(int(t.start.cwnd) for t in measured), middle.window_limited_rounds)

"""Link stages: small impairments with the same verbs, composed into a pipeline per direction.

Shaped like mahimahi's queues (src/frontend/*_queue.hh): a stage takes a packet in with its arrival time
(``enqueue``), says when its next packet is due (``next_due``), hands out every packet due by a given time
(``dequeue``), and reports what it holds (``len()``, ``size_bytes``). Stages never read a clock: times are
integer nanoseconds passed in by the caller, so the same code runs under the forwarder's monotonic clock and
under a fake clock in unit tests.

A packet travels as an item ``(t_ns, rx_ns, frame)``: ``t_ns`` is its arrival time at this stage (on the way
out: the time it is due to leave), ``rx_ns`` the time the link received it (for sojourn statistics), ``frame``
the Ethernet frame. A stage hands each packet on with its *scheduled* due time, not the time the event loop got
round to it, so late wake-ups never accumulate along the pipeline.

Drops are counted per cause in ``drops`` (``loss``, ``queue_overflow``, ``aqm``).
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections import deque
from collections.abc import Callable
from typing import Protocol

from netem.disttables import NETEM_DIST_SCALE, distribution_table
from netem.errors import LinkError
from netem.link.histogram import LatencyHistogram
from netem.link.queues import DropTail, Entry
from netem.trace import MAHIMAHI_OPPORTUNITY_BYTES, MahimahiTrace, ThroughputTrace

Item = tuple[int, int, bytes]

#: Bytes of the Ethernet header in every frame the link forwards (dst MAC, src MAC, EtherType).
ETHERNET_HEADER_BYTES = 14
JITTER_DISTRIBUTIONS = ("uniform", "normal", "pareto")


class Stage(Protocol):
    """The verbs every stage has."""

    name: str

    @property
    def drops(self) -> dict[str, int]: ...

    def enqueue(self, item: Item) -> None: ...

    def next_due(self) -> int | None: ...

    def dequeue(self, now_ns: int, out: list[Item]) -> None: ...

    def __len__(self) -> int: ...

    @property
    def size_bytes(self) -> int: ...

    def drain(self) -> list[Item]: ...


class _FifoStage:
    """Shared body of stages whose output order is their input order (a deque of due items)."""

    name = "fifo"

    def __init__(self) -> None:
        self.drops: dict[str, int] = {}
        self._due: deque[Item] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._due)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def next_due(self) -> int | None:
        return self._due[0][0] if self._due else None

    def dequeue(self, now_ns: int, out: list[Item]) -> None:
        due = self._due
        while due and due[0][0] <= now_ns:
            item = due.popleft()
            self._bytes -= len(item[2])
            out.append(item)

    def drain(self) -> list[Item]:
        items = list(self._due)
        self._due.clear()
        self._bytes = 0
        return items


class DelayStage(_FifoStage):
    """Constant one-way delay: every packet leaves exactly ``delay_ns`` after it arrived."""

    name = "delay"

    def __init__(self, delay_ns: int) -> None:
        super().__init__()
        if delay_ns < 0:
            raise LinkError(f"delay {delay_ns} ns must be >= 0")
        self.delay_ns = delay_ns

    def enqueue(self, item: Item) -> None:
        self._due.append((item[0] + self.delay_ns, item[1], item[2]))
        self._bytes += len(item[2])


def jitter_sampler(distribution: str, jitter_ns: int, rng: random.Random) -> Callable[[], int]:
    """A function returning one jitter sample in ns, drawn exactly as Linux netem draws it.

    ``uniform``: uniform on [-jitter, +jitter) (netem without a distribution table). ``normal`` and
    ``pareto``: ``jitter * table[i] / 8192`` with netem's own distribution tables (netem.disttables, the
    numbers iproute2 ships), so both backends give the same delay distribution: normal has standard deviation
    = jitter; pareto (shape 3, shifted to mean 0, standard deviation 0.82 jitter after netem's clamping) has a
    short left tail (-0.67 jitter) and a long right tail up to +4 jitter, i.e. occasional delay spikes.
    """
    random_ = rng.random
    if distribution == "uniform":
        span = 2 * jitter_ns
        return lambda: int(random_() * span) - jitter_ns
    if distribution in ("normal", "pareto"):
        table = distribution_table(distribution)
        size = len(table)
        scale = jitter_ns / NETEM_DIST_SCALE
        return lambda: int(table[int(random_() * size)] * scale)
    raise LinkError(f"unknown jitter distribution {distribution!r}: expected one of {', '.join(JITTER_DISTRIBUTIONS)}")


class JitterStage(_FifoStage):
    """Delay with random variation: each packet gets ``delay + sample`` (never below 0).

    In order by default: a packet never leaves before the one that arrived before it (its due time is raised
    to the previous packet's), so TCP sees delay variation but no reordering; this raises the mean delay a
    little when jitter exceeds the gap between packets. ``reorder=True`` keeps each packet's own due time,
    as Linux netem does, so packets overtake each other.
    """

    name = "jitter"

    def __init__(
        self, delay_ns: int, jitter_ns: int, distribution: str, rng: random.Random, reorder: bool = False
    ) -> None:
        super().__init__()
        if delay_ns < 0 or jitter_ns < 0:
            raise LinkError(f"delay {delay_ns} ns and jitter {jitter_ns} ns must be >= 0")
        self.delay_ns = delay_ns
        self.jitter_ns = jitter_ns
        self.reorder = reorder
        self._sample = jitter_sampler(distribution, jitter_ns, rng)
        self._last_due = 0
        self._heap: list[tuple[int, int, int, bytes]] = []
        self._seq = 0

    def enqueue(self, item: Item) -> None:
        added = self.delay_ns + self._sample()
        due = item[0] + (added if added > 0 else 0)
        self._bytes += len(item[2])
        if self.reorder:
            self._seq += 1
            heapq.heappush(self._heap, (due, self._seq, item[1], item[2]))
            return
        if due < self._last_due:
            due = self._last_due
        self._last_due = due
        self._due.append((due, item[1], item[2]))

    def __len__(self) -> int:
        return len(self._heap) if self.reorder else len(self._due)

    def next_due(self) -> int | None:
        if self.reorder:
            return self._heap[0][0] if self._heap else None
        return self._due[0][0] if self._due else None

    def dequeue(self, now_ns: int, out: list[Item]) -> None:
        if not self.reorder:
            super().dequeue(now_ns, out)
            return
        heap = self._heap
        while heap and heap[0][0] <= now_ns:
            due, _, rx, frame = heapq.heappop(heap)
            self._bytes -= len(frame)
            out.append((due, rx, frame))

    def drain(self) -> list[Item]:
        if not self.reorder:
            return super().drain()
        items = [(due, rx, frame) for due, _, rx, frame in sorted(self._heap)]
        self._heap.clear()
        self._bytes = 0
        return items


class RandomLossModel:
    """Independent (Bernoulli) loss with probability ``p`` per packet."""

    def __init__(self, p: float, rng: random.Random) -> None:
        if not 0.0 <= p <= 1.0:
            raise LinkError(f"loss probability {p} must be in [0, 1]")
        self.p = p
        self._random = rng.random

    def lose(self) -> bool:
        return self._random() < self.p


class GilbertElliottModel:
    """Two-state Markov loss (Gilbert-Elliott), evaluated once per packet.

    States good and bad; ``p`` = P(good -> bad), ``r`` = P(bad -> good) per packet; a packet is lost with
    probability ``h`` in the good state and ``k`` in the bad state (the convention of netem.profile). The
    packet's fate is drawn in the current state, then the state moves. Long-run loss rate:
    ``(r * h + p * k) / (p + r)``.
    """

    def __init__(self, p: float, r: float, h: float, k: float, rng: random.Random) -> None:
        for label, value in (("p", p), ("r", r), ("h", h), ("k", k)):
            if not 0.0 <= value <= 1.0:
                raise LinkError(f"Gilbert-Elliott {label}={value} must be in [0, 1]")
        self.p, self.r, self.h, self.k = p, r, h, k
        self.bad = False
        self._random = rng.random

    def lose(self) -> bool:
        rand = self._random
        lost = rand() < (self.k if self.bad else self.h)
        if self.bad:
            if rand() < self.r:
                self.bad = False
        elif rand() < self.p:
            self.bad = True
        return lost

    def steady_state_loss(self) -> float:
        if self.p + self.r == 0:
            return self.h
        return (self.r * self.h + self.p * self.k) / (self.p + self.r)


class LossStage(_FifoStage):
    """Drops packets as its loss model says (cause ``loss``); the others pass at once."""

    name = "loss"

    def __init__(self, model: RandomLossModel | GilbertElliottModel) -> None:
        super().__init__()
        self.model = model
        self.drops["loss"] = 0

    def enqueue(self, item: Item) -> None:
        if self.model.lose():
            self.drops["loss"] += 1
            return
        self._due.append(item)
        self._bytes += len(item[2])


class _QueuedOutputStage:
    """What the stages with a queue in front of a one-at-a-time transmitter share: the packet being sent
    (``_busy``), the sent packets waiting for their due time (``_out``), and how they are counted, drained and
    handed on. Subclasses fill ``_out`` in `_advance`."""

    queue: DropTail
    _busy: Item | None
    _out: deque[Item]
    _out_bytes: int

    def _advance(self, now_ns: int) -> None:
        raise NotImplementedError

    @property
    def drops(self) -> dict[str, int]:
        return self.queue.drops

    def __len__(self) -> int:
        return len(self.queue) + (self._busy is not None) + len(self._out)

    @property
    def size_bytes(self) -> int:
        busy = len(self._busy[2]) if self._busy is not None else 0
        return self.queue.size_bytes + busy + self._out_bytes

    def dequeue(self, now_ns: int, out: list[Item]) -> None:
        self._advance(now_ns)
        pending = self._out
        while pending and pending[0][0] <= now_ns:
            item = pending.popleft()
            self._out_bytes -= len(item[2])
            out.append(item)

    def drain(self) -> list[Item]:
        items = list(self._out)
        if self._busy is not None:
            items.append(self._busy)
        items.extend(self.queue.drain())
        self._out.clear()
        self._out_bytes = 0
        self._busy = None
        return items


class _BottleneckStage(_QueuedOutputStage):
    """A link that sends one packet at a time, with a queue discipline in front of it.

    ``queue_delay`` records how long each packet waited in the queue before its transmission began (0 when the
    link was idle). Subclasses say how long a transmission takes (`_finish_ns`).
    """

    name = "bottleneck"

    def __init__(self, queue: DropTail) -> None:
        self.queue = queue
        self.queue_delay = LatencyHistogram()
        self._busy: Item | None = None  # (finish_ns, rx_ns, frame) being transmitted
        self._free_at = 0  # when the last transmission ended
        self._out: deque[Item] = deque()
        self._out_bytes = 0

    def _finish_ns(self, start_ns: int, frame_len: int) -> int:
        raise NotImplementedError

    def _start(self, start_ns: int, entry: Entry) -> None:
        self.queue_delay.record_ns(start_ns - entry[0])
        self._busy = (self._finish_ns(start_ns, len(entry[2])), entry[1], entry[2])

    def _advance(self, now_ns: int) -> None:
        """Complete every transmission that ends by ``now_ns``, starting the next queued packet each time."""
        busy = self._busy
        while busy is not None and busy[0] <= now_ns:
            self._out.append(busy)
            self._out_bytes += len(busy[2])
            entry = self.queue.dequeue(busy[0])
            if entry is None:
                self._busy = None
                self._free_at = busy[0]
                return
            self._start(busy[0], entry)
            busy = self._busy

    def enqueue(self, item: Item) -> None:
        arrival = item[0]
        self._advance(arrival)
        if self._busy is None and not len(self.queue):
            # A frame stamped by the kernel may arrive "in the past", during a transmission the loop already
            # completed: it starts when the link became free, never overlapping the previous frame.
            self._start(max(arrival, self._free_at), item)
        else:
            self.queue.enqueue(item, arrival)

    def next_due(self) -> int | None:
        if self._out:
            return self._out[0][0]
        return self._busy[0] if self._busy is not None else None



class RateStage(_BottleneckStage):
    """Serialises frames at a constant bit rate, counting the whole Ethernet frame as the link sees it.

    Counted bytes: the 14-byte Ethernet header plus the IP packet, i.e. the frame's length as received on the
    veth (what Linux netem and tbf count as skb->len). Preamble, FCS and inter-frame gap do not exist on a veth
    or a 5G radio bearer and are not counted; ``overhead_bytes`` adds a fixed per-frame amount if a model
    wants them.
    """

    name = "rate"

    def __init__(self, rate_bps: float, queue: DropTail, overhead_bytes: int = 0) -> None:
        super().__init__(queue)
        if not (rate_bps > 0 and math.isfinite(rate_bps)):
            raise LinkError(f"rate {rate_bps} bit/s must be a positive number")
        self.rate_bps = rate_bps
        self.overhead_bytes = overhead_bytes
        self._ns_per_byte = 8e9 / rate_bps

    def _finish_ns(self, start_ns: int, frame_len: int) -> int:
        return start_ns + int((frame_len + self.overhead_bytes) * self._ns_per_byte + 0.5)


class ThroughputTraceStage(_BottleneckStage):
    """A rate stage whose bit rate follows a per-interval throughput trace (repeating); 0 Mbit/s = outage.

    A frame in transmission when the rate changes finishes at the new rate; during an outage it waits. The
    trace's time 0 is ``origin_ns``. Counts bytes like `RateStage`.
    """

    name = "trace"

    def __init__(self, trace: ThroughputTrace, queue: DropTail, origin_ns: int, overhead_bytes: int = 0) -> None:
        super().__init__(queue)
        self.trace = trace
        self.origin_ns = origin_ns
        self.overhead_bytes = overhead_bytes
        self._interval_ns = trace.interval_ms * 1_000_000
        self._bits_per_ns = [mbit * 1e6 / 1e9 for mbit in trace.mbit]

    def rate_mbit_at(self, t_ns: int) -> float:
        index = ((t_ns - self.origin_ns) // self._interval_ns) % len(self._bits_per_ns)
        return self.trace.mbit[index]

    def _finish_ns(self, start_ns: int, frame_len: int) -> int:
        bits = (frame_len + self.overhead_bytes) * 8.0
        interval = self._interval_ns
        rates = self._bits_per_ns
        slot = (start_ns - self.origin_ns) // interval
        t = start_ns
        while True:
            end = self.origin_ns + (slot + 1) * interval
            rate = rates[slot % len(rates)]
            if rate > 0:
                capacity = (end - t) * rate
                if capacity >= bits:
                    return t + int(bits / rate + 0.5)
                bits -= capacity
            t = end
            slot += 1


class DeliveryTraceStage(_QueuedOutputStage):
    """Mahimahi packet-delivery replay: each trace timestamp is one chance to send 1500 bytes.

    Counted bytes: the IP packet (frame minus its 14-byte Ethernet header), as mahimahi counts the datagrams
    it reads from its TUN device, so a trace recorded for mahimahi gives the same capacity here. An
    opportunity with nothing queued is lost (no banking); a packet larger than the bytes left in an
    opportunity takes bytes from the following ones and leaves at the opportunity that completes it. The
    trace repeats with its period (last timestamp) from ``origin_ns``.
    """

    name = "trace"

    def __init__(self, trace: MahimahiTrace, queue: DropTail, origin_ns: int) -> None:
        self.trace = trace
        self.queue = queue
        self.queue_delay = LatencyHistogram()
        self._offsets_ns = [ms * 1_000_000 for ms in trace.opportunities_ms]
        self._period_ns = trace.period_ms * 1_000_000
        self._base_ns = origin_ns
        self._next = 0  # index of the next opportunity in the current period
        self._busy: Entry | None = None  # entry partly transmitted
        self._bytes_left = 0
        self._out: deque[Item] = deque()
        self._out_bytes = 0

    def _opportunity_ns(self) -> int:
        return self._base_ns + self._offsets_ns[self._next]

    def _use_opportunity(self) -> None:
        self._next += 1
        if self._next == len(self._offsets_ns):
            self._next = 0
            self._base_ns += self._period_ns

    def _skip_idle_until(self, t_ns: int) -> None:
        """Jump over every opportunity before ``t_ns`` at once (nothing to send: they are simply lost)."""
        if self._opportunity_ns() >= t_ns:
            return
        periods = (t_ns - self._base_ns) // self._period_ns
        if periods > 0:
            self._base_ns += periods * self._period_ns
            self._next = 0
        self._next = bisect.bisect_left(self._offsets_ns, t_ns - self._base_ns, lo=self._next)
        if self._next == len(self._offsets_ns):
            self._next = 0
            self._base_ns += self._period_ns
            self._next = bisect.bisect_left(self._offsets_ns, t_ns - self._base_ns)

    def _advance(self, now_ns: int) -> None:
        """Use every opportunity up to ``now_ns`` (mahimahi's ``rationalize``)."""
        while True:
            if self._busy is None and not len(self.queue):
                self._skip_idle_until(now_ns + 1)
                return
            when = self._opportunity_ns()
            if when > now_ns:
                return
            self._use_opportunity()
            budget = MAHIMAHI_OPPORTUNITY_BYTES
            while budget > 0:
                if self._busy is None:
                    entry = self.queue.dequeue(when)
                    if entry is None:
                        break
                    self.queue_delay.record_ns(when - entry[0])
                    self._busy = entry
                    self._bytes_left = max(0, len(entry[2]) - ETHERNET_HEADER_BYTES)
                taken = min(budget, self._bytes_left)
                self._bytes_left -= taken
                budget -= taken
                if self._bytes_left == 0:
                    busy = self._busy
                    self._out.append((when, busy[1], busy[2]))
                    self._out_bytes += len(busy[2])
                    self._busy = None
                    if budget == 0:
                        break

    def enqueue(self, item: Item) -> None:
        self._advance(item[0])
        self.queue.enqueue(item, item[0])

    def next_due(self) -> int | None:
        if self._out:
            return self._out[0][0]
        if self._busy is None and not len(self.queue):
            return None
        return self._opportunity_ns()


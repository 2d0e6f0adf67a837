"""Queue disciplines: the packets waiting in front of a bottleneck (rate or trace stage).

Every discipline has mahimahi's abstract-queue verbs: ``enqueue`` (may refuse: tail drop), ``dequeue`` (may
drop at the head: AQM), ``len()`` and ``size_bytes``. A queued entry is ``(arrival_ns, rx_ns, frame)``: the time
it reached the queue, the time the link received it, and the Ethernet frame. Drops are counted by cause in
``drops`` so the link can report them.
"""

from __future__ import annotations

import math
from collections import deque

from netem.errors import LinkError

Entry = tuple[int, int, bytes]

#: Used when a profile sets no queue limit: Linux's default txqueuelen, so memory stays bounded.
DEFAULT_QUEUE_PACKETS = 1000
QUEUE_DISCIPLINES = ("droptail", "drophead", "codel", "rr", "pf")


class DropTail:
    """FIFO that refuses an arriving packet when it would exceed the packet or byte limit."""

    drop_cause = "queue_overflow"

    def __init__(self, limit_packets: int | None = None, limit_bytes: int | None = None) -> None:
        if limit_packets is None and limit_bytes is None:
            limit_packets = DEFAULT_QUEUE_PACKETS
        if limit_packets is not None and limit_packets < 1:
            raise LinkError(f"queue limit {limit_packets} packets must be >= 1")
        if limit_bytes is not None and limit_bytes < 1:
            raise LinkError(f"queue limit {limit_bytes} bytes must be >= 1")
        self.limit_packets = limit_packets
        self.limit_bytes = limit_bytes
        self.size_bytes = 0
        self.drops: dict[str, int] = {}
        self._fifo: deque[Entry] = deque()

    def __len__(self) -> int:
        return len(self._fifo)

    def _fits(self, frame_len: int) -> bool:
        if self.limit_packets is not None and len(self._fifo) >= self.limit_packets:
            return False
        return self.limit_bytes is None or self.size_bytes + frame_len <= self.limit_bytes

    def _drop(self, cause: str) -> None:
        self.drops[cause] = self.drops.get(cause, 0) + 1

    def enqueue(self, entry: Entry, now_ns: int) -> bool:
        """Queue the entry; False (and a counted drop) when the queue is full."""
        if not self._fits(len(entry[2])):
            self._drop(self.drop_cause)
            return False
        self._fifo.append(entry)
        self.size_bytes += len(entry[2])
        return True

    def dequeue(self, now_ns: int) -> Entry | None:
        """The oldest entry, or None when empty."""
        if not self._fifo:
            return None
        entry = self._fifo.popleft()
        self.size_bytes -= len(entry[2])
        return entry

    def drain(self) -> list[Entry]:
        """Remove and return every queued entry, oldest first (used when the link is reconfigured)."""
        entries = list(self._fifo)
        self._fifo.clear()
        self.size_bytes = 0
        return entries


class DropHead(DropTail):
    """FIFO that makes room for an arriving packet by dropping the oldest ones (fresher data wins)."""

    def enqueue(self, entry: Entry, now_ns: int) -> bool:
        frame_len = len(entry[2])
        if self.limit_bytes is not None and frame_len > self.limit_bytes:
            self._drop(self.drop_cause)
            return False
        while self._fifo and not self._fits(frame_len):
            old = self._fifo.popleft()
            self.size_bytes -= len(old[2])
            self._drop(self.drop_cause)
        self._fifo.append(entry)
        self.size_bytes += frame_len
        return True


class CoDel(DropTail):
    """Controlled Delay AQM (RFC 8289): drops at dequeue while the sojourn time stays above ``target``.

    The packet/byte limits still apply at enqueue (tail drop, cause ``queue_overflow``); CoDel's own drops
    are counted as ``aqm``. Follows the RFC's pseudo-code with times in ns.
    """

    def __init__(
        self,
        limit_packets: int | None = None,
        limit_bytes: int | None = None,
        target_ms: float = 5.0,
        interval_ms: float = 100.0,
        mtu_bytes: int = 1514,
    ) -> None:
        super().__init__(limit_packets, limit_bytes)
        if not (target_ms > 0 and interval_ms > 0):
            raise LinkError(f"CoDel target {target_ms} ms and interval {interval_ms} ms must be > 0")
        self.target_ns = int(target_ms * 1e6)
        self.interval_ns = int(interval_ms * 1e6)
        self.mtu_bytes = mtu_bytes
        self._first_above_ns = 0
        self._drop_next_ns = 0
        self._count = 0
        self._last_count = 0
        self._dropping = False

    def _control_law(self, t_ns: int) -> int:
        return t_ns + int(self.interval_ns / math.sqrt(self._count))

    def _do_dequeue(self, now_ns: int) -> tuple[Entry | None, bool]:
        entry = DropTail.dequeue(self, now_ns)
        if entry is None:
            self._first_above_ns = 0
            return None, False
        sojourn = now_ns - entry[0]
        if sojourn < self.target_ns or self.size_bytes <= self.mtu_bytes:
            self._first_above_ns = 0
            return entry, False
        if self._first_above_ns == 0:
            self._first_above_ns = now_ns + self.interval_ns
            return entry, False
        return entry, now_ns >= self._first_above_ns

    def dequeue(self, now_ns: int) -> Entry | None:
        entry, ok_to_drop = self._do_dequeue(now_ns)
        if entry is None:
            self._dropping = False
            return None
        if self._dropping:
            if not ok_to_drop:
                self._dropping = False
            while self._dropping and now_ns >= self._drop_next_ns:
                self._drop("aqm")
                self._count += 1
                entry, ok_to_drop = self._do_dequeue(now_ns)
                if entry is None or not ok_to_drop:
                    self._dropping = False
                else:
                    self._drop_next_ns = self._control_law(self._drop_next_ns)
        elif ok_to_drop:
            self._drop("aqm")
            entry, _ = self._do_dequeue(now_ns)
            self._dropping = True
            delta = self._count - self._last_count
            recent = now_ns - self._drop_next_ns < 16 * self.interval_ns
            self._count = delta if (delta > 1 and recent) else 1
            self._drop_next_ns = self._control_law(now_ns)
            self._last_count = self._count
        return entry


def make_queue(discipline: str, limit_packets: int | None, limit_bytes: int | None) -> DropTail:
    """The queue for a profile's ``queue_discipline`` name."""
    if discipline == "droptail":
        return DropTail(limit_packets, limit_bytes)
    if discipline == "drophead":
        return DropHead(limit_packets, limit_bytes)
    if discipline == "codel":
        return CoDel(limit_packets, limit_bytes)
    if discipline in ("rr", "pf"):  # per-UE schedulers of a shared cell (netem.link.cellsched)
        from netem.link.cellsched import SCHEDULERS

        return SCHEDULERS[discipline](limit_packets, limit_bytes)
    raise LinkError(f"unknown queue discipline {discipline!r}: expected one of {', '.join(QUEUE_DISCIPLINES)}")

"""Per-UE schedulers for a cell's shared bottleneck: one sub-queue per UE, a scheduler choosing whose frame the
shared transmitter sends next.

A cell's uplink capacity is shared by its UEs, and a 5G base station's MAC scheduler, not a FIFO, decides who
sends (3GPP TS 38.300 section 10: dynamic scheduling by the gNB). These queue disciplines stand in front of the
link's rate (or trace) stage in place of the FIFO, so the shared rate is what the profile says and the split
between UEs is the scheduler's:

- ``rr``: deficit round robin (Shreedhar and Varghese, "Efficient fair queuing using deficit round-robin",
  IEEE/ACM ToN 1996) with a quantum of one full Ethernet frame: every backlogged UE gets an equal share of the
  bytes, whatever its frame sizes.
- ``pf``: proportional fair (Jalali, Padovani and Pankaj, "Data throughput of CDMA-HDR", IEEE VTC 2000): serve
  the backlogged UE with the largest instantaneous rate / average served rate. The emulated cell gives every UE
  the same channel (a profile has one rate), so the metric reduces to 1 / average: the least-served UE goes
  next, and an average with a time constant of ``PF_TIME_CONSTANT`` scheduling decisions (the usual
  exponential average) remembers who was served recently. Over a long run its shares equal round robin's; over
  short ones a UE that was idle catches up first. No per-UE channel quality is modelled.

A UE is told apart by its frame's IPv4 source address (uplink; the downlink's destination would be used if a
direction is keyed so, see ``key_offset``); non-IPv4 frames share one key. Queue limits (packets, bytes) apply
per UE, like a per-UE RLC buffer, so one UE's backlog never makes another UE's frames overflow.
"""

from __future__ import annotations

from collections import deque

from netem.link.queues import DropTail, Entry

ETH_TYPE_OFFSET = 12
IPV4_ETHERTYPE = b"\x08\x00"
IPV4_SRC_OFFSET = 14 + 12
IPV4_DST_OFFSET = 14 + 16
#: The deficit round robin quantum: one full Ethernet frame (MTU 1500 + 14-byte header).
DRR_QUANTUM_BYTES = 1514
#: Proportional fair's averaging window, in scheduling decisions (frames sent).
PF_TIME_CONSTANT = 100.0
OTHER = b""


def ue_key(frame: bytes, offset: int = IPV4_SRC_OFFSET) -> bytes:
    """The UE a frame belongs to: its IPv4 address at `offset` (source by default), or b"" for non-IPv4."""
    if frame[ETH_TYPE_OFFSET:ETH_TYPE_OFFSET + 2] != IPV4_ETHERTYPE or len(frame) < offset + 4:
        return OTHER
    return bytes(frame[offset:offset + 4])


def key_text(key: bytes) -> str:
    """A key as a dotted IPv4 address ("other" for non-IPv4 frames)."""
    return ".".join(str(b) for b in key) if len(key) == 4 else "other"


class _PerUeQueue(DropTail):
    """Sub-FIFOs per UE; subclasses pick the next UE (`_pick`). Counts each UE's sent frames and bytes."""

    def __init__(self, limit_packets: int | None = None, limit_bytes: int | None = None,
                 key_offset: int = IPV4_SRC_OFFSET) -> None:
        super().__init__(limit_packets, limit_bytes)
        self.key_offset = key_offset
        self._queues: dict[bytes, deque[Entry]] = {}
        self._bytes: dict[bytes, int] = {}
        self._count = 0
        self.sent_packets: dict[bytes, int] = {}
        self.sent_bytes: dict[bytes, int] = {}

    def __len__(self) -> int:
        return self._count

    def enqueue(self, entry: Entry, now_ns: int) -> bool:
        key = ue_key(entry[2], self.key_offset)
        fifo = self._queues.get(key)
        if fifo is None:
            fifo = self._queues[key] = deque()
            self._bytes[key] = 0
        frame_len = len(entry[2])
        if (self.limit_packets is not None and len(fifo) >= self.limit_packets) or (
                self.limit_bytes is not None and self._bytes[key] + frame_len > self.limit_bytes):
            self._drop(self.drop_cause)
            return False
        if not fifo:
            self._activate(key)
        fifo.append(entry)
        self._bytes[key] += frame_len
        self.size_bytes += frame_len
        self._count += 1
        return True

    def _activate(self, key: bytes) -> None:
        """A UE's sub-queue became non-empty."""

    def _pick(self) -> bytes:
        raise NotImplementedError

    def _take(self, key: bytes) -> Entry:
        entry = self._queues[key].popleft()
        frame_len = len(entry[2])
        self._bytes[key] -= frame_len
        self.size_bytes -= frame_len
        self._count -= 1
        self.sent_packets[key] = self.sent_packets.get(key, 0) + 1
        self.sent_bytes[key] = self.sent_bytes.get(key, 0) + frame_len
        return entry

    def dequeue(self, now_ns: int) -> Entry | None:
        if not self._count:
            return None
        return self._take(self._pick())

    def drain(self) -> list[Entry]:
        entries = sorted((e for fifo in self._queues.values() for e in fifo), key=lambda e: e[0])
        for key in self._queues:
            self._queues[key].clear()
            self._bytes[key] = 0
        self._count = 0
        self.size_bytes = 0
        self._reset()
        return entries

    def _reset(self) -> None:
        """Forget the scheduler's state for empty queues (after drain)."""

    def per_ue(self) -> dict[str, dict[str, int]]:
        """Frames and bytes each UE has sent through this queue (JSON-able, keyed by address)."""
        return {key_text(k): {"packets": self.sent_packets[k], "bytes": self.sent_bytes[k]}
                for k in self.sent_packets}


class RoundRobin(_PerUeQueue):
    """Deficit round robin across UEs (quantum: one full frame), so byte shares are equal, not frame counts."""

    scheduler = "rr"

    def __init__(self, limit_packets: int | None = None, limit_bytes: int | None = None,
                 key_offset: int = IPV4_SRC_OFFSET, quantum: int = DRR_QUANTUM_BYTES) -> None:
        super().__init__(limit_packets, limit_bytes, key_offset)
        self.quantum = quantum
        self._active: deque[bytes] = deque()
        self._deficit: dict[bytes, int] = {}
        self._granted = False  # the UE at the front already got this turn's quantum

    def _activate(self, key: bytes) -> None:
        self._active.append(key)
        self._deficit[key] = 0

    def _pick(self) -> bytes:
        while True:
            key = self._active[0]
            fifo = self._queues[key]
            head_len = len(fifo[0][2])
            if self._deficit[key] >= head_len:
                self._deficit[key] -= head_len
                if len(fifo) == 1:  # about to be empty: leaves the round, its deficit forgotten (DRR)
                    self._active.popleft()
                    self._deficit[key] = 0
                    self._granted = False
                return key
            if not self._granted:  # the UE's turn begins: one quantum
                self._deficit[key] += self.quantum
                self._granted = True
                continue
            self._active.rotate(-1)  # its quantum is spent: next UE's turn
            self._granted = False

    def _reset(self) -> None:
        self._active.clear()
        self._deficit.clear()
        self._granted = False


class ProportionalFair(_PerUeQueue):
    """Proportional fair with one channel rate for all UEs: the backlogged UE with the lowest average goes next."""

    scheduler = "pf"

    def __init__(self, limit_packets: int | None = None, limit_bytes: int | None = None,
                 key_offset: int = IPV4_SRC_OFFSET, time_constant: float = PF_TIME_CONSTANT) -> None:
        super().__init__(limit_packets, limit_bytes, key_offset)
        self.time_constant = time_constant
        self._average: dict[bytes, float] = {}

    def _pick(self) -> bytes:
        backlogged = [k for k, fifo in self._queues.items() if fifo]
        # ties (equal averages, e.g. at the start) go to the UE whose head frame arrived first
        return min(backlogged, key=lambda k: (self._average.get(k, 0.0), self._queues[k][0][0]))

    def _take(self, key: bytes) -> Entry:
        entry = super()._take(key)
        alpha = 1.0 / self.time_constant
        for k in self._queues:  # every UE's average decays each decision; the served one gains its bytes
            served = len(entry[2]) if k == key else 0
            self._average[k] = (1 - alpha) * self._average.get(k, 0.0) + alpha * served
        return entry

    def _reset(self) -> None:
        self._average.clear()


SCHEDULERS: dict[str, type[_PerUeQueue]] = {"rr": RoundRobin, "pf": ProportionalFair}

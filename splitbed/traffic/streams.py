"""The TCP connections of a session in a pcap, both directions, in one pass: every frame with its capture time,
its length on the wire, the stream offset of its payload and how much of it repeated earlier bytes; and each
direction's byte stream reassembled, so that its TLV units can be walked (`walk_units`).

Captures of a sweep point start while a session is already open, so a stream need not begin with its SYN: its
origin is then the lowest payload byte captured (between inferences the session is idle, so that is a unit
boundary; a stream whose units do not add up is reported as such by the callers, never guessed at). Offsets of
another capture of the same connection are placed on this one's axis with `Direction.offset_of_seq`, from the
absolute sequence numbers.

Headers are unpacked by netem.flows.parse_frame and retransmissions counted by its SeqTracker, so the figures
are those of `netem.flows.flow_stats` frame for frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from netem.errors import CaptureError
from netem.flows import FIN, SEQ_MOD, SYN, SeqTracker, read_frames

MAX_STREAM_BYTES = 1 << 30  # per direction; beyond it the stream is cut (the frames are still counted)
UNIT_HEADER = 5             # TLV header: type u8, length u32 big-endian (docs/FORMAT.md)


@dataclass
class Direction:
    """One direction of a connection as one capture saw it. Lists are per frame, in capture order."""

    src: str
    sport: int
    dst: str
    dport: int
    timestamps: list[float] = field(default_factory=list)
    wire: list[int] = field(default_factory=list)       # Ethernet frame length (what the link's rate counts)
    payload: list[int] = field(default_factory=list)    # TCP payload bytes, retransmissions included
    offsets: list[int | None] = field(default_factory=list)  # stream offset of the payload's first byte
    repeated: list[int] = field(default_factory=list)   # payload bytes already seen earlier in this direction
    syn_seen: bool = False
    origin_seq: int | None = None   # sequence number of stream offset 0
    stream: bytearray = field(default_factory=bytearray)
    hole_at: int | None = None      # first stream offset missing from the capture (None: contiguous)
    cut: bool = False               # the stream exceeded MAX_STREAM_BYTES, or the pcap holds only headers
    snapped: bool = False           # frames were captured shorter than they were (a headers-only pcap)
    _last_seq: int = 0
    _relative: int = 0
    _segments: dict[int, bytes] = field(default_factory=dict)
    _kept: int = 0
    _tracker: SeqTracker | None = None

    @property
    def packets(self) -> int:
        return len(self.timestamps)

    def offset_of_seq(self, seq: int) -> int:
        """Stream offset of an absolute sequence number (steps of < 2 GiB from the origin either way)."""
        if self.origin_seq is None:
            raise CaptureError(f"{self.src}:{self.sport} -> {self.dst}:{self.dport} carried no payload")
        step = (seq - self.origin_seq) % SEQ_MOD
        return step - SEQ_MOD if step >= SEQ_MOD // 2 else step

    def _relative_of(self, seq: int) -> int:
        step = (seq - self._last_seq) % SEQ_MOD
        if step >= SEQ_MOD // 2:
            step -= SEQ_MOD
        self._last_seq = seq
        self._relative += step
        return self._relative

    def add(self, timestamp: float, wire: int, seq: int, flags: int, data: bytes, size: int,
            keep_stream: bool) -> None:
        """One frame; `data` is the payload captured, `size` its length on the wire (more in a snapped pcap)."""
        self.timestamps.append(timestamp)
        self.wire.append(wire)
        self.payload.append(size)
        length = size + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        repeated = 0
        if length:  # as netem.flows.flow_stats counts a retransmission
            if self._tracker is None:
                self._tracker = SeqTracker(seq)
            repeated = min(self._tracker.observe(seq, length), size)
        self.repeated.append(repeated)
        if flags & SYN and not self.syn_seen:
            self.syn_seen = True
            self.origin_seq = (seq + 1) % SEQ_MOD
            self._last_seq, self._relative = self.origin_seq, 0
            self._segments = {}
            self.offsets = [None] * len(self.offsets)
        if not size:
            self.offsets.append(None)
            return
        if self.origin_seq is None:  # provisional: finish() moves the origin to the lowest byte captured
            self.origin_seq = seq
            self._last_seq, self._relative = seq, 0
        start = self._relative_of(seq)
        self.offsets.append(start)
        if len(data) < size:  # a snapped pcap: the bytes are not there to reassemble
            self.cut = self.snapped = True
        if keep_stream and not self.cut and len(self._segments.get(start, b"")) < len(data):
            self._kept += len(data) - len(self._segments.get(start, b""))
            if self._kept > MAX_STREAM_BYTES:
                self.cut = True
            else:
                self._segments[start] = data

    def finish(self) -> None:
        """Fix the origin (the SYN's, else the lowest byte captured) and reassemble the kept stream."""
        starts = [o for o in self.offsets if o is not None]
        if starts and not self.syn_seen:
            shift = min(starts)
            self.offsets = [None if o is None else o - shift for o in self.offsets]
            self._segments = {s - shift: d for s, d in self._segments.items()}
            assert self.origin_seq is not None
            self.origin_seq = (self.origin_seq + shift) % SEQ_MOD
        stream = bytearray()
        for start in sorted(s for s in self._segments if s >= 0):
            data = self._segments[start]
            if start > len(stream):
                self.hole_at = len(stream)
                break
            if start + len(data) > len(stream):
                stream += data[len(stream) - start:]
        self.stream = stream
        self._segments = {}
        self._tracker = None

    def frames_in(self, first: float, until: float | None) -> list[int]:
        """Indices of the frames captured at `first` <= t < `until` (None: to the end)."""
        return [i for i, t in enumerate(self.timestamps) if t >= first and (until is None or t < until)]

    def frames_overlapping(self, start: int, end: int) -> list[int]:
        """Indices of the frames whose payload overlaps stream bytes [start, end) (retransmissions included)."""
        return [i for i, (offset, size) in enumerate(zip(self.offsets, self.payload, strict=True))
                if offset is not None and offset < end and offset + size > start]


@dataclass
class Connection:
    """One TCP connection from a client to the server port: `up` client -> server, `down` server -> client."""

    up: Direction
    down: Direction

    @property
    def client(self) -> tuple[str, int]:
        return (self.up.src, self.up.sport)

    @property
    def first_ts(self) -> float:
        stamps = [d.timestamps[0] for d in (self.up, self.down) if d.timestamps]
        return min(stamps) if stamps else 0.0


def connections(pcap: str | Path, server: str, port: int, *, keep_streams: Iterable[str] = ("up", "down")
                ) -> list[Connection]:
    """Every TCP connection to server:port in the pcap, in order of first appearance."""
    keep = set(keep_streams)
    found: dict[tuple[str, int], Connection] = {}
    for frame in read_frames(pcap):
        if frame.proto != "tcp":
            continue
        if frame.dst == server and frame.dport == port:
            client, upward = (frame.src, frame.sport), True
        elif frame.src == server and frame.sport == port:
            client, upward = (frame.dst, frame.dport), False
        else:
            continue
        conn = found.get(client)
        if conn is None:
            conn = found[client] = Connection(Direction(client[0], client[1], server, port),
                                              Direction(server, port, client[0], client[1]))
        direction = conn.up if upward else conn.down
        direction.add(frame.timestamp, frame.wire_length, frame.seq, frame.flags, frame.payload, frame.length,
                      ("up" if upward else "down") in keep)
    for conn in found.values():
        conn.up.finish()
        conn.down.finish()
    return sorted(found.values(), key=lambda c: c.first_ts)


def walk_units(stream: bytes | bytearray) -> list[tuple[int, int, int]]:
    """(offset, type, size) of every complete TLV unit, from the 5-byte headers (type u8, length u32 BE)."""
    out, offset = [], 0
    while offset + UNIT_HEADER <= len(stream):
        size = UNIT_HEADER + int.from_bytes(stream[offset + 1:offset + UNIT_HEADER], "big")
        if offset + size > len(stream):
            break
        out.append((offset, stream[offset], size))
        offset += size
    return out

"""The AIPS/TLV streams inside a packet capture, for `splitbed format decode FILE.pcap`.

Every TCP conversation of the pcap is reassembled per direction (splitbed.traffic.streams: sequence numbers,
duplicates dropped, holes reported); a direction whose bytes walk as TLV units of known types (the format's 0-2
and the session protocol's 0xF0-0xFE, docs/PROTOCOL.md) is a unit stream, decoded with splitbed.format.Decoder
like any stream file. The session's control units are named and their JSON shown. A direction that does not walk
(other traffic, or a capture that starts inside a unit) is listed and left alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netem.flows import SYN, read_frames
from splitbed.traffic.streams import UNIT_HEADER, Connection, Direction, walk_units

ACK = 0x10
PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
               b"\x0a\x0d\x0d\x0a")
KNOWN_TYPES = frozenset({0, 1, 2} | set(range(0xF0, 0xFF)))
CONTROL_PREVIEW_CHARS = 400
MAX_CONTROL_JSON = 1 << 20


def is_pcap(path: str | Path) -> bool:
    """True when the file starts with a pcap or pcapng magic number."""
    with Path(path).open("rb") as handle:
        return handle.read(4) in PCAP_MAGICS


def unit_name(unit_type: int) -> str:
    from splitbed.nodes.protocol import MsgType

    try:
        return MsgType(unit_type).name
    except ValueError:
        return "reserved" if unit_type == 0 else f"undefined {unit_type}"


@dataclass
class UnitStream:
    """One direction of a TCP conversation and what its bytes are."""

    label: str              # "198.18.0.1:40000 -> 198.18.0.2:7000"
    direction: Direction
    units: int              # whole units walked
    tlv: bool               # the bytes walk as TLV units of known types
    note: str | None        # missing bytes, headers-only capture, not TLV

    @property
    def stream(self) -> bytes:
        return bytes(self.direction.stream)


def conversations(pcap: str | Path) -> list[Connection]:
    """Every TCP conversation, `up` from its client: the sender of the first frame, or its receiver when that
    frame is a SYN-ACK (the capture missed the SYN)."""
    found: dict[frozenset[tuple[str, int]], Connection] = {}
    for frame in read_frames(pcap):
        if frame.proto != "tcp":
            continue
        a, b = (frame.src, frame.sport), (frame.dst, frame.dport)
        conn = found.get(frozenset((a, b)))
        if conn is None:
            client, server = (b, a) if frame.flags & SYN and frame.flags & ACK else (a, b)
            conn = found[frozenset((a, b))] = Connection(Direction(*client, *server), Direction(*server, *client))
        direction = conn.up if a == conn.client else conn.down
        direction.add(frame.timestamp, frame.wire_length, frame.seq, frame.flags, frame.payload, frame.length, True)
    for conn in found.values():
        conn.up.finish()
        conn.down.finish()
    return sorted(found.values(), key=lambda c: c.first_ts)


def unit_streams(pcap: str | Path) -> list[UnitStream]:
    """Every direction that carried payload, in order of first appearance, client side first."""
    out = []
    for conn in conversations(pcap):
        for direction in (conn.up, conn.down):
            if not any(direction.payload):
                continue
            label = f"{direction.src}:{direction.sport} -> {direction.dst}:{direction.dport}"
            units = walk_units(direction.stream)
            walked = units[-1][0] + units[-1][2] if units else 0
            rest = bytes(direction.stream[walked:walked + UNIT_HEADER])
            tlv = bool(units) and all(kind in KNOWN_TYPES for _, kind, _ in units) and (
                not rest or rest[0] in KNOWN_TYPES)
            notes = []
            if not tlv:
                notes.append("not an AIPS/TLV unit stream (other traffic, or the capture starts inside a unit)")
            if direction.snapped:
                notes.append("the pcap holds only the start of each frame (headers): the units cannot be decoded")
            elif direction.hole_at is not None:
                notes.append(f"bytes from stream offset {direction.hole_at} are missing from the capture; decoded up "
                             "to there")
            elif tlv and walked < len(direction.stream):
                notes.append(f"the capture ends inside a unit ({len(direction.stream) - walked} bytes of it)")
            if tlv and not direction.syn_seen:
                notes.append("no SYN captured: the stream is taken from the first byte captured")
            out.append(UnitStream(label, direction, len(units), tlv, "; ".join(notes) or None))
    return out


def control_text(stream: bytes, offset: int, unit_type: int, size: int) -> str | None:
    """The JSON of a control unit (types 0xF0 and up, except JSON_BASELINE's tensors), shortened for display."""
    if unit_type < 0xF0 or size - UNIT_HEADER > MAX_CONTROL_JSON:
        return None
    value = stream[offset + UNIT_HEADER:offset + size]
    if unit_type == 0xF8:
        return f"{size - UNIT_HEADER:,} bytes of JSON-baseline tensors"
    try:
        body = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "(not JSON)"
    text = json.dumps(body, separators=(",", ":"))
    return text if len(text) <= CONTROL_PREVIEW_CHARS else text[:CONTROL_PREVIEW_CHARS] + "..."


def decode_events(stream: bytes, max_unit_size: int) -> Iterator[Any]:
    """The format decoder's events for a whole stream (end of stream signalled when it did not break)."""
    from splitbed.format import Decoder, FormatErrorEvent

    decoder = Decoder(max_unit_size=max_unit_size)
    decoder.feed(stream)
    events = decoder.events()
    if not decoder.broken and not (events and isinstance(events[-1], FormatErrorEvent)
                                   and not events[-1].recoverable):
        decoder.end_of_stream()
        events += decoder.events()
    yield from events


def dissector_path() -> Path:
    """The Wireshark Lua dissector shipped with the package (splitbed/data/wireshark/splitbed.lua)."""
    from importlib import resources

    return Path(str(resources.files("splitbed") / "data" / "wireshark" / "splitbed.lua"))

"""Reading an inference back from the packet captures of both sides of the link.

The uplink TCP stream is reassembled from the UE-side pcap (netem.flows.tcp_stream) and decoded with
splitbed.format.Decoder alone: the session's control messages are TLV units of undefined types, which the decoder
skips (docs/PROTOCOL.md). Each TensorsDecoded event carries the stream offset of its data unit, so the frames
that carried one inference (its AIPS and data unit) are known by their sequence numbers, on both sides.

Capture-based delivery time = (edge side: capture time of the last frame carrying the inference's bytes)
- (UE side: capture time of the first frame carrying them). Both pcaps are stamped by the same kernel's
CLOCK_REALTIME (one host), so the difference is a duration on one clock; it is compared with the record's
`delivery_ms` (CLOCK_MONOTONIC: local first send -> the remote kernel's receive stamp of the last byte). Only
durations are compared, never absolute times across the two clocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from splitbed.traffic.streams import walk_units

SYN = 0x02
__all__ = ["Connection", "UplinkUnit", "WireSpan", "decode_uplink", "find_connection", "inference_figures", "span",
           "walk_units"]


@dataclass
class UplinkUnit:
    """One TLV unit of the uplink stream: where it lies and what the decoder made of it."""

    kind: str               # aips, data, unknown
    offset: int             # stream offset of its first byte
    size: int               # header included
    aips_id: int | None = None
    tensors: list[np.ndarray] = field(default_factory=list)


@dataclass
class Connection:
    """The TCP connection from the UE to the remote node's port, as captured."""

    src: str
    sport: int
    dst: str
    dport: int


def find_connection(pcap: Path, dst: str, dport: int) -> Connection:
    """The last connection opened (SYN) to dst:dport in the pcap."""
    from netem.flows import read_frames

    found: Connection | None = None
    for frame in read_frames(pcap):
        if frame.proto == "tcp" and frame.dst == dst and frame.dport == dport and frame.flags & SYN:
            found = Connection(frame.src, frame.sport, frame.dst, frame.dport)
    if found is None:
        raise AssertionError(f"no connection to {dst}:{dport} was opened during the capture {pcap}")
    return found


def decode_uplink(stream: bytes) -> list[UplinkUnit]:
    """Every unit of an uplink byte stream, decoded by splitbed.format.Decoder alone.

    Unit boundaries come from the TLV headers; the tensors and AIPS ids from the decoder's events, matched by
    order and checked against each data event's own stream offset."""
    from splitbed.format import AipsActivated, Decoder, FormatErrorEvent, TensorsDecoded

    decoder = Decoder()
    decoder.feed(stream)
    decoder.end_of_stream()
    activated: list[int] = []
    decoded: list[Any] = []
    for event in decoder.events():
        if isinstance(event, FormatErrorEvent):
            raise AssertionError(f"the captured uplink does not decode: {event.code}: {event.message}")
        if isinstance(event, AipsActivated):
            activated.append(event.aips.aips_id)
        elif isinstance(event, TensorsDecoded):
            decoded.append(event)
    units: list[UplinkUnit] = []
    for offset, unit_type, size in walk_units(stream):
        kind = {1: "aips", 2: "data"}.get(unit_type, "unknown")
        units.append(UplinkUnit(kind, offset, size))
    aips_units = [u for u in units if u.kind == "aips"]
    data_units = [u for u in units if u.kind == "data"]
    if len(aips_units) != len(activated) or len(data_units) != len(decoded):
        raise AssertionError(f"the stream holds {len(aips_units)} AIPS and {len(data_units)} data units; the "
                             f"decoder activated {len(activated)} AIPS and decoded {len(decoded)} data units")
    for unit, aips_id in zip(aips_units, activated, strict=True):
        unit.aips_id = aips_id
    for unit, event in zip(data_units, decoded, strict=True):
        if event.stream_offset != unit.offset:
            raise AssertionError(f"data unit at stream offset {unit.offset} decoded at {event.stream_offset}")
        unit.aips_id = event.aips_id
        unit.tensors = [np.array(t) for t in event.tensors]
    return units


@dataclass
class WireSpan:
    """The frames that carried one byte range of the uplink stream, as one capture saw them."""

    first_ts: float
    last_ts: float
    frames: int
    wire_bytes: int      # Ethernet + IP + TCP headers + payload of those frames (retransmissions included)
    payload_bytes: int


def span(pcap: Path, conn: Connection, start: int, end: int) -> WireSpan:
    """Frames of `conn` (UE -> edge) whose payload overlaps stream bytes [start, end), stream offsets counted from
    the connection's SYN (splitbed.traffic.streams, the matcher the sweep's traffic figures use too)."""
    from splitbed.traffic.streams import connections

    found = [c for c in connections(pcap, conn.dst, conn.dport, keep_streams=())
             if c.client == (conn.src, conn.sport) and c.up.syn_seen]
    if not found:
        raise AssertionError(f"no connection {conn} (with its SYN) in {pcap}")
    up = found[-1].up
    frames = up.frames_overlapping(start, end)
    if not frames:
        raise AssertionError(f"no captured frame of {conn} carries stream bytes {start}..{end} in {pcap}")
    stamps = [up.timestamps[i] for i in frames]
    return WireSpan(min(stamps), max(stamps), len(frames), sum(up.wire[i] for i in frames),
                    sum(up.payload[i] for i in frames))


def inference_figures(ue_pcap: Path, edge_pcap: Path, conn: Connection, start: int, end: int) -> dict[str, Any]:
    """Wire figures of one inference's uplink bytes [start, end): capture-based delivery time and overhead."""
    ue = span(ue_pcap, conn, start, end)
    edge = span(edge_pcap, conn, start, end)
    return {
        "stream_bytes": end - start,
        "ue_frames": ue.frames, "ue_wire_bytes": ue.wire_bytes,
        "edge_frames": edge.frames, "edge_wire_bytes": edge.wire_bytes,
        "overhead_ratio": ue.wire_bytes / (end - start),
        "capture_delivery_ms": (edge.last_ts - ue.first_ts) * 1e3,
        "ue_send_span_ms": (ue.last_ts - ue.first_ts) * 1e3,
        "edge_receive_span_ms": (edge.last_ts - edge.first_ts) * 1e3,
    }

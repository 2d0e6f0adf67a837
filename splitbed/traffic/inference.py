"""Per-inference traffic figures from the two captures of a sweep point (UE side and edge side), joined to the
point's metrics records.

How packets are tied to an inference: by stream offsets, not by guessing from times. The uplink stream of each
connection is reassembled from the UE-side capture and its TLV units walked (splitbed.traffic.streams); an
inference's units are its AIPS (when one went) and its data unit, or its JSON-baseline unit. The records of the
point come in the order their inferences ran, so the k-th inference's units belong to the k-th record that sent
anything; each pairing is checked against the record's own sizes (`aips_bytes`, `serialized_intermediate_bytes`)
and the join stops, saying why, at the first that differs.

- The **burst** of an inference is the set of frames that carried its units' bytes (retransmissions included),
  found by their sequence numbers: `burst` as the UE put them on its veth (the traffic it offers the link),
  `burst_at_edge` as they left the emulated link at the edge.
- Its **window** runs from the first frame of its burst to the first frame of the next inference's burst (the
  end of the capture for the last), on each capture's own clock: every frame of the session between the
  point's first burst and the capture's end belongs to exactly one inference, so the windows add up to the
  capture. `uplink` counts the UE -> edge frames of the UE's window (every byte the UE sent, retransmissions
  included), `downlink` the edge -> UE frames of the edge's window (every byte the edge sent: the RESULT, the
  acknowledgements of the uplink data, control replies).

Both captures are stamped by this host's kernel (CLOCK_REALTIME): durations within one capture are measured on
one clock; nothing compares absolute times across captures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from splitbed.traffic.streams import Connection, Direction, walk_units

TRAFFIC_VERSION = "1.0"
AIPS, DATA, JSON_BASELINE = 0x01, 0x02, 0xF8
PEAK_BINS_MS = (1, 10, 100)
SOURCE = ("measured: packet captures on the ue and edge veths (netem.capture: AF_PACKET socket, kernel receive "
          "timestamps), TCP streams reassembled and their TLV units walked (splitbed.traffic)")
BURST_DELIMITER = ("stream offsets: the frames whose TCP payload carries this inference's uplink units (AIPS + data "
                   "unit, or the JSON-baseline unit), retransmissions included, found by reassembling the uplink "
                   "stream and walking its TLV headers")
WINDOW = ("from the first frame of this inference's burst to the first frame of the next inference's burst (or the "
          "end of the capture), on each capture; uplink from the UE-side capture, downlink from the edge-side one")
HEADER_OVERHEAD = "100 x (wire bytes - TCP payload bytes) / wire bytes: Ethernet, IP and TCP headers"


@dataclass
class InferenceUnits:
    """One inference's uplink units in one connection's stream: bytes [start, end)."""

    connection: int
    start: int
    end: int
    aips_bytes: int
    unit_bytes: int   # the data unit, or the JSON-baseline unit
    unit_type: int


def inference_units(conns: Sequence[Connection]) -> tuple[list[InferenceUnits], list[str]]:
    """The inferences' units of every connection, in order; and notes on what could not be walked."""
    found: list[InferenceUnits] = []
    notes: list[str] = []
    for index, conn in enumerate(conns):
        stream = conn.up.stream
        units = walk_units(stream)
        walked = units[-1][0] + units[-1][2] if units else 0
        if conn.up.hole_at is not None:
            notes.append(f"connection {index}: bytes from {conn.up.hole_at} of the uplink are missing from the "
                         "capture")
        elif walked != len(stream) and not conn.up.cut:
            notes.append(f"connection {index}: the uplink's last {len(stream) - walked} bytes are not a whole unit")
        pending: tuple[int, int] | None = None  # an AIPS waiting for the data unit that follows it
        for offset, kind, size in units:
            if kind == AIPS:
                pending = (offset, size)
            elif kind in (DATA, JSON_BASELINE):
                aips = pending if pending is not None and pending[0] + pending[1] == offset else None
                start = aips[0] if aips else offset
                found.append(InferenceUnits(index, start, offset + size, aips[1] if aips else 0, size, kind))
                pending = None
            else:
                pending = None
    return found, notes


def _sent_anything(record: dict[str, Any]) -> bool:
    stamps = record.get("timestamps_ns")
    return isinstance(stamps, dict) and stamps.get("local_first_send") is not None


def match(records: Sequence[dict[str, Any]], units: Sequence[InferenceUnits]
          ) -> tuple[dict[int, int], str | None]:
    """record index -> unit index, in order; and why the join stopped early (None: every record placed)."""
    pairs: dict[int, int] = {}
    next_unit = 0
    for index, record in enumerate(records):
        if not _sent_anything(record):
            continue
        if next_unit >= len(units):
            return pairs, (f"record {index} ({record.get('status')}) sent data but the capture holds no further "
                           "inference units")
        unit = units[next_unit]
        expected = (int(record.get("aips_bytes") or 0), record.get("serialized_intermediate_bytes"))
        if (unit.aips_bytes, unit.unit_bytes) != expected:
            if record.get("status") != "ok":
                continue  # a failed inference may have sent nothing whole; the next record gets this unit
            return pairs, (f"record {index}: AIPS + unit of {expected[0]} + {expected[1]} bytes, but the capture's "
                           f"next inference units are {unit.aips_bytes} + {unit.unit_bytes} bytes")
        pairs[index] = next_unit
        next_unit += 1
    return pairs, None


def direction_figures(direction: Direction, frames: Sequence[int]) -> dict[str, Any]:
    """Packets, bytes and retransmissions of some frames of one direction."""
    wire = sum(direction.wire[i] for i in frames)
    payload = sum(direction.payload[i] for i in frames)
    repeated = [i for i in frames if direction.repeated[i]]
    return {"packets": len(frames), "wire_bytes": wire, "payload_bytes": payload,
            "header_overhead_pct": 100.0 * (wire - payload) / wire if wire else None,
            "retransmitted_packets": len(repeated),
            "retransmitted_bytes": sum(direction.repeated[i] for i in repeated)}


def peak_mbit(stamps: Sequence[float], sizes: Sequence[int], bin_ms: float) -> float:
    """Largest bitrate over fixed bins of `bin_ms`, aligned on the first frame: bits in the bin / bin length."""
    if not stamps:
        return 0.0
    first = min(stamps)
    bins: dict[int, int] = {}
    for stamp, size in zip(stamps, sizes, strict=True):
        key = math.floor((stamp - first) * 1000.0 / bin_ms)
        bins[key] = bins.get(key, 0) + size
    return max(bins.values()) * 8 / (bin_ms * 1000.0)


def burst_figures(direction: Direction, frames: Sequence[int], app_bytes: int,
                  previous: tuple[float, float] | None) -> dict[str, Any]:
    """Size, duration, gaps and peak bitrates of one burst; `previous` = (first, last) stamp of the one before."""
    stamps = [direction.timestamps[i] for i in frames]
    first, last = min(stamps), max(stamps)
    figures = direction_figures(direction, frames)
    duration = (last - first) * 1e3
    figures.update({
        "app_bytes": app_bytes,
        "duration_ms": duration,
        "gap_ms": (first - previous[1]) * 1e3 if previous else None,
        "interval_ms": (first - previous[0]) * 1e3 if previous else None,
        "mean_mbit": figures["wire_bytes"] * 8 / (duration * 1e3) if duration > 0 else None,
    })
    sizes = [direction.wire[i] for i in frames]
    for width in PEAK_BINS_MS:
        figures[f"peak_mbit_{width}ms"] = peak_mbit(stamps, sizes, width)
    return figures


@dataclass
class PointTraffic:
    """The join of one point's captures with its records."""

    figures: dict[int, dict[str, Any]]     # record index -> its `traffic` section
    unassigned: dict[str, Any]             # frames before the first burst, per capture and direction
    note: str | None                       # why some records got no figures (None: all that sent data did)
    units: int
    starts: dict[str, list[float | None]]  # per capture side, the first frame's stamp of each unit's burst


def point_traffic(records: Sequence[dict[str, Any]], ue: Sequence[Connection], edge: Sequence[Connection],
                  capture: dict[str, Any]) -> PointTraffic:
    """Every record's traffic section, from the UE-side and edge-side connections of the same captures.
    `capture` (pcap paths, completeness, how they are kept) is copied into each section."""
    units, notes = inference_units(ue)
    pairs, stopped = match(records, units)
    if stopped:
        notes.append(stopped)
    edge_by_client = {c.client: c for c in edge}
    # each capture's burst of every unit, in order (None where a capture lacks it)
    bursts: dict[str, list[tuple[Direction, list[int]] | None]] = {"ue": [], "edge": []}
    for unit in units:
        conn = ue[unit.connection]
        bursts["ue"].append((conn.up, conn.up.frames_overlapping(unit.start, unit.end)))
        other = edge_by_client.get(conn.client)
        if other is None or other.up.origin_seq is None or conn.up.origin_seq is None:
            bursts["edge"].append(None)
            continue
        shift = other.up.offset_of_seq(conn.up.origin_seq)  # the UE's offset 0 on the edge capture's axis
        bursts["edge"].append((other.up, other.up.frames_overlapping(unit.start + shift, unit.end + shift)))
    starts = {side: [min(d.timestamps[i] for i in f) if b and (d := b[0]) and (f := b[1]) else None
                     for b in bursts[side]] for side in bursts}
    figures: dict[int, dict[str, Any]] = {}
    for record_index, unit_index in pairs.items():
        unit = units[unit_index]
        section: dict[str, Any] = {"version": TRAFFIC_VERSION, "source": SOURCE, "burst_delimiter": BURST_DELIMITER,
                                   "window": WINDOW, "header_overhead": HEADER_OVERHEAD, "capture": capture,
                                   "inference_in_capture": unit_index, "connection_in_capture": unit.connection,
                                   "stream_offset": unit.start}
        for side, key in (("ue", "burst"), ("edge", "burst_at_edge")):
            item = bursts[side][unit_index]
            if item is None or not item[1]:
                section[key] = None
                continue
            direction, frames = item
            previous = _previous_burst(bursts[side], unit_index)
            section[key] = burst_figures(direction, frames, unit.end - unit.start, previous)
        section["uplink"] = _window(ue[unit.connection].up, starts["ue"], unit_index, units)
        other = edge_by_client.get(ue[unit.connection].client)
        section["downlink"] = _window(other.down, starts["edge"], unit_index, units) if other else None
        if section["uplink"] is not None:
            section["uplink"]["capture_side"] = "ue"
        if section["downlink"] is not None:
            section["downlink"]["capture_side"] = "edge"
        figures[record_index] = section
    unassigned = {"ue_uplink": _before_first(ue, starts["ue"], units, "up", ue),
                  "edge_downlink": _before_first(edge, starts["edge"], units, "down", ue)}
    return PointTraffic(figures, unassigned, "; ".join(notes) or None, len(units), starts)


def _previous_burst(bursts: list[tuple[Direction, list[int]] | None], index: int) -> tuple[float, float] | None:
    """(first, last) stamp of the burst before `index` in the same capture (any connection), or None."""
    if index == 0:
        return None
    item = bursts[index - 1]
    if item is None or not item[1]:
        return None
    direction, frames = item
    stamps = [direction.timestamps[i] for i in frames]
    return (min(stamps), max(stamps))


def _window(direction: Direction, starts: list[float | None], index: int,
            units: Sequence[InferenceUnits]) -> dict[str, Any] | None:
    first = starts[index]
    if first is None:
        return None
    following = [s for s, u in zip(starts[index + 1:], units[index + 1:], strict=True)
                 if s is not None and u.connection == units[index].connection]
    until = following[0] if following else None
    return direction_figures(direction, direction.frames_in(first, until))


def _before_first(conns: Sequence[Connection], starts: list[float | None], units: Sequence[InferenceUnits],
                  which: str, ue: Sequence[Connection]) -> dict[str, Any]:
    """Frames of the sessions' connections captured before their first burst (session set-up, PREPARE, ...)."""
    total = {"packets": 0, "wire_bytes": 0, "retransmitted_bytes": 0}
    for conn in conns:
        direction = conn.up if which == "up" else conn.down
        mine = [s for s, u in zip(starts, units, strict=True) if s is not None and ue[u.connection].client == conn.client]
        first = mine[0] if mine else None
        figures = direction_figures(direction, [i for i, t in enumerate(direction.timestamps)
                                                if first is None or t < first])
        for key in total:
            total[key] += figures[key]
    return total

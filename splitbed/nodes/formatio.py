"""Adapter between the nodes and splitbed.format: the one place that knows the format library's API.

Remote side: `FormatSession` wraps the sans-I/O Decoder of one TCP session and turns its events into what the
session needs (AIPS lifecycle events to report, errors to answer, a complete set of tensors to run).
Local side: AIPS and data-unit encoding, and the JSON baseline carriage.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from splitbed import format as fmt
from splitbed.format import json_baseline
from splitbed.format.aips import Aips, encode_aips
from splitbed.format.data_unit import encode_data, parse_data_table
from splitbed.format.errors import FATAL_CODES, FormatError
from splitbed.format.events import (
    NEED_DATA,
    AipsActivated,
    AipsEnded,
    FormatErrorEvent,
    TensorsDecoded,
    UnknownUnit,
)
from splitbed.format.memory import decode_bytes
from splitbed.format.profiles import PROFILES, get_profile
from splitbed.format.tlv import TLV_HEADER
from splitbed.nodes.errors import ConfigurationError, ProtocolError
from splitbed.nodes.protocol import MsgType, pack_header

Piece = bytes | bytearray | memoryview


@dataclass
class DecodedTensors:
    """One inference's tensors, in tensor_id order, and what the carriage said about them."""

    partition_id: int
    arrays: list[np.ndarray]
    aips_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DrainOutcome:
    events: list[dict[str, Any]]
    errors: list[ProtocolError]
    complete: DecodedTensors | None


def event_record(event: object) -> dict[str, Any] | None:
    """The JSON form of a decoder event, as reported to the local node in `aips_events`."""
    if isinstance(event, AipsActivated):
        aips = event.aips
        return {"event": "activated", "aips_id": aips.aips_id, "partition_id": aips.partition_id,
                "num_tensors": len(aips.tensors), "shapes": [list(t.shape) for t in aips.tensors],
                "compression_profile_ids": [t.compression_profile_id for t in aips.tensors],
                "unit_bytes": event.unit_size}
    if isinstance(event, AipsEnded):
        return {"event": "ended", "aips_id": event.aips_id, "reason": event.reason.value, "detail": event.detail}
    if isinstance(event, UnknownUnit):
        return {"event": "unknown_unit", "unit_type": event.unit_type, "length": event.length}
    if isinstance(event, FormatErrorEvent):
        return {"event": "error", "code": event.code.value, "message": event.message,
                "recoverable": event.recoverable}
    return None


class FormatSession:
    """The format decoder of one session, fed unit by unit by the remote node."""

    def __init__(self, max_unit_bytes: int) -> None:
        self.decoder = fmt.Decoder(max_unit_size=max_unit_bytes)
        self._cost: tuple[Aips, int] | None = None

    def feed(self, data: bytes | memoryview) -> None:
        self.decoder.feed(data)

    def decode_whole(self, unit_type: int, unit: memoryview) -> DecodedTensors | None:
        """A whole data unit decoded at once in the steady state (fmt.Decoder.decode_whole: the active AIPS's
        fixed layout, nothing pending): what feeding it and drain() would give, which is what to do on None."""
        if unit_type != fmt.UnitType.INTERMEDIATE_DATA:
            return None
        event = self.decoder.decode_whole(unit)
        if event is None:
            return None
        return DecodedTensors(event.partition_id, list(event.tensors), event.aips_id,
                              {"payload_bytes": list(event.payload_sizes), "unit_bytes": event.unit_size})

    def drain(self) -> DrainOutcome:
        events: list[dict[str, Any]] = []
        errors: list[ProtocolError] = []
        complete: DecodedTensors | None = None
        while True:
            event = self.decoder.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, TensorsDecoded):  # the usual event, first: it sits between the last byte and the tail
                complete = DecodedTensors(event.partition_id, list(event.tensors), event.aips_id,
                                          {"payload_bytes": list(event.payload_sizes),
                                           "unit_bytes": event.unit_size})
                continue
            record = event_record(event)
            if record is not None:
                events.append(record)
            if isinstance(event, FormatErrorEvent):
                fatal = (not event.recoverable) or event.code in FATAL_CODES
                errors.append(ProtocolError(event.code.value, event.message, fatal=fatal))
                if fatal:
                    break
        return DrainOutcome(events, errors, complete)

    def unit_bytes(self, unit_type: int, length: int) -> int:
        """Upper bound of the memory a unit of this type and length holds from its header until its reply is
        sent, given the AIPS in force (the one a data unit must match): the assembled value (bytearray growth
        included), what decoding allocates (splitbed.format.memory), and the tail's copy of its input."""
        if unit_type not in (fmt.UnitType.AIPS, fmt.UnitType.INTERMEDIATE_DATA):
            return 0  # the format decoder counts other units off unread
        held = length + (length >> 3) + 64
        aips = self.decoder.active_aips
        if unit_type == fmt.UnitType.INTERMEDIATE_DATA and aips is not None:
            held += self._decode_cost(aips)
        return held

    def _decode_cost(self, aips: Aips) -> int:
        """decode_bytes(aips) + aips.decoded_size, worked out once per AIPS: every data unit of a session
        usually refers to the same one, and this sits between its last byte and the tail."""
        cached = self._cost
        if cached is None or cached[0] is not aips:
            cached = self._cost = (aips, decode_bytes(aips) + aips.decoded_size)
        return cached[1]

    def _lifecycle(self) -> list[dict[str, Any]]:
        return self.drain().events

    def reset(self) -> list[dict[str, Any]]:
        """The lifetime rule "decoder is reset": ends the active AIPS (reported as an event)."""
        self.decoder.reset()
        return self._lifecycle()

    def new_session(self) -> list[dict[str, Any]]:
        self.decoder.new_session()
        return self._lifecycle()


def tensor_crc32(array: np.ndarray) -> int:
    """CRC-32 of a tensor's elements in C order, little-endian: equal on both nodes iff delivery was bit-exact."""
    arr = np.ascontiguousarray(array)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return zlib.crc32(arr.reshape(-1).view(np.uint8).data)  # any dtype (bfloat16, bool): its raw bytes


def compression_profiles() -> list[dict[str, Any]]:
    """The profiles the remote offers in the configuration stage: every one the format defines."""
    return [{"id": p.profile_id, "name": p.name, "lossless": p.lossless, "error_bound": p.error_bound}
            for p in PROFILES.values()]


@functools.lru_cache(maxsize=64)  # looked up for every inference the local node encodes
def profile_id(name_or_id: str | int) -> tuple[int, str]:
    try:
        profile = get_profile(int(name_or_id) if isinstance(name_or_id, str) and name_or_id.isdigit()
                              else name_or_id)
    except FormatError as exc:
        raise ConfigurationError(str(exc)) from exc
    return profile.profile_id, profile.name


def profile_lossless(name_or_id: str | int) -> bool:
    pid, _ = profile_id(name_or_id)
    return bool(PROFILES[pid].lossless)


@functools.lru_cache(maxsize=32)
def wire_dtype(dtype: np.dtype) -> fmt.DType | None:
    """The format's element type of a numpy dtype (None where it has none: building an AIPS then says why)."""
    try:
        return fmt.DType.from_numpy(dtype)
    except FormatError:
        return None


def build_aips(aips_id: int, partition_id: int, arrays: Sequence[np.ndarray], profile: int) -> Aips:
    try:
        return Aips.for_arrays(aips_id, partition_id, arrays, profile)
    except FormatError as exc:
        raise ConfigurationError(f"cannot describe these tensors in an AIPS: {exc}") from exc


def aips_unit(aips: Aips) -> bytes:
    return encode_aips(aips)


def data_unit(aips: Aips, arrays: Sequence[np.ndarray]) -> list[Piece]:
    """The data unit's pieces: header and table, then payloads (zero-copy for raw payloads)."""
    try:
        return encode_data(aips, arrays)
    except FormatError as exc:
        raise ConfigurationError(f"cannot encode the tensors: {exc}") from exc


def payload_sizes(pieces: Sequence[Piece]) -> list[int]:
    """Each tensor's payload bytes, read back from the unit's tensor table with the format's own parser.
    It joins the unit (a copy): call it after every measured window."""
    unit = b"".join(pieces)
    return [entry.payload_length for entry in parse_data_table(memoryview(unit)[TLV_HEADER.size:]).entries]


def json_baseline_unit(arrays: Sequence[np.ndarray], partition_id: int) -> bytes:
    """The JSON baseline carriage (the testbed contribution's json.dumps(...tolist())) in a JSON_BASELINE control unit."""
    payload = json_baseline.encode(list(arrays), partition_id=partition_id)
    return pack_header(MsgType.JSON_BASELINE, len(payload)) + payload


def json_baseline_bytes(payload: bytes | bytearray) -> int:
    """Upper bound of the memory decoding this JSON-baseline payload allocates beyond the payload (its per-element
    allowance covers the tail's copy of the arrays): a count of structural characters, not a parse, so it stays
    out of the timed decode."""
    return json_baseline.decode_peak_bytes(payload)


def decode_json_baseline(payload: bytes | bytearray, max_bytes: int) -> DecodedTensors:
    try:
        arrays, extra = json_baseline.decode(payload, max_size=max_bytes)
    except FormatError as exc:
        raise ProtocolError(exc.code.value, exc.message, fatal=False) from None
    partition_id = extra.get("partition_id")
    if not isinstance(partition_id, int) or isinstance(partition_id, bool):
        raise ProtocolError("bad_json_baseline", "JSON baseline unit lacks an integer partition_id", fatal=False)
    return DecodedTensors(partition_id, [np.asarray(a) for a in arrays], None,
                          {k: v for k, v in extra.items() if k != "partition_id"})

"""The session protocol between the local node (UE) and the remote node (edge); spec in docs/PROTOCOL.md.

Every message in both directions is a TLV unit of the AI intermediate data format: the uplink data are the
format's own AIPS (type 1) and intermediate data (type 2) units, unchanged, and the protocol's control messages
use types from the format's "undefined" range (0xF0-0xFD), which a format decoder skips by length. So a capture
of the uplink stream decodes with the format decoder alone. Control payloads are UTF-8 JSON objects, capped at
MAX_CONTROL_BYTES before anything is buffered; never pickle or eval.

This module is sans-I/O: it builds and parses bytes; sockets live in wire.py, local.py and remote.py.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from splitbed.nodes.errors import ProtocolError

PROTOCOL_VERSION = 1
MAX_CONTROL_BYTES = 1 << 20          # one control message (JSON); a full 1000-class result is ~25 kB
DEFAULT_MAX_UNIT_BYTES = 64 << 20    # one AIPS / data / JSON-baseline unit


class MsgType(IntEnum):
    """TLV unit types on a session. 1 and 2 are the format's; the rest are this protocol's control messages."""

    AIPS = 1
    DATA = 2
    HELLO = 0xF0          # local -> remote: who I am, my boot id
    OFFER = 0xF1          # remote -> local: partitioning configuration: models, partitions, profiles, limits
    SELECT = 0xF2         # local -> remote: the model and carriage this session uses
    ACCEPT = 0xF3         # remote -> local: configuration done
    CLOCK_PING = 0xF4     # local -> remote: t1
    CLOCK_PONG = 0xF5     # remote -> local: t1, t2, t3
    RESET = 0xF6          # local -> remote: reset your format decoder (AIPS lifetime rule "decoder reset")
    RESET_DONE = 0xF7     # remote -> local: decoder reset, with the AIPS events it caused
    JSON_BASELINE = 0xF8  # local -> remote: one inference's tensors in the JSON baseline carriage
    RESULT = 0xF9         # remote -> local: predictions, remote timings and resources, AIPS events
    ERROR = 0xFA          # either way: what was wrong; `fatal` says whether the connection is closed
    PREPARE = 0xFB        # local -> remote: build the tail of a partition now, outside any measured window
    PREPARED = 0xFC       # remote -> local: tail ready; its cut (tensor names, shapes, dtypes) and build time
    CHECKSUM = 0xFD       # remote -> local, after a RESULT when verify is on: CRC-32 of each decoded tensor


CONTROL_TYPES = frozenset(t for t in MsgType if t >= 0xF0)
FORMAT_TYPES = frozenset({MsgType.AIPS, MsgType.DATA})
UPLINK_CONTROL = frozenset({MsgType.HELLO, MsgType.SELECT, MsgType.CLOCK_PING, MsgType.RESET, MsgType.PREPARE,
                            MsgType.ERROR})
DOWNLINK_CONTROL = frozenset({MsgType.OFFER, MsgType.ACCEPT, MsgType.CLOCK_PONG, MsgType.RESET_DONE,
                              MsgType.RESULT, MsgType.PREPARED, MsgType.CHECKSUM, MsgType.ERROR})
ENCODINGS = ("tlv", "json-baseline")
RESULT_MODES = ("full", "topk")


# --- TLV header: the format's (type u8, length u32, network byte order) -------------------------------------

HEADER = struct.Struct("!BI")
HEADER_SIZE = HEADER.size


def format_version() -> object:
    """The format library's version, recorded with every result (empty until splitbed.format provides one)."""
    try:
        from splitbed import format as fmt
    except ImportError:
        return ""
    return getattr(fmt, "FORMAT_VERSION", "")


def pack_header(unit_type: int, length: int) -> bytes:
    return HEADER.pack(unit_type, length)


# --- control messages -------------------------------------------------------------------------------------

def encode_control(msg_type: MsgType, body: dict[str, Any]) -> bytes:
    """One control unit: header + compact UTF-8 JSON. Refuses to build a unit the peer would reject."""
    if msg_type not in CONTROL_TYPES or msg_type == MsgType.JSON_BASELINE:
        raise ValueError(f"{msg_type!r} is not a JSON control message type")
    payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    if len(payload) > MAX_CONTROL_BYTES:
        raise ValueError(f"{msg_type.name} message of {len(payload)} bytes exceeds the {MAX_CONTROL_BYTES}-byte cap")
    return pack_header(msg_type, len(payload)) + payload


def decode_control(msg_type: int, payload: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Parse a control payload into a JSON object, with a specific error for each way it can be wrong."""
    name = _type_name(msg_type)
    if len(payload) > MAX_CONTROL_BYTES:
        raise ProtocolError("unit_too_large", f"{name} payload of {len(payload)} bytes exceeds {MAX_CONTROL_BYTES}")
    try:
        body = json.loads(bytes(payload).decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise ProtocolError("bad_control_message", f"{name} payload is not UTF-8: {exc}") from None
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError("bad_control_message", f"{name} payload is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError("bad_control_message", f"{name} payload must be a JSON object, got {type(body).__name__}")
    return body


def _refuse_constant(token: str) -> float:
    raise ValueError(f"non-standard JSON constant {token}")


def _type_name(msg_type: int) -> str:
    try:
        return MsgType(msg_type).name
    except ValueError:
        return f"type {msg_type}"


def require(body: dict[str, Any], key: str, kind: type | tuple[type, ...], *, msg: str) -> Any:
    """body[key] if present with the right JSON type, else a bad_control_message error naming both."""
    if key not in body:
        raise ProtocolError("bad_control_message", f"{msg} lacks the field {key!r}")
    value = body[key]
    # bool is an int subclass in Python but a different JSON type.
    if (isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))) \
            or not isinstance(value, kind):
        raise ProtocolError("bad_control_message",
                            f"{msg} field {key!r} must be {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def error_body(code: str, message: str, *, fatal: bool, aips_events: list[dict[str, Any]] | None = None,
               seq: int | None = None) -> dict[str, Any]:
    return {"code": code, "message": message[:2000], "fatal": fatal, "aips_events": aips_events or [],
            "seq": seq}


# --- sans-I/O framing of an incoming stream ----------------------------------------------------------------

@dataclass(frozen=True)
class UnitStart:
    """A unit header was read. For format units, `header` is passed on to the format decoder."""

    unit_type: int
    length: int
    header: bytes


@dataclass(frozen=True)
class UnitChunk:
    """Part of a format (or unknown-type) unit's body, zero-copy from the receive buffer."""

    unit_type: int
    data: memoryview


@dataclass(frozen=True)
class UnitEnd:
    unit_type: int
    length: int


@dataclass(frozen=True)
class ControlUnit:
    """A complete control unit (or JSON-baseline unit): its payload, assembled (a JSON-baseline payload is the
    bytearray it was assembled in: no joining copy of a unit that may be 64 MiB)."""

    unit_type: MsgType
    payload: bytes | bytearray


Frame = UnitStart | UnitChunk | UnitEnd | ControlUnit


@dataclass
class UnitFramer:
    """Splits a byte stream into TLV units. Format units stream through as chunks (no buffering, the format
    decoder assembles them); control units are assembled here. Lengths are checked against the caps from the
    5-byte header, before a single payload byte is kept; payloads grow only as bytes actually arrive."""

    max_unit_bytes: int = DEFAULT_MAX_UNIT_BYTES
    max_control_bytes: int = MAX_CONTROL_BYTES
    accepted_control: frozenset[MsgType] = UPLINK_CONTROL | {MsgType.JSON_BASELINE}
    _header: bytearray = field(default_factory=bytearray)
    _type: int = -1
    _remaining: int = 0
    _length: int = 0
    _control: bytearray = field(default_factory=bytearray)
    _skipping: bool = False
    units_started: int = 0  # counts units whose first header byte has been fed

    @property
    def mid_unit(self) -> bool:
        """True while a unit has started and not ended: the stream is not at a unit boundary."""
        return bool(self._header) or self._type >= 0

    @property
    def unit_length(self) -> int:
        return self._length

    @property
    def unit_received(self) -> int:
        """Value bytes of the current unit received so far."""
        return self._length - self._remaining if self._type >= 0 else 0

    def skip_unit(self) -> None:
        """Drop the rest of the unit just started (after its UnitStart): its bytes are counted off, neither
        yielded nor kept, and it ends with a UnitEnd whatever its type. The receiver refused it at its header."""
        if self._type < 0:
            raise RuntimeError("skip_unit() outside a unit")
        self._skipping = True
        self._control.clear()

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[Frame]:
        view = memoryview(data).cast("B")
        pos = 0
        while pos < len(view) or (self._type >= 0 and self._remaining == 0):
            if self._type < 0:
                if not self._header:
                    self.units_started += 1
                need = HEADER_SIZE - len(self._header)
                take = view[pos:pos + need]
                self._header += take
                pos += len(take)
                if len(self._header) < HEADER_SIZE:
                    break
                yield from self._start_unit()
                continue
            take_n = min(self._remaining, len(view) - pos)
            chunk = view[pos:pos + take_n]
            pos += take_n
            self._remaining -= take_n
            if self._skipping:
                pass
            elif self._type in CONTROL_TYPES:
                if take_n:
                    self._control += chunk
            elif take_n:
                yield UnitChunk(self._type, chunk)
            if self._remaining == 0:
                yield from self._end_unit()

    def _start_unit(self) -> Iterator[Frame]:
        unit_type, length = HEADER.unpack(self._header)
        header = bytes(self._header)
        self._header.clear()
        if unit_type in CONTROL_TYPES:
            msg_type = MsgType(unit_type)
            if msg_type not in self.accepted_control:
                raise ProtocolError("unexpected_message",
                                    f"{msg_type.name} (type 0x{unit_type:02X}) is not valid in this direction")
            cap = self.max_unit_bytes if msg_type == MsgType.JSON_BASELINE else self.max_control_bytes
            if length > cap:
                raise ProtocolError("unit_too_large",
                                    f"{msg_type.name} unit declares {length} bytes; the cap is {cap}")
        elif length > self.max_unit_bytes:
            raise ProtocolError("unit_too_large",
                                f"unit of type {unit_type} declares {length} bytes; the cap is {self.max_unit_bytes}"
                                " (raise --max-unit-bytes on the remote node if this is legitimate)")
        self._type, self._length, self._remaining = unit_type, length, length
        if unit_type not in CONTROL_TYPES or unit_type == MsgType.JSON_BASELINE:
            # A JSON-baseline unit is announced too, so that a receiver can refuse it before buffering it.
            yield UnitStart(unit_type, length, header)

    def _end_unit(self) -> Iterator[Frame]:
        unit_type, length, skipped = self._type, self._length, self._skipping
        self._type, self._length, self._skipping = -1, 0, False
        if unit_type in CONTROL_TYPES and not skipped:
            if unit_type == MsgType.JSON_BASELINE:
                payload: bytes | bytearray = self._control
                self._control = bytearray()
            else:
                payload = bytes(self._control)
                self._control.clear()
            yield ControlUnit(MsgType(unit_type), payload)
        else:
            yield UnitEnd(unit_type, length)

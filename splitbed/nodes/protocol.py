"""The session protocol between the local node (UE) and the remote node (edge); spec in docs/PROTOCOL.md.

Every message in both directions is a TLV unit of the AI intermediate data format: the uplink data are the
format's own AIPS (type 1) and intermediate data (type 2) units, unchanged, and the protocol's control messages
use types from the format's "undefined" range (0xF0-0xFE), which a format decoder skips by length. So a capture
of the uplink stream decodes with the format decoder alone. Control payloads are UTF-8 JSON objects, capped at
MAX_CONTROL_BYTES before anything is buffered; never pickle or eval.

This module is sans-I/O: it builds and parses bytes; sockets live in wire.py, local.py and remote.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from splitbed.format.framing import TlvCutter, UnitDone, UnitHeader, UnitValue
from splitbed.format.tlv import TLV_HEADER
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
    RESULT_REST = 0xFE    # remote -> local, after a split RESULT (SELECT result_split): the rest of its members


CONTROL_TYPES = frozenset(t for t in MsgType if t >= 0xF0)
_CONTROL_BY_CODE = {int(t): t for t in CONTROL_TYPES}  # MsgType(code) without the enum's call machinery
FORMAT_TYPES = frozenset({MsgType.AIPS, MsgType.DATA})
UPLINK_CONTROL = frozenset({MsgType.HELLO, MsgType.SELECT, MsgType.CLOCK_PING, MsgType.RESET, MsgType.PREPARE,
                            MsgType.ERROR})
DOWNLINK_CONTROL = frozenset({MsgType.OFFER, MsgType.ACCEPT, MsgType.CLOCK_PONG, MsgType.RESET_DONE,
                              MsgType.RESULT, MsgType.PREPARED, MsgType.CHECKSUM, MsgType.ERROR,
                              MsgType.RESULT_REST})
ENCODINGS = ("tlv", "json-baseline")
RESULT_MODES = ("full", "topk")
# The default: the best `top_k` [class, score] pairs. `full` (all 1000 scores as JSON, the testbed contribution's
# downlink) is ~24 kB and costs the remote its serialisation and the local node its parse on every inference, in
# the middle of the measured end-to-end time; it stays available for reproducing the contribution's downlink.
DEFAULT_RESULT_MODE = "topk"


# --- TLV header: the format's own (type u8, length u32, network byte order) --------------------------------

HEADER = TLV_HEADER
HEADER_SIZE = HEADER.size


def format_version() -> object:
    """The format library's version, recorded with every result."""
    from splitbed.format import FORMAT_VERSION

    return FORMAT_VERSION


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


def control_text(msg_type: int, payload: bytes | bytearray | memoryview) -> str:
    """A control payload's text (size and UTF-8 checked), for a reader that parses it in parts (leading_members)
    and later whole (decode_control_text)."""
    if len(payload) > MAX_CONTROL_BYTES:
        raise ProtocolError("unit_too_large", f"{_type_name(msg_type)} payload of {len(payload)} bytes exceeds "
                            f"{MAX_CONTROL_BYTES}")
    try:
        return str(payload, "utf-8")  # no bytes() copy first
    except UnicodeDecodeError as exc:
        raise ProtocolError("bad_control_message", f"{_type_name(msg_type)} payload is not UTF-8: {exc}") from None


def decode_control(msg_type: int, payload: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Parse a control payload into a JSON object, with a specific error for each way it can be wrong."""
    return decode_control_text(msg_type, control_text(msg_type, payload))


def leading_members(text: str, wanted: tuple[str, ...]) -> dict[str, Any] | None:
    """The members `wanted` of a compact JSON object (as json.dumps with separators (",", ":") writes it) that
    come first in `text`, in that order, read value by value with the scanner decode() runs and nothing after
    them; None where the text does not begin so (then parse it whole: decode_control_text). A sender that puts
    the members a receiver needs at once first lets the receiver parse the rest later (the local node: a RESULT's
    predictions before `local_end`, its figures after). Whether the whole text is one valid object, and whether a
    member is repeated further on, is for the whole parse to tell."""
    members: dict[str, Any] = {}
    index = 0
    try:
        for key in wanted:
            opener = ("{" if index == 0 else ",") + '"' + key + '":'
            if not text.startswith(opener, index):
                return None
            members[key], index = _SCAN(text, index + len(opener))
    except (StopIteration, ValueError, RecursionError):
        return None
    return members if index < len(text) and text[index] in ",}" else None


def decode_control_text(msg_type: int, text: str) -> dict[str, Any]:
    """decode_control on the payload's text (control_text)."""
    try:
        try:  # a compact object from json.dumps, as every node sends: one scan, without decode()'s whitespace steps
            body, end = _SCAN(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            body = _DECODER.decode(text)  # anything else: decode() says what is wrong with it, or reads it
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError("bad_control_message", f"{_type_name(msg_type)} payload is not valid JSON: {exc}") \
            from None
    if not isinstance(body, dict):
        raise ProtocolError("bad_control_message", f"{_type_name(msg_type)} payload must be a JSON object, got "
                            f"{type(body).__name__}")
    return body


def _refuse_constant(token: str) -> float:
    raise ValueError(f"non-standard JSON constant {token}")


# json.loads(text, parse_constant=...) builds a decoder per call; this one is built once (the local node parses a
# RESULT inside every inference's result decode).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_SCAN: Any = _DECODER.scan_once  # type: ignore[attr-defined]  # the (C) scanner decode() runs


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
    """A complete control unit (or JSON-baseline unit): its payload, assembled (the bytearray it was assembled in:
    no joining copy, of a unit that may be 64 MiB for JSON-baseline)."""

    unit_type: MsgType
    payload: bytes | bytearray


@dataclass(frozen=True)
class UnitWhole:
    """A format (or unknown-type) unit that came whole in one feed, to a framer made with `whole_units`: what
    UnitStart, UnitChunk and UnitEnd would carry, at once; `unit` is its header and value, zero-copy from the
    receive buffer."""

    unit_type: int
    length: int
    unit: memoryview


Frame = UnitStart | UnitChunk | UnitEnd | ControlUnit | UnitWhole


@dataclass
class UnitFramer:
    """Splits a byte stream into TLV units, on the format's own cutter (splitbed.format.framing.TlvCutter, the
    one reader of TLV headers). Format units stream through as chunks (no buffering, the format decoder
    assembles them); control units are assembled here. Lengths are checked against the caps from the 5-byte
    header, before a single payload byte is kept; payloads grow only as bytes actually arrive. A receiver may
    refuse a unit at its UnitStart (`skip_unit`): its bytes are then counted off unread."""

    max_unit_bytes: int = DEFAULT_MAX_UNIT_BYTES
    max_control_bytes: int = MAX_CONTROL_BYTES
    accepted_control: frozenset[MsgType] = UPLINK_CONTROL | {MsgType.JSON_BASELINE}
    # A format unit that came whole in one feed is one UnitWhole (for a receiver that takes it at once, the edge:
    # its data unit arrives whole on a fast link, between the last byte and the tail), else Start, Chunk, End.
    whole_units: bool = False
    _cutter: TlvCutter = field(default_factory=TlvCutter)
    _control: bytearray = field(default_factory=bytearray)
    _skipping: bool = False

    @property
    def units_started(self) -> int:
        """Units whose first header byte has been fed."""
        return self._cutter.units_started

    @property
    def mid_unit(self) -> bool:
        """True while a unit has started and not ended: the stream is not at a unit boundary."""
        return self._cutter.mid_unit

    @property
    def unit_length(self) -> int:
        return self._cutter.unit_length

    @property
    def unit_received(self) -> int:
        """Value bytes of the current unit received so far."""
        return self._cutter.unit_received

    def skip_unit(self) -> None:
        """Drop the rest of the unit just started (after its UnitStart): its bytes are counted off, neither
        yielded nor kept, and it ends with a UnitEnd whatever its type. The receiver refused it at its header."""
        if not self._cutter.mid_unit:
            raise RuntimeError("skip_unit() outside a unit")
        self._cutter.skip()
        self._skipping = True
        self._control.clear()

    def take_whole(self, data: bytes | bytearray | memoryview) -> ControlUnit | UnitWhole | None:
        """The one frame of `data` when it is exactly one whole unit at a unit boundary, taken at once with the
        checks feed() makes (ProtocolError): a control unit (not JSON-baseline) as its ControlUnit, a format unit
        as one UnitWhole when the framer was made with `whole_units`. None, with nothing consumed, otherwise (then
        feed() it). A RESULT on the local node, a data unit on the edge: one read each on a fast link, with their
        parse and decode in the testbed's own share (docs/METRICS.md)."""
        view = memoryview(data)
        whole = self._cutter.whole(view) if view.format == "B" and view.ndim == 1 else None
        if whole is None:
            return None
        unit_type, length = whole
        if unit_type not in CONTROL_TYPES:
            if not self.whole_units:
                return None
            self._check_start(unit_type, length)
            self._cutter.take_whole(length)
            return UnitWhole(unit_type, length, view)
        if unit_type == MsgType.JSON_BASELINE:
            return None
        self._check_start(unit_type, length)
        self._cutter.take_whole(length)
        return ControlUnit(_CONTROL_BY_CODE[unit_type], bytearray(view[HEADER_SIZE:]))

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[Frame]:
        whole = self.take_whole(data)
        if whole is not None:
            yield whole
            return
        for piece in self._cutter.feed(data):
            if type(piece) is UnitValue:
                if piece.unit_type in CONTROL_TYPES:
                    self._control += piece.data
                else:
                    yield UnitChunk(piece.unit_type, piece.data)
            elif type(piece) is UnitHeader:
                yield from self._start_unit(piece.unit_type, piece.length)
            else:
                assert type(piece) is UnitDone
                skipped, self._skipping = self._skipping, False
                if piece.unit_type in CONTROL_TYPES and not skipped:
                    # the bytearray itself: no copy (of up to 64 MiB for a JSON-baseline unit)
                    payload, self._control = self._control, bytearray()
                    yield ControlUnit(MsgType(piece.unit_type), payload)
                else:
                    yield UnitEnd(piece.unit_type, piece.length)

    def _start_unit(self, unit_type: int, length: int) -> Iterator[Frame]:
        self._check_start(unit_type, length)
        if unit_type not in CONTROL_TYPES or unit_type == MsgType.JSON_BASELINE:
            # A JSON-baseline unit is announced too, so that a receiver can refuse it before buffering it.
            yield UnitStart(unit_type, length, pack_header(unit_type, length))

    def _check_start(self, unit_type: int, length: int) -> None:
        """A unit's header against what this direction accepts and the caps (ProtocolError)."""
        if unit_type in CONTROL_TYPES:
            msg_type = _CONTROL_BY_CODE[unit_type]
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

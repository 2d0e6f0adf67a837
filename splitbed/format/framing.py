"""Cut a byte stream into TLV units, checking every length against the cap before buffering a byte of it.

`TlvCutter` is the one reader of TLV headers in the project: it yields each unit's header, then views of its
value as bytes arrive, then its end, and keeps nothing. The format's `UnitFramer` (below, used by the Decoder)
and the session protocol's framer (splitbed.nodes.protocol) are both built on it, each deciding at a unit's
header what to keep: here AIPS and data values, each assembled in its own bytearray (the one copy the receive
path makes), so decoded raw tensors can be zero-copy views of it; values of other types are counted off and
never stored.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from splitbed.format.errors import ErrorCode
from splitbed.format.limits import MAX_TLV_LENGTH, TLV_HEADER_SIZE
from splitbed.format.tlv import TLV_HEADER, UnitType

_STORED_TYPES = frozenset({UnitType.AIPS, UnitType.INTERMEDIATE_DATA})


@dataclass(frozen=True, slots=True)
class UnitHeader:
    """A unit's 5-byte header is complete; its value follows."""

    unit_type: int
    length: int
    offset: int  # stream offset of the header's first byte


@dataclass(frozen=True, slots=True)
class UnitValue:
    """Part of the current unit's value: a view into the bytes just fed (copy what you keep before the next)."""

    unit_type: int
    data: memoryview


@dataclass(frozen=True, slots=True)
class UnitDone:
    unit_type: int
    length: int
    offset: int


class TlvCutter:
    """Bytes in, unit pieces out, nothing kept (see the module docstring). A consumer that stops iterating a
    feed() (a cap exceeded) leaves `offset` at the last byte it was given."""

    def __init__(self) -> None:
        self.offset = 0           # bytes of the stream consumed so far
        self.units_started = 0    # units whose first header byte has been read
        self._header = bytearray()
        self._type = -1           # the current unit's type; -1 between units
        self._length = 0
        self._unit_offset = 0
        self._missing = 0         # value bytes still to come
        self._skipping = False

    @property
    def mid_unit(self) -> bool:
        """True while a unit has started and not ended: the stream is not at a unit boundary."""
        return bool(self._header) or self._type >= 0

    @property
    def unit_type(self) -> int:
        return self._type

    @property
    def unit_length(self) -> int:
        return self._length if self._type >= 0 else 0

    @property
    def unit_offset(self) -> int:
        return self._unit_offset

    @property
    def unit_received(self) -> int:
        """Value bytes of the current unit read so far."""
        return self._length - self._missing if self._type >= 0 else 0

    @property
    def header_bytes(self) -> int:
        """Bytes of a header read so far (between units)."""
        return len(self._header)

    def whole(self, view: memoryview) -> tuple[int, int] | None:
        """(type, length) of the unit `view` holds when it is exactly one whole unit (header and value) and the
        stream is at a unit boundary, without consuming it; None otherwise. A caller that takes the unit so
        (`take_whole`) reads its value at view[TLV_HEADER_SIZE:] instead of feeding it piece by piece."""
        if self._header or self._type >= 0 or len(view) < TLV_HEADER_SIZE:
            return None
        unit_type, length = TLV_HEADER.unpack_from(view, 0)
        return (unit_type, length) if len(view) == TLV_HEADER_SIZE + length else None

    def take_whole(self, length: int) -> None:
        """Count a whole unit of `length` value bytes found by whole() as consumed, as feed() would have."""
        self.units_started += 1
        self._unit_offset = self.offset
        self.offset += TLV_HEADER_SIZE + length

    def skip(self) -> None:
        """Count off the rest of the current unit's value: no more UnitValue for it; it still ends (UnitDone)."""
        if self._type < 0:
            raise RuntimeError("skip() outside a unit")
        self._skipping = True

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[UnitHeader | UnitValue | UnitDone]:
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        end = len(view)
        pos = 0
        while True:
            if self._type >= 0:
                if self._missing:
                    if pos >= end:
                        return
                    take = min(self._missing, end - pos)
                    chunk = view[pos:pos + take]
                    pos += take
                    self.offset += take
                    self._missing -= take
                    if not self._skipping:
                        yield UnitValue(self._type, chunk)
                    if self._missing:
                        continue
                unit_type, length = self._type, self._length
                self._type, self._length, self._skipping = -1, 0, False
                yield UnitDone(unit_type, length, self._unit_offset)
                continue
            if pos >= end:
                return
            if not self._header:
                self.units_started += 1
            if not self._header and end - pos >= TLV_HEADER_SIZE:
                unit_type, length = TLV_HEADER.unpack_from(view, pos)
                pos += TLV_HEADER_SIZE
            else:
                take = min(TLV_HEADER_SIZE - len(self._header), end - pos)
                self._header += view[pos:pos + take]
                pos += take
                if len(self._header) < TLV_HEADER_SIZE:
                    self.offset += take
                    return
                self.offset -= len(self._header) - take  # counted again below, as the whole header
                unit_type, length = TLV_HEADER.unpack(self._header)
                self._header.clear()
            self._unit_offset = self.offset
            self.offset += TLV_HEADER_SIZE
            self._type, self._length, self._missing = unit_type, length, length
            yield UnitHeader(unit_type, length, self._unit_offset)


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete unit. `value` is None for types whose value is skipped unread."""

    unit_type: int
    length: int
    value: bytearray | None
    stream_offset: int


@dataclass(frozen=True, slots=True)
class FramingFailure:
    """The stream cannot be cut into units any more (fatal)."""

    code: ErrorCode
    message: str
    unit_type: int | None
    stream_offset: int


class UnitFramer:
    """Bytes in, complete `Frame`s out (in `frames`); stops for good at the first `failure`."""

    def __init__(self, max_unit_size: int) -> None:
        if not 0 <= max_unit_size <= MAX_TLV_LENGTH:
            raise ValueError(f"max_unit_size must be 0..{MAX_TLV_LENGTH}, got {max_unit_size}")
        self.max_unit_size = max_unit_size
        self.frames: deque[Frame] = deque()
        self.failure: FramingFailure | None = None
        self._cutter = TlvCutter()
        self._value: bytearray | None = None

    @property
    def stream_offset(self) -> int:
        """Bytes of the stream consumed so far."""
        return self._cutter.offset

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete unit held (header + value so far)."""
        cutter = self._cutter
        if cutter.unit_type >= 0:
            return TLV_HEADER_SIZE + cutter.unit_received
        return cutter.header_bytes

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self.failure is not None:
            return
        view = memoryview(data)
        whole = self._cutter.whole(view) if view.format == "B" and view.ndim == 1 else None
        if whole is not None and whole[1] <= self.max_unit_size:  # one whole unit: one Frame, as piece by piece
            unit_type, length = whole
            offset = self._cutter.offset
            self._cutter.take_whole(length)
            value = bytearray(view[TLV_HEADER_SIZE:]) if unit_type in _STORED_TYPES else None
            self.frames.append(Frame(unit_type, length, value, offset))
            return
        for piece in self._cutter.feed(view):
            if type(piece) is UnitValue:
                if self._value is not None:
                    self._value += piece.data
            elif type(piece) is UnitHeader:
                if piece.length > self.max_unit_size:
                    self.failure = FramingFailure(
                        ErrorCode.UNIT_TOO_LARGE,
                        f"type {piece.unit_type} unit at offset {piece.offset} declares a {piece.length}-byte value, "
                        f"over this receiver's cap of {self.max_unit_size} bytes; the stream cannot be resynchronised",
                        piece.unit_type, piece.offset)
                    return
                if piece.unit_type in _STORED_TYPES:
                    self._value = bytearray()
                else:
                    self._value = None
                    self._cutter.skip()
            else:
                assert type(piece) is UnitDone
                self.frames.append(Frame(piece.unit_type, piece.length, self._value, piece.offset))
                self._value = None

    def take_whole(self, length: int) -> int:
        """Count a whole unit of `length` value bytes that its caller took as it is (Decoder.decode_whole) as
        read; its stream offset. Only at a unit boundary, with nothing pending."""
        offset = self._cutter.offset
        self._cutter.take_whole(length)
        return offset

    def end_of_stream(self) -> None:
        """No more bytes will come: a partly received unit is a fatal truncation."""
        cutter = self._cutter
        if self.failure is None and self.buffered:
            in_value = cutter.unit_type >= 0
            kind = f"type {cutter.unit_type} unit" if in_value else "TLV header"
            total = TLV_HEADER_SIZE + cutter.unit_length if in_value else TLV_HEADER_SIZE
            start = cutter.unit_offset if in_value else cutter.offset - cutter.header_bytes
            self.failure = FramingFailure(
                ErrorCode.TRUNCATED,
                f"stream ended {self.buffered} bytes into a {total}-byte {kind} starting at offset {start}",
                cutter.unit_type if in_value else None, start)

"""Cut a byte stream into TLV units, checking every length against the cap before buffering a byte of it.

Each AIPS or data unit's value is assembled in its own bytearray (the one copy the receive path makes), so
decoded raw tensors can be zero-copy views of it. Values of other types are counted off and never stored.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from splitbed.format.errors import ErrorCode
from splitbed.format.limits import MAX_TLV_LENGTH, TLV_HEADER_SIZE
from splitbed.format.tlv import TLV_HEADER, UnitType

_STORED_TYPES = frozenset({UnitType.AIPS, UnitType.INTERMEDIATE_DATA})


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
        self.stream_offset = 0  # bytes of the stream consumed so far
        self._header = bytearray()
        self._unit_type = 0
        self._unit_length = 0
        self._unit_offset = 0
        self._value: bytearray | None = None
        self._missing = 0  # value bytes still to come for the current unit
        self._in_value = False

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete unit held (header + value so far)."""
        if self._in_value:
            return TLV_HEADER_SIZE + self._unit_length - self._missing
        return len(self._header)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        end = len(view)
        pos = 0
        while pos < end and self.failure is None:
            if self._in_value:
                take = min(self._missing, end - pos)
                if self._value is not None:
                    self._value += view[pos:pos + take]
                pos += take
                self._missing -= take
                if not self._missing:
                    self._finish_unit()
                continue
            if not self._header and end - pos >= TLV_HEADER_SIZE:
                unit_type, length = TLV_HEADER.unpack_from(view, pos)
                pos += TLV_HEADER_SIZE
            else:
                take = min(TLV_HEADER_SIZE - len(self._header), end - pos)
                self._header += view[pos:pos + take]
                pos += take
                if len(self._header) < TLV_HEADER_SIZE:
                    break
                unit_type, length = TLV_HEADER.unpack(self._header)
                self._header.clear()
            self._start_unit(unit_type, length, self.stream_offset + pos - TLV_HEADER_SIZE)
        self.stream_offset += pos

    def end_of_stream(self) -> None:
        """No more bytes will come: a partly received unit is a fatal truncation."""
        if self.failure is None and self.buffered:
            kind = f"type {self._unit_type} unit" if self._in_value else "TLV header"
            total = TLV_HEADER_SIZE + self._unit_length if self._in_value else TLV_HEADER_SIZE
            self.failure = FramingFailure(
                ErrorCode.TRUNCATED,
                f"stream ended {self.buffered} bytes into a {total}-byte {kind} starting at offset "
                f"{self._unit_offset if self._in_value else self.stream_offset - len(self._header)}",
                self._unit_type if self._in_value else None,
                self._unit_offset if self._in_value else self.stream_offset - len(self._header))

    def _start_unit(self, unit_type: int, length: int, offset: int) -> None:
        if length > self.max_unit_size:
            self.failure = FramingFailure(
                ErrorCode.UNIT_TOO_LARGE,
                f"type {unit_type} unit at offset {offset} declares a {length}-byte value, over this "
                f"receiver's cap of {self.max_unit_size} bytes; the stream cannot be resynchronised",
                unit_type, offset)
            return
        self._unit_type, self._unit_length, self._unit_offset = unit_type, length, offset
        self._value = bytearray() if unit_type in _STORED_TYPES else None
        self._missing = length
        self._in_value = True
        if not length:
            self._finish_unit()

    def _finish_unit(self) -> None:
        self.frames.append(Frame(self._unit_type, self._unit_length, self._value, self._unit_offset))
        self._value = None
        self._in_value = False

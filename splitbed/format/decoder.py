"""The sans-I/O decoder: bytes in, events out, with the AIPS lifetime rules of S4-260189.

    dec = Decoder()
    dec.feed(chunk)                       # from a socket, a file, a capture: the decoder never does I/O
    while (event := dec.next_event()) is not NEED_DATA: ...

Lifetime (docs/FORMAT.md, "AIPS lifetime"): an AIPS becomes active when an AIPS unit is parsed; it ends when
another AIPS unit arrives (reason: tensor_count_changed, shape_changed, new_aips_same_id or new_aips_other_id,
in that order of precedence; invalid_aips if the new one cannot be parsed), on new_session() / reset(), or
when a data unit's tensor count or inferred length contradicts it (error event, then the AIPS ends).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from splitbed.format.aips import Aips, TensorSpec, parse_aips
from splitbed.format.data_unit import DataTable, Layout, TensorEntry, fixed_layout, parse_data_table
from splitbed.format.errors import FATAL_CODES, DecoderBroken, ErrorCode, FormatError
from splitbed.format.events import (
    NEED_DATA,
    STREAM_ENDED,
    AipsActivated,
    AipsEnded,
    EndReason,
    Event,
    FormatErrorEvent,
    Sentinel,
    TensorsDecoded,
    UnknownUnit,
)
from splitbed.format.framing import Frame, UnitFramer
from splitbed.format.limits import DEFAULT_MAX_DECODED_SIZE, DEFAULT_MAX_UNIT_SIZE, TLV_HEADER_SIZE
from splitbed.format.profiles import get_profile
from splitbed.format.tlv import TLV_HEADER, UnitType


class Decoder:
    """Decodes one byte stream of TLV units. Not thread-safe; one per connection (or call new_session())."""

    def __init__(self, max_unit_size: int = DEFAULT_MAX_UNIT_SIZE,
                 max_decoded_size: int = DEFAULT_MAX_DECODED_SIZE) -> None:
        if max_decoded_size < 0:
            raise ValueError(f"max_decoded_size must be >= 0, got {max_decoded_size}")
        self.max_unit_size = max_unit_size
        self.max_decoded_size = max_decoded_size
        self._framer = UnitFramer(max_unit_size)
        self._events: deque[Event] = deque()
        self._active: Aips | None = None
        self._tensor_ids: tuple[int, ...] = ()
        self._plan: tuple[_TensorPlan, ...] = ()
        self._inferred: tuple[int, ...] = ()
        self._fixed: Layout | None = None
        self._fixed_pad_spans: tuple[tuple[int, int], ...] = ()
        self._fatal: FormatErrorEvent | None = None
        self._fatal_delivered = False
        self._ended = False

    # -- input -------------------------------------------------------------------------------------------
    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes of the stream (any split is fine). The decoder copies what it keeps."""
        self._check_usable()
        if self._ended:
            raise FormatError(ErrorCode.STREAM_ENDED, "feed() after end_of_stream(); call new_session() first")
        self._framer.feed(data)

    def end_of_stream(self) -> None:
        """No more bytes will come (peer closed). A partial unit becomes a fatal `truncated` error event."""
        self._check_usable()
        self._ended = True
        self._framer.end_of_stream()

    # -- output ------------------------------------------------------------------------------------------
    def next_event(self) -> Event | Sentinel:
        """The next event, NEED_DATA when more bytes are needed, STREAM_ENDED after end_of_stream().

        Units already received are all reported before a fatal error; after the fatal error has been
        returned, further calls raise DecoderBroken.
        """
        if self._events:
            return self._events.popleft()
        self._check_usable()
        frames = self._framer.frames
        while frames and not self._events:
            self._decode_frame(frames.popleft())
        if self._events:
            return self._events.popleft()
        failure = self._framer.failure
        if failure is not None:
            self._fatal = FormatErrorEvent(failure.code, failure.message, False, failure.unit_type,
                                           failure.stream_offset)
            self._fatal_delivered = True
            return self._fatal
        return STREAM_ENDED if self._ended else NEED_DATA

    def decode_whole(self, unit: bytes | bytearray | memoryview) -> TensorsDecoded | None:
        """The event feed(unit) and next_event() would give, at once, for the steady state of a stream: `unit` is
        one whole intermediate data unit (header and value) whose table is the one the active AIPS implies (the
        fixed-layout shortcut below), fed at a unit boundary with nothing pending; the decoder keeps its own copy,
        as feed() does. None, with nothing consumed, for anything else (then feed() it): every check of the general
        path holds by construction here, and a payload its transform refuses is left to the general path, which
        reports it (tests compare both paths)."""
        fast = self._fixed
        framer = self._framer
        if fast is None or self._events or self._fatal_delivered or self._ended or framer.failure is not None \
                or framer.frames or framer.buffered:
            return None
        view = memoryview(unit)
        if view.format != "B" or view.ndim != 1 or len(view) != TLV_HEADER_SIZE + fast.value_length \
                or fast.value_length > self.max_unit_size:
            return None
        unit_type, length = TLV_HEADER.unpack_from(view, 0)
        if unit_type != UnitType.INTERMEDIATE_DATA or length != fast.value_length \
                or view[TLV_HEADER_SIZE:TLV_HEADER_SIZE + len(fast.table)] != fast.table:
            return None
        value = bytearray(view[TLV_HEADER_SIZE:])  # the decoder's own copy: the caller may reuse its buffer
        if self._fixed_pad_spans and any(any(value[a:b]) for a, b in self._fixed_pad_spans):
            return None
        readonly = memoryview(value).toreadonly()
        try:
            tensors = tuple([step.transform.inverse(readonly[offset:offset + step.size], b"", step.spec.dtype,
                                                    step.spec.shape)
                             for step, offset in zip(self._plan, fast.payload_offsets, strict=True)])
        except FormatError:
            return None
        aips = self._active
        assert aips is not None
        return TensorsDecoded(aips.aips_id, aips.partition_id, self._tensor_ids, tensors, TLV_HEADER_SIZE + length,
                              fast.payload_lengths, self._inferred, framer.take_whole(length))

    def events(self) -> list[Event]:
        """Every event available now (stops at NEED_DATA / STREAM_ENDED / a fatal error)."""
        out: list[Event] = []
        while True:
            event = self.next_event()
            if isinstance(event, Sentinel):
                return out
            out.append(event)
            if isinstance(event, FormatErrorEvent) and not event.recoverable:
                return out

    # -- state -------------------------------------------------------------------------------------------
    @property
    def active_aips(self) -> Aips | None:
        """The AIPS in force after the events produced so far."""
        return self._active

    @property
    def broken(self) -> bool:
        return self._fatal_delivered

    def new_session(self) -> None:
        """A new session begins: the active AIPS ends (reason new_session); buffered bytes are dropped."""
        self._restart(EndReason.NEW_SESSION)

    def reset(self) -> None:
        """Reset the decoder: the active AIPS ends (reason reset); buffered bytes (including complete units
        whose events have not been asked for yet) and a fatal error are dropped.

        Events already produced (queued behind one already returned) stay queued ahead of the AipsEnded event.
        """
        self._restart(EndReason.RESET)

    def _restart(self, reason: EndReason) -> None:
        self._end_active(reason, f"{reason.value.replace('_', ' ')} requested")
        self._framer = UnitFramer(self.max_unit_size)
        self._fatal = None
        self._fatal_delivered = False
        self._ended = False

    def _check_usable(self) -> None:
        if self._fatal_delivered and self._fatal is not None:
            raise DecoderBroken(ErrorCode.DECODER_BROKEN,
                                f"decoder stopped at {self._fatal.code.value} ({self._fatal.message}); "
                                "close the connection, or call reset() / new_session()")

    def _activate(self, aips: Aips) -> None:
        self._active = aips
        self._tensor_ids = tuple(t.tensor_id for t in aips.tensors)
        self._plan = tuple(_TensorPlan(spec) for spec in aips.tensors)
        self._inferred = tuple(t.inferred_length for t in aips.tensors)
        self._fixed = fixed_layout(aips)
        self._fixed_pad_spans = () if self._fixed is None else tuple(
            (offset - len(pad), offset) for pad, offset in zip(self._fixed.pads, self._fixed.payload_offsets[1:],
                                                                strict=True) if pad)

    def _end_active(self, reason: EndReason, detail: str) -> None:
        if self._active is not None:
            self._events.append(AipsEnded(self._active.aips_id, reason, detail))
            self._active = None
            self._fixed = None

    def _error(self, exc: FormatError, frame: Frame) -> None:
        self._events.append(FormatErrorEvent(exc.code, exc.message, exc.code not in FATAL_CODES,
                                             frame.unit_type, frame.stream_offset))

    # -- units -------------------------------------------------------------------------------------------
    def _decode_frame(self, frame: Frame) -> None:
        if frame.unit_type == UnitType.AIPS:
            self._on_aips(frame)
        elif frame.unit_type == UnitType.INTERMEDIATE_DATA:
            self._on_data(frame)
        elif frame.unit_type == UnitType.RESERVED:
            self._error(FormatError(ErrorCode.RESERVED_TYPE,
                                    f"unit type 0 is reserved; skipped its {frame.length}-byte value"), frame)
        else:
            self._events.append(UnknownUnit(frame.unit_type, frame.length, frame.stream_offset))

    def _on_aips(self, frame: Frame) -> None:
        assert frame.value is not None
        try:
            aips = parse_aips(frame.value)
            if aips.decoded_size > self.max_decoded_size:
                raise FormatError(ErrorCode.DECODED_SIZE_TOO_LARGE,
                                  f"AIPS {aips.aips_id} implies {aips.decoded_size} decoded bytes per data unit, "
                                  f"over this receiver's cap of {self.max_decoded_size}")
        except FormatError as exc:
            self._error(exc, frame)
            self._end_active(EndReason.INVALID_AIPS, f"an AIPS unit at offset {frame.stream_offset} "
                             f"was received but rejected ({exc.code.value})")
            return
        old = self._active
        if old is not None:
            reason, detail = _replacement_reason(old, aips)
            self._end_active(reason, detail)
        self._activate(aips)
        self._events.append(AipsActivated(aips, TLV_HEADER_SIZE + frame.length, frame.stream_offset))

    def _on_data(self, frame: Frame) -> None:
        value = frame.value
        assert value is not None
        fast = self._fixed
        if fast is not None and frame.length == fast.value_length and value.startswith(fast.table) \
                and (not self._fixed_pad_spans or not any(any(value[a:b]) for a, b in self._fixed_pad_spans)):
            self._on_fixed_layout_data(frame, value, fast)
            return
        try:
            table = parse_data_table(value)
            plan = self._matching_plan(table)
            tensors = tuple([step.decode(value, entry) for step, entry in zip(plan, table.entries, strict=True)])
        except _LifetimeBreak as brk:
            self._error(brk.error, frame)
            self._end_active(brk.reason, brk.error.message)
            return
        except FormatError as exc:
            self._error(exc, frame)
            return
        aips = self._active
        assert aips is not None
        self._events.append(TensorsDecoded(
            aips.aips_id, aips.partition_id, self._tensor_ids, tensors, TLV_HEADER_SIZE + frame.length,
            tuple([e.payload_length for e in table.entries]), tuple([e.inferred_length for e in table.entries]),
            frame.stream_offset))

    def _on_fixed_layout_data(self, frame: Frame, value: bytearray, layout: Layout) -> None:
        """Shortcut for a unit whose table is byte-identical to the one the active AIPS implies, with the same
        length and zero padding between payloads: every check of the general path then holds by construction,
        so only the payloads are left to decode (tests compare both paths)."""
        view = memoryview(value).toreadonly()
        try:
            tensors = tuple([step.transform.inverse(view[offset:offset + step.size], b"", step.spec.dtype,
                                                    step.spec.shape)
                             for step, offset in zip(self._plan, layout.payload_offsets, strict=True)])
        except FormatError as exc:
            self._error(exc, frame)
            return
        aips = self._active
        assert aips is not None
        self._events.append(TensorsDecoded(
            aips.aips_id, aips.partition_id, self._tensor_ids, tensors, TLV_HEADER_SIZE + frame.length,
            layout.payload_lengths, self._inferred, frame.stream_offset))

    def _matching_plan(self, table: DataTable) -> tuple[_TensorPlan, ...]:
        """The active AIPS's plan if the unit's table agrees with it (checks in docs/FORMAT.md's order)."""
        aips = self._active
        if aips is None:
            raise FormatError(ErrorCode.NO_ACTIVE_AIPS,
                              f"data unit for AIPS {table.aips_id} arrived while no AIPS is active")
        if table.aips_id != aips.aips_id:
            raise FormatError(ErrorCode.AIPS_ID_MISMATCH,
                              f"data unit names AIPS {table.aips_id}, the active AIPS is {aips.aips_id}")
        entries = table.entries
        if len(entries) != len(aips.tensors):
            raise _LifetimeBreak(EndReason.TENSOR_COUNT_CHANGED, FormatError(
                ErrorCode.TENSOR_COUNT_MISMATCH,
                f"data unit carries {len(entries)} tensors, AIPS {aips.aips_id} describes {len(aips.tensors)}"))
        if tuple([e.tensor_id for e in entries]) != self._tensor_ids:
            raise FormatError(ErrorCode.TENSOR_ID_MISMATCH,
                              f"data unit carries tensor ids {[e.tensor_id for e in entries]}, "
                              f"AIPS {aips.aips_id} has {list(self._tensor_ids)} in that order")
        for entry, spec in zip(entries, aips.tensors, strict=True):
            if entry.inferred_length != spec.inferred_length:
                raise _LifetimeBreak(EndReason.SHAPE_CHANGED, FormatError(
                    ErrorCode.SHAPE_MISMATCH,
                    f"tensor {spec.tensor_id}: data unit's inferred_length is {entry.inferred_length} bytes, "
                    f"AIPS {aips.aips_id} shape {list(spec.shape)} x {spec.dtype.name.lower()} implies "
                    f"{spec.inferred_length}"))
        for entry, spec in zip(entries, aips.tensors, strict=True):
            if entry.profile_id != spec.compression_profile_id:
                raise FormatError(ErrorCode.PROFILE_MISMATCH,
                                  f"tensor {spec.tensor_id}: data unit uses profile {entry.profile_id}, "
                                  f"AIPS {aips.aips_id} says {spec.compression_profile_id}")
        return self._plan


class _LifetimeBreak(Exception):
    """A data unit contradicts the active AIPS in a way the lifetime rules say ends it."""

    def __init__(self, reason: EndReason, error: FormatError) -> None:
        super().__init__(error.message)
        self.reason = reason
        self.error = error


def _replacement_reason(old: Aips, new: Aips) -> tuple[EndReason, str]:
    if len(old.tensors) != len(new.tensors):
        return EndReason.TENSOR_COUNT_CHANGED, (
            f"AIPS {new.aips_id} has {len(new.tensors)} tensors, AIPS {old.aips_id} had {len(old.tensors)}")
    for index, (a, b) in enumerate(zip(old.shapes, new.shapes, strict=True)):
        if a != b:
            return EndReason.SHAPE_CHANGED, (
                f"AIPS {new.aips_id} tensor #{index} has shape {list(b)}, AIPS {old.aips_id} had {list(a)}")
    if old.aips_id == new.aips_id:
        return EndReason.NEW_AIPS_SAME_ID, f"a new AIPS with the same id {new.aips_id} was received"
    return EndReason.NEW_AIPS_OTHER_ID, f"AIPS {new.aips_id} was received while AIPS {old.aips_id} was active"


class _TensorPlan:
    """How to decode one tensor of the active AIPS: everything that does not depend on the data unit."""

    __slots__ = ("spec", "profile", "transform", "coder", "size", "exact_size", "param_length")

    def __init__(self, spec: TensorSpec) -> None:
        self.spec = spec
        self.profile = get_profile(spec.compression_profile_id)
        self.transform = self.profile.transform
        self.coder = self.profile.coder
        self.size = self.profile.transformed_length(spec.dtype, spec.num_elements)
        self.exact_size = self.coder.exact_size
        self.param_length = self.profile.param_length

    def decode(self, value: bytearray, entry: TensorEntry) -> np.ndarray:
        spec = self.spec
        if len(entry.params) != self.param_length:
            raise FormatError(ErrorCode.BAD_PARAMS,
                              f"tensor {spec.tensor_id}: profile {self.profile.name} takes {self.param_length} "
                              f"parameter bytes, the data unit carries {len(entry.params)}")
        if self.param_length:
            self.transform.check_params(entry.params)
        if self.exact_size and entry.payload_length != self.size:
            raise FormatError(ErrorCode.PAYLOAD_LENGTH_MISMATCH,
                              f"tensor {spec.tensor_id}: profile {self.profile.name} payload must be "
                              f"{self.size} bytes, the data unit carries {entry.payload_length}")
        payload = memoryview(value).toreadonly()[entry.payload_offset:entry.payload_offset + entry.payload_length]
        data = self.coder.decompress(payload, self.size, spec.shape)
        return self.transform.inverse(data, entry.params, spec.dtype, spec.shape)

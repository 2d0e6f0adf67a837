"""Decoder behaviour beyond the vectors: AIPS lifetime API (reset / new_session), recovery, caps, misuse."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from format_vectors import decode_all

from splitbed.format import (
    NEED_DATA,
    STREAM_ENDED,
    Aips,
    AipsActivated,
    AipsEnded,
    Decoder,
    DecoderBroken,
    DType,
    EndReason,
    ErrorCode,
    FormatError,
    FormatErrorEvent,
    TensorsDecoded,
    TensorSpec,
    UnknownUnit,
    encode_aips,
    encode_data,
    encode_data_bytes,
    encode_unit,
)

X = np.arange(8, dtype=np.float32).reshape(2, 4)
AIPS = Aips.for_arrays(5, 2, [X])
STREAM = encode_aips(AIPS) + encode_data_bytes(AIPS, [X])


def kinds(events: list) -> list[str]:
    return [type(e).__name__ for e in events]


def test_need_data_until_a_unit_is_complete() -> None:
    dec = Decoder()
    assert dec.next_event() is NEED_DATA
    dec.feed(STREAM[:3])
    assert dec.next_event() is NEED_DATA
    dec.feed(STREAM[3:len(encode_aips(AIPS))])
    assert isinstance(dec.next_event(), AipsActivated)
    assert dec.next_event() is NEED_DATA
    assert dec.active_aips == AIPS


@pytest.mark.parametrize(("call", "reason"), [("reset", EndReason.RESET), ("new_session", EndReason.NEW_SESSION)])
def test_reset_and_new_session_end_the_aips(call: str, reason: EndReason) -> None:
    dec = Decoder()
    dec.feed(STREAM)
    assert kinds(dec.events()) == ["AipsActivated", "TensorsDecoded"]
    dec.feed(encode_aips(AIPS)[:7])  # half a unit is dropped with the restart
    getattr(dec, call)()
    ended = dec.next_event()
    assert isinstance(ended, AipsEnded) and ended.aips_id == 5 and ended.reason is reason
    assert dec.active_aips is None
    dec.feed(encode_data_bytes(AIPS, [X]))
    error = dec.next_event()
    assert isinstance(error, FormatErrorEvent) and error.code is ErrorCode.NO_ACTIVE_AIPS and error.recoverable
    dec.feed(STREAM)
    assert kinds(dec.events()) == ["AipsActivated", "TensorsDecoded"]


def test_restart_without_active_aips_reports_nothing() -> None:
    dec = Decoder()
    dec.reset()
    dec.new_session()
    assert dec.next_event() is NEED_DATA


def test_reset_keeps_events_already_produced_ahead_of_its_own() -> None:
    other = Aips.for_arrays(6, 2, [X])
    dec = Decoder()
    dec.feed(STREAM + encode_aips(other))
    assert kinds([dec.next_event(), dec.next_event()]) == ["AipsActivated", "TensorsDecoded"]
    first = dec.next_event()  # the new AIPS unit produced AipsEnded(5) and AipsActivated(6)
    assert isinstance(first, AipsEnded) and first.reason is EndReason.NEW_AIPS_OTHER_ID
    dec.reset()
    rest = dec.events()
    assert kinds(rest) == ["AipsActivated", "AipsEnded"]
    assert rest[0].aips.aips_id == 6 and rest[1].aips_id == 6 and rest[1].reason is EndReason.RESET


def test_errors_do_not_lose_decoded_tensors() -> None:
    bad = bytearray(encode_data_bytes(AIPS, [X]))
    bad[5:7] = b"\x00\x63"  # names AIPS 99
    events = decode_all([STREAM, bytes(bad), encode_unit(0, b""), encode_data_bytes(AIPS, [X * 2])])
    assert kinds(events) == ["AipsActivated", "TensorsDecoded", "FormatErrorEvent", "FormatErrorEvent",
                             "TensorsDecoded"]
    assert [e.code for e in events[2:4]] == [ErrorCode.AIPS_ID_MISMATCH, ErrorCode.RESERVED_TYPE]
    assert np.array_equal(events[1].tensors[0], X) and np.array_equal(events[4].tensors[0], X * 2)


def test_fatal_error_breaks_the_decoder_until_reset() -> None:
    dec = Decoder(max_unit_size=1024)
    dec.feed(STREAM + b"\x02\x00\x00\x04\x01")
    events = dec.events()
    assert kinds(events) == ["AipsActivated", "TensorsDecoded", "FormatErrorEvent"]
    assert events[-1].code is ErrorCode.UNIT_TOO_LARGE and not events[-1].recoverable
    assert "1025" in events[-1].message and "1024" in events[-1].message
    assert dec.broken
    with pytest.raises(DecoderBroken):
        dec.next_event()
    with pytest.raises(DecoderBroken):
        dec.feed(STREAM)
    assert dec.active_aips == AIPS  # a fatal error is no lifetime rule: the AIPS ends with the reset
    dec.reset()
    assert not dec.broken
    dec.feed(STREAM)
    assert kinds(dec.events()) == ["AipsEnded", "AipsActivated", "TensorsDecoded"]


def test_end_of_stream() -> None:
    dec = Decoder()
    dec.feed(STREAM)
    dec.end_of_stream()
    assert kinds(dec.events()) == ["AipsActivated", "TensorsDecoded"]
    assert dec.next_event() is STREAM_ENDED
    with pytest.raises(FormatError) as info:
        dec.feed(b"\x01")
    assert info.value.code is ErrorCode.STREAM_ENDED
    dec.new_session()
    assert isinstance(dec.next_event(), AipsEnded)
    assert dec.next_event() is NEED_DATA


def test_unit_size_cap_is_inclusive_and_configurable() -> None:
    aips_unit = encode_aips(AIPS)
    assert kinds(decode_all([aips_unit], Decoder(max_unit_size=len(aips_unit) - 5))) == ["AipsActivated"]
    events = decode_all([aips_unit], Decoder(max_unit_size=len(aips_unit) - 6))
    assert events[-1].code is ErrorCode.UNIT_TOO_LARGE
    with pytest.raises(ValueError):
        Decoder(max_unit_size=2**32)


def test_decoded_size_cap() -> None:
    events = decode_all([STREAM], Decoder(max_decoded_size=X.nbytes - 1))
    assert events[0].code is ErrorCode.DECODED_SIZE_TOO_LARGE
    assert kinds(decode_all([STREAM], Decoder(max_decoded_size=X.nbytes))) == ["AipsActivated", "TensorsDecoded"]


def test_undefined_units_are_counted_off_not_stored() -> None:
    big = encode_unit(77, bytes(4 * 2**20))
    dec = Decoder(max_unit_size=8 * 2**20)
    tracemalloc.start()
    try:
        for i in range(0, len(big), 65536):
            dec.feed(memoryview(big)[i:i + 65536])
        events = dec.events()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert events == [UnknownUnit(77, 4 * 2**20, 0)]
    assert peak < 256 * 1024


def test_decoder_copies_what_it_is_fed() -> None:
    """A caller may reuse its receive buffer (recv_into) right after feed()."""
    buffer = bytearray(STREAM)
    dec = Decoder()
    dec.feed(buffer)
    buffer[:] = bytes(len(buffer))
    events = dec.events()
    assert np.array_equal(events[1].tensors[0], X)


def _comparable(events: list) -> list:
    return [(type(e).__name__, e.aips_id, e.tensor_ids, [t.tobytes() for t in e.tensors], e.unit_size,
             e.payload_sizes, e.stream_offset) if isinstance(e, TensorsDecoded) else e for e in events]


def test_units_fed_one_per_feed_decode_as_any_split() -> None:
    """A unit that comes whole in one feed (the edge's data unit on a fast link) is framed at once: the same
    events, offsets and copies as the stream in one feed or byte by byte, and the cap still holds."""
    units = [encode_aips(AIPS), encode_data_bytes(AIPS, [X]), encode_unit(77, b"abc"), encode_unit(0, b""),
             encode_data_bytes(AIPS, [X])]
    stream = b"".join(units)
    whole = decode_all([stream])
    assert kinds(whole) == ["AipsActivated", "TensorsDecoded", "UnknownUnit", "FormatErrorEvent", "TensorsDecoded"]
    expected = _comparable(whole)
    assert _comparable(decode_all([stream[i:i + 1] for i in range(len(stream))])) == expected
    dec, buffer, events = Decoder(), bytearray(len(stream)), []
    for unit in units:  # one receive buffer, reused for every read: what the decoder keeps is its own copy
        view = memoryview(buffer)[:len(unit)]
        view[:] = unit
        dec.feed(view)
        view[:] = bytes(len(unit))
        events += dec.events()
    assert _comparable(events) == expected
    assert decode_all([units[1]], Decoder(max_unit_size=len(units[1]) - 6))[-1].code is ErrorCode.UNIT_TOO_LARGE


def test_feed_accepts_any_buffer() -> None:
    floats = np.frombuffer(STREAM[:len(STREAM) // 4 * 4], np.float32)  # a non-byte memoryview format
    rest = STREAM[len(STREAM) // 4 * 4:]
    events = decode_all([memoryview(floats), bytearray(rest)])
    assert kinds(events) == ["AipsActivated", "TensorsDecoded"]


def test_data_mismatching_the_aips_id_leaves_it_active() -> None:
    other = Aips.for_arrays(6, 2, [X])
    events = decode_all([STREAM, encode_data_bytes(other, [X]), encode_data_bytes(AIPS, [X])])
    assert kinds(events) == ["AipsActivated", "TensorsDecoded", "FormatErrorEvent", "TensorsDecoded"]
    assert "AIPS 6" in events[2].message and "AIPS is 5" in events[2].message


def test_new_aips_precedence_count_over_shape_over_id() -> None:
    two = Aips.for_arrays(9, 2, [X.reshape(4, 2), X])
    reshaped = Aips.for_arrays(9, 2, [X.reshape(4, 2)])
    retyped = Aips.for_arrays(5, 2, [X.astype(np.float64)])
    events = decode_all([encode_aips(AIPS), encode_aips(two), encode_aips(reshaped), encode_aips(retyped)])
    reasons = [e.reason for e in events if isinstance(e, AipsEnded)]
    assert reasons == [EndReason.TENSOR_COUNT_CHANGED, EndReason.TENSOR_COUNT_CHANGED, EndReason.SHAPE_CHANGED]
    assert isinstance(events[-1], AipsActivated) and events[-1].aips == retyped
    # dtype change alone, same id -> new_aips_same_id
    events = decode_all([encode_aips(AIPS), encode_aips(retyped)])
    assert events[1] == AipsEnded(5, EndReason.NEW_AIPS_SAME_ID, events[1].detail)


def test_tensors_decoded_fields() -> None:
    y = np.ones(3, np.int16)
    aips = Aips.for_arrays(1, 4, [X, y], profile=["zstd", "none"], tensor_ids=[7, 3])
    unit = encode_data_bytes(aips, [X, y])
    event = decode_all([encode_aips(aips), unit])[1]
    assert isinstance(event, TensorsDecoded)
    assert event.tensor_ids == (7, 3) and set(event.by_id) == {7, 3}
    assert event.unit_size == len(unit) and event.decoded_sizes == (32, 6)
    assert event.payload_sizes[1] == 6 and event.payload_sizes[0] < 100


@pytest.mark.parametrize(("build", "code"), [
    (lambda: TensorSpec(0, DType.FLOAT32, (1,) * 9), ErrorCode.RANK_TOO_LARGE),
    (lambda: TensorSpec(0, DType.FLOAT32, (3, 0)), ErrorCode.ZERO_DIMENSION),
    (lambda: TensorSpec(0, DType.FLOAT64, (2**31, 2**31)), ErrorCode.DIMENSION_OVERFLOW),
    (lambda: TensorSpec(70000, DType.FLOAT32, (1,)), ErrorCode.BAD_FIELD),
    (lambda: TensorSpec(0, DType.FLOAT32, (1,), 99), ErrorCode.UNKNOWN_PROFILE),
    (lambda: TensorSpec(0, DType.INT32, (1,), 3), ErrorCode.PROFILE_NOT_APPLICABLE),
    (lambda: Aips(1, 1, ()), ErrorCode.BAD_TENSOR_COUNT),
    (lambda: Aips(1, 1, (TensorSpec(0, DType.INT8, (1,)),) * 2), ErrorCode.DUPLICATE_TENSOR_ID),
    (lambda: Aips(-1, 1, (TensorSpec(0, DType.INT8, (1,)),)), ErrorCode.BAD_FIELD),
    (lambda: Aips.for_arrays(1, 1, [np.zeros(2, np.complex64)]), ErrorCode.UNKNOWN_DTYPE),
    (lambda: encode_data(AIPS, [X, X]), ErrorCode.ARRAY_MISMATCH),
    (lambda: encode_data(AIPS, [X.reshape(8)]), ErrorCode.ARRAY_MISMATCH),
    (lambda: encode_data(AIPS, [X.astype(np.float64)]), ErrorCode.ARRAY_MISMATCH),
    (lambda: encode_data(Aips.for_arrays(1, 1, [np.ones(2, bool)]), [np.frombuffer(b"\x01\x02", bool)]),
     ErrorCode.VALUE_OUT_OF_RANGE),
])
def test_the_encoder_refuses_what_the_spec_forbids(build, code: ErrorCode) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FormatError) as info:
        build()
    assert info.value.code is code
    assert info.value.message


def test_fixed_layout_shortcut_agrees_with_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder's shortcut for fixed-layout units (none/fp16/bf16) must report exactly what the general
    path reports, for the whole corpus and for every single-byte change of fixed-layout units."""
    import random

    from format_vectors import GOLDEN, HOSTILE, event_to_json, vector_names

    import splitbed.format.decoder as decoder_module

    y = np.arange(3, dtype=np.uint8)
    multi = Aips.for_arrays(3, 1, [X, y, X.astype(np.float16)], profile=["none", "none", "fp16"])
    stream = encode_aips(multi) + encode_data_bytes(multi, [X, y, X.astype(np.float16)])
    rng = random.Random(5)
    streams = [(f / f"{n}.bin").read_bytes() for f in (GOLDEN, HOSTILE) for n in vector_names(f)]
    data_start = len(encode_aips(multi))
    for index in range(data_start, len(stream)):
        mutated = bytearray(stream)
        mutated[index] ^= 1 << rng.randrange(8)
        streams.append(bytes(mutated))

    def run() -> list[list[dict]]:
        return [[event_to_json(e) for e in decode_all([s])] for s in streams]

    with_shortcut = run()
    monkeypatch.setattr(decoder_module, "fixed_layout", lambda aips: None)
    assert run() == with_shortcut


def _unit_chunks(stream: bytes) -> list[bytes]:
    """The stream cut at its unit boundaries as the headers say (a truncated or oversized last unit: the rest)."""
    chunks, pos = [], 0
    while pos < len(stream):
        if len(stream) - pos < 5:
            chunks.append(stream[pos:])
            break
        length = int.from_bytes(stream[pos + 1:pos + 5], "big")
        chunks.append(stream[pos:pos + 5 + length])
        pos += 5 + length
    return chunks


def test_decode_whole_reports_what_feeding_reports() -> None:
    """decode_whole (the edge's steady state: a whole data unit of the active AIPS's fixed layout, taken at once)
    gives the event feed() and next_event() give, or None and leaves the unit to them: over the corpus and every
    single-byte change of fixed-layout units, each unit in a read of its own, the events are the same."""
    import random

    from format_vectors import GOLDEN, HOSTILE, event_to_json, vector_names

    y = np.arange(3, dtype=np.uint8)
    arrays = [X, y, X.astype(np.float16)]
    multi = Aips.for_arrays(3, 1, arrays, profile=["none", "none", "fp16"])
    stream = encode_aips(multi) + encode_data_bytes(multi, arrays) * 3 + encode_unit(77, b"x") \
        + encode_data_bytes(multi, arrays)
    rng = random.Random(7)
    streams = [stream] + [(f / f"{n}.bin").read_bytes() for f in (GOLDEN, HOSTILE) for n in vector_names(f)]
    data_start = len(encode_aips(multi))
    for index in range(data_start, data_start + len(encode_data_bytes(multi, arrays))):
        mutated = bytearray(stream)
        mutated[index] ^= 1 << rng.randrange(8)
        streams.append(bytes(mutated))
    taken = 0
    for case in streams:
        chunks = _unit_chunks(case)
        dec, events = Decoder(), []
        for chunk in chunks:
            event = dec.decode_whole(memoryview(bytearray(chunk)))
            if event is not None:
                taken += 1
                events.append(event)
                continue
            dec.feed(chunk)
            events += dec.events()
            if events and isinstance(events[-1], FormatErrorEvent) and not events[-1].recoverable:
                break
        else:
            dec.end_of_stream()
            events += dec.events()
        assert [event_to_json(e) for e in events] == [event_to_json(e) for e in decode_all(chunks)]
    assert taken >= 4 + len(streams) // 2  # the clean stream's four data units, and most mutated ones' later units


def test_decode_whole_leaves_anything_else_to_feed() -> None:
    unit = encode_data_bytes(AIPS, [X])
    assert Decoder().decode_whole(unit) is None  # no AIPS active
    dec = Decoder()
    dec.feed(encode_aips(AIPS))
    assert dec.decode_whole(unit) is None  # its AipsActivated event is still pending
    assert kinds(dec.events()) == ["AipsActivated"]
    assert dec.decode_whole(unit + b"x") is None and dec.decode_whole(unit[:-1]) is None  # not one whole unit
    dec.feed(unit[:3])
    assert dec.decode_whole(unit) is None  # mid-unit
    dec.feed(unit[3:])
    assert kinds(dec.events()) == ["TensorsDecoded"]
    event = dec.decode_whole(unit)
    assert isinstance(event, TensorsDecoded) and event.stream_offset == len(encode_aips(AIPS)) + len(unit)
    assert np.array_equal(event.tensors[0], X) and not event.tensors[0].flags.writeable
    zstd = Aips.for_arrays(6, 2, [X], profile="zstd")
    dec.feed(encode_aips(zstd))
    dec.events()
    assert dec.decode_whole(encode_data_bytes(zstd, [X])) is None  # no fixed layout: the general path

"""The session protocol's framing and control messages (sans-I/O, no sockets)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitbed.nodes.errors import ProtocolError
from splitbed.nodes.protocol import (
    HEADER,
    HEADER_SIZE,
    MAX_CONTROL_BYTES,
    ControlUnit,
    MsgType,
    UnitChunk,
    UnitEnd,
    UnitFramer,
    UnitStart,
    decode_control,
    encode_control,
    pack_header,
    require,
)


def _collect(framer: UnitFramer, chunks: list[bytes]) -> list[tuple[str, int, bytes]]:
    """Frames as (kind, type, bytes) with data chunks of one unit merged, so chunking does not matter."""
    out: list[tuple[str, int, bytes]] = []
    body = bytearray()
    for chunk in chunks:
        for frame in framer.feed(chunk):
            if isinstance(frame, UnitStart):
                out.append(("start", frame.unit_type, frame.header))
                body.clear()
            elif isinstance(frame, UnitChunk):
                body += frame.data
            elif isinstance(frame, UnitEnd):
                out.append(("data", frame.unit_type, bytes(body)))
            else:
                assert isinstance(frame, ControlUnit)
                out.append(("control", frame.unit_type, frame.payload))
    return out


def _stream() -> tuple[bytes, list[tuple[str, int, bytes]]]:
    hello = encode_control(MsgType.HELLO, {"protocol_version": 1, "boot_id": "x"})
    aips_body = bytes(range(37))
    data_body = bytes(range(256)) * 10
    stream = (hello + pack_header(1, len(aips_body)) + aips_body + pack_header(2, len(data_body)) + data_body
              + pack_header(2, 0) + pack_header(77, 3) + b"abc" + encode_control(MsgType.RESET, {}))
    expected = [
        ("control", MsgType.HELLO, hello[HEADER_SIZE:]),
        ("start", 1, pack_header(1, len(aips_body))), ("data", 1, aips_body),
        ("start", 2, pack_header(2, len(data_body))), ("data", 2, data_body),
        ("start", 2, pack_header(2, 0)), ("data", 2, b""),
        ("start", 77, pack_header(77, 3)), ("data", 77, b"abc"),
        ("control", MsgType.RESET, b"{}"),
    ]
    return stream, expected


def test_framer_whole_stream_in_one_feed() -> None:
    stream, expected = _stream()
    framer = UnitFramer()
    assert _collect(framer, [stream]) == expected
    assert not framer.mid_unit


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3000), max_size=12))
def test_framer_any_chunking_gives_the_same_units(cuts: list[int]) -> None:
    stream, expected = _stream()
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert _collect(UnitFramer(), chunks) == expected


def test_framer_units_one_per_read_give_the_same_units() -> None:
    """Each unit in a read of its own: a control unit that came whole (the local node's RESULT) is taken at once,
    with the same frames, checks and counts as in any other chunking."""
    stream, expected = _stream()
    chunks, pos = [], 0
    while pos < len(stream):
        _type, length = HEADER.unpack_from(stream, pos)
        chunks.append(stream[pos:pos + HEADER_SIZE + length])
        pos += HEADER_SIZE + length
    framer = UnitFramer()
    assert _collect(framer, chunks) == expected
    assert framer.units_started == len(chunks) == 6 and not framer.mid_unit
    with pytest.raises(ProtocolError, match="cap is 10"):
        list(UnitFramer(max_control_bytes=10).feed(encode_control(MsgType.HELLO, {"protocol_version": 1})))


def test_framer_refuses_oversize_data_unit_from_the_header_alone() -> None:
    framer = UnitFramer(max_unit_bytes=1000)
    with pytest.raises(ProtocolError) as info:
        list(framer.feed(pack_header(2, 1001)))
    assert info.value.code == "unit_too_large" and "1001" in info.value.message and info.value.fatal


def test_framer_refuses_oversize_control_unit() -> None:
    framer = UnitFramer()
    with pytest.raises(ProtocolError) as info:
        list(framer.feed(pack_header(MsgType.HELLO, MAX_CONTROL_BYTES + 1)))
    assert info.value.code == "unit_too_large"


def test_framer_json_baseline_unit_uses_the_data_cap() -> None:
    framer = UnitFramer(max_unit_bytes=10 * MAX_CONTROL_BYTES)
    list(framer.feed(pack_header(MsgType.JSON_BASELINE, 2 * MAX_CONTROL_BYTES)))  # accepted
    assert framer.mid_unit and framer.unit_length == 2 * MAX_CONTROL_BYTES


def test_framer_refuses_control_message_from_the_wrong_direction() -> None:
    framer = UnitFramer()  # uplink: a RESULT can only come from the remote node
    with pytest.raises(ProtocolError) as info:
        list(framer.feed(encode_control(MsgType.RESULT, {})))
    assert info.value.code == "unexpected_message" and "RESULT" in info.value.message


def test_framer_reports_partial_unit() -> None:
    framer = UnitFramer()
    list(framer.feed(pack_header(2, 10) + b"12345"))
    assert framer.mid_unit
    list(framer.feed(b"67890"))
    assert not framer.mid_unit


def test_control_round_trip() -> None:
    body = {"model": "mobilenet_v2", "n": 3, "nested": {"a": [1, 2.5, None, True]}}
    unit = encode_control(MsgType.SELECT, body)
    assert unit[0] == MsgType.SELECT and int.from_bytes(unit[1:HEADER_SIZE], "big") == len(unit) - HEADER_SIZE
    assert decode_control(MsgType.SELECT, unit[HEADER_SIZE:]) == body


@pytest.mark.parametrize(("payload", "fragment"), [
    (b"\xff\xfe", "not UTF-8"),
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"x": NaN}', "not valid JSON"),
    (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
])
def test_decode_control_errors_are_specific(payload: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_control(MsgType.HELLO, payload)
    assert info.value.code == "bad_control_message" and fragment in info.value.message
    assert "HELLO" in info.value.message


def test_encode_control_refuses_nan_and_oversize() -> None:
    with pytest.raises(ValueError):
        encode_control(MsgType.RESULT, {"x": float("nan")})
    with pytest.raises(ValueError, match="cap"):
        encode_control(MsgType.RESULT, {"x": "a" * MAX_CONTROL_BYTES})


def test_require_checks_presence_and_json_type() -> None:
    body = json.loads('{"n": 1, "flag": true, "name": "x"}')
    assert require(body, "n", int, msg="SELECT") == 1
    with pytest.raises(ProtocolError, match="lacks the field 'model'"):
        require(body, "model", str, msg="SELECT")
    with pytest.raises(ProtocolError, match="must be int, got bool"):
        require(body, "flag", int, msg="SELECT")
    with pytest.raises(ProtocolError, match="must be str"):
        require(body, "n", str, msg="SELECT")

"""Control channel framing: JSON lines only, capped, with clear errors."""

from __future__ import annotations

import socket

import pytest

from netem.errors import LinkError
from netem.link import control


def test_lines_split_across_reads_and_several_per_read() -> None:
    buffer = control.LineBuffer()
    buffer.feed(b'{"op": "st')
    assert buffer.pop() is None
    buffer.feed(b'ats"}\n{"op": "ping"}\n{"op"')
    assert control.decode(buffer.pop() or b"") == {"op": "stats"}
    assert control.decode(buffer.pop() or b"") == {"op": "ping"}
    assert buffer.pop() is None


def test_overlong_line_raises_once_then_is_skipped_to_its_newline() -> None:
    buffer = control.LineBuffer(max_line=16)
    with pytest.raises(LinkError, match="longer than 16 bytes"):
        buffer.feed(b"x" * 20)
    buffer.feed(b"y" * 100)  # still the same line: silently discarded
    buffer.feed(b'zz\n{"a": 1}\n')
    assert control.decode(buffer.pop() or b"") == {"a": 1}


def test_complete_overlong_line_does_not_hide_the_next_ones() -> None:
    buffer = control.LineBuffer(max_line=8)
    with pytest.raises(LinkError):
        buffer.feed(b"0123456789\n{}\n")
    assert buffer.pop() == b"{}"


@pytest.mark.parametrize(("line", "message"), [(b"\xff", "not a JSON line"), (b"[]", "expected a JSON object"),
                                              (b"NaN", "expected a JSON object")])
def test_decode_refuses_non_objects(line: bytes, message: str) -> None:
    with pytest.raises(LinkError, match=message):
        control.decode(line)


def test_encode_is_one_line_and_refuses_nan() -> None:
    assert control.encode({"op": "stats", "x": [1, 2]}) == b'{"op":"stats","x":[1,2]}\n'
    with pytest.raises(ValueError):
        control.encode({"x": float("nan")})


def test_read_message_times_out_and_reports_a_closed_peer() -> None:
    left, right = socket.socketpair()
    with left, right:
        with pytest.raises(LinkError, match="no answer within"):
            control.read_message(left, control.LineBuffer(), 0.05)
        right.sendall(b'{"ok": true}\n')
        assert control.read_message(left, control.LineBuffer(), 1.0) == {"ok": True}
        right.close()
        with pytest.raises(LinkError, match="closed by the other side"):
            control.read_message(left, control.LineBuffer(), 1.0)

"""The attach-socket demultiplexer on a real socket pair: frames in the engine's format go to the right pipe,
in bounded chunks, EOF propagates, a closed reader drops its stream without stopping the other."""

from __future__ import annotations

import os
import socket
import struct
import threading

import pytest

from splitbed.runtime.attach import AttachPump, SocketStdin, reader_pipe

pytestmark = pytest.mark.timeout(30)


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def test_frames_are_split_into_stdout_and_stderr_until_eof() -> None:
    engine, ours = socket.socketpair()
    out, out_fd = reader_pipe()
    err, err_fd = reader_pipe()
    pump = AttachPump(ours, out_fd, err_fd)
    pump.start()
    big = os.urandom(300_000)  # several receive chunks for one frame, more than a pipe holds

    def engine_side() -> None:  # like the engine: writes while we read (a full pipe holds the pump back)
        engine.sendall(frame(1, b"line 1\n") + frame(2, b"warning\n") + frame(1, big) + frame(1, b"end"))
        engine.close()

    writer = threading.Thread(target=engine_side)
    writer.start()
    assert out.read() == b"line 1\n" + big + b"end"
    assert err.read() == b"warning\n"
    writer.join(5)
    assert pump.join(5) and pump.error is None


def test_a_frame_cut_short_ends_the_streams_cleanly() -> None:
    engine, ours = socket.socketpair()
    out, out_fd = reader_pipe()
    pump = AttachPump(ours, out_fd, None)
    pump.start()
    engine.sendall(frame(1, b"ok") + struct.pack(">BxxxL", 1, 1000) + b"only part")
    engine.close()
    assert out.read() == b"okonly part"
    assert pump.join(5)


def test_merged_stderr_and_a_reader_that_goes_away() -> None:
    engine, ours = socket.socketpair()
    out, out_fd = reader_pipe()
    pump = AttachPump(ours, out_fd, out_fd)  # stderr=STDOUT: one pipe, closed once
    pump.start()
    engine.sendall(frame(1, b"a") + frame(2, b"b"))
    assert out.read(2) == b"ab"
    out.close()  # the caller stops reading: the pump drops further output instead of failing
    engine.settimeout(10)
    engine.sendall(frame(1, b"x" * 200_000))  # would block for good if the pump stopped reading
    engine.close()
    assert pump.join(5) and pump.error is None


def test_stdin_close_is_a_half_close() -> None:
    engine, ours = socket.socketpair()
    stdin = SocketStdin(ours)
    stdin.write(b"job\n")
    stdin.close()
    assert engine.recv(100) == b"job\n"
    assert engine.recv(100) == b""  # EOF for the node, while the socket stays open for its output
    engine.sendall(b"still readable")
    assert ours.recv(100) == b"still readable"

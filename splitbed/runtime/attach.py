"""Turn a container's attach socket into Popen-like pipes.

Without a TTY the engine multiplexes stdout and stderr on one socket: frames of an 8-byte header (stream id,
3 zero bytes, big-endian payload length) and the payload. A pump thread splits them into two OS pipes, so the
caller reads `node.stdout` exactly as a `Popen` pipe (EOF when the container ends). Writing `node.stdin`
sends on the socket; closing it half-closes the socket, which the engine turns into EOF on the container's
stdin (the container is created with StdinOnce).
"""

from __future__ import annotations

import io
import os
import socket
import struct
import threading
from typing import IO

_HEADER = struct.Struct(">BxxxL")
_CHUNK = 65536
STREAM_STDOUT = 1
STREAM_STDERR = 2


class SocketStdin(io.RawIOBase):
    """Write side of the attach socket; `close()` half-closes it (EOF for the node's stdin)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._sock.sendall(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the container already ended and the engine closed the socket
        super().close()


class AttachPump:
    """Reads frames from the attach socket and writes each payload to the pipe of its stream."""

    def __init__(self, sock: socket.socket, stdout_fd: int | None, stderr_fd: int | None) -> None:
        self._sock = sock
        self._fds = {STREAM_STDOUT: stdout_fd, STREAM_STDERR: stderr_fd}
        self._thread = threading.Thread(target=self._run, name="splitbed-attach", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the stream to end; True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            while True:
                header = self._read_exact(_HEADER.size)
                if header is None:
                    return
                stream, length = _HEADER.unpack(header)
                target = self._fds.get(stream)
                while length:  # payload forwarded in bounded chunks, never allocated whole
                    chunk = self._sock.recv(min(length, _CHUNK))
                    if not chunk:
                        return
                    length -= len(chunk)
                    if target is not None:
                        target = self._write_all(target, chunk, stream)
        except OSError as exc:
            self.error = exc
        finally:
            self._close_all()

    def _read_exact(self, size: int) -> bytes | None:
        buf = b""
        while len(buf) < size:
            chunk = self._sock.recv(size - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def _write_all(self, fd: int, data: bytes, stream: int) -> int | None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(fd, view)
            except BrokenPipeError:  # the reader closed its end: drop the rest of this stream
                self._close(stream)
                return None
            view = view[written:]
        return fd

    def _close(self, stream: int) -> None:
        fd = self._fds.get(stream)
        if fd is not None:
            self._fds[stream] = None
            if fd not in self._fds.values():  # stderr merged into stdout shares the fd
                os.close(fd)

    def _close_all(self) -> None:
        for stream in (STREAM_STDOUT, STREAM_STDERR):
            self._close(stream)  # the socket itself stays open for stdin until the node is released


def reader_pipe() -> tuple[IO[bytes], int]:
    """A pipe: (file object the caller reads, raw write fd the pump owns)."""
    read_fd, write_fd = os.pipe()
    return os.fdopen(read_fd, "rb"), write_fd

"""The link process's control channel: JSON objects, one per line, over a unix stream socket.

JSON only (never pickle): the link process takes orders from its parent, but a line is still input and is
parsed with a length cap. Requests: ``{"op": "stats"}``, ``{"op": "update", "profile": {...}}``,
``{"op": "stop"}``, ``{"op": "ping"}``; the first message is ``{"op": "start", "profile": ..., "options": ...}``.
Replies: ``{"ok": true, ...}`` or ``{"ok": false, "error": "what went wrong"}``.
"""

from __future__ import annotations

import json
import socket
from collections import deque
from typing import Any

from netem.errors import LinkError

#: Longest accepted line (bytes). A profile with its description fits in a few KB; stats in tens of KB.
MAX_LINE_BYTES = 1024 * 1024


def encode(message: dict[str, Any]) -> bytes:
    """One JSON line."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """Parse one line into a JSON object, with a clear error for anything else."""
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LinkError(f"control channel: not a JSON line ({exc})") from None
    if not isinstance(message, dict):
        raise LinkError(f"control channel: expected a JSON object, got {type(message).__name__}")
    return message


class LineBuffer:
    """Splits a byte stream into lines, refusing any line longer than `MAX_LINE_BYTES`.

    An overlong line raises `LinkError` once and the rest of it (up to its newline) is discarded, so the
    stream stays usable and memory stays bounded.
    """

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self.max_line = max_line
        self._pending = bytearray()
        self._lines: deque[bytes] = deque()
        self._discarding = False

    def feed(self, data: bytes) -> None:
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return
            self._discarding = False
            data = data[end + 1 :]
        self._pending += data
        overlong = False
        while True:
            end = self._pending.find(b"\n")
            if end < 0:
                break
            if end > self.max_line:
                overlong = True
            else:
                self._lines.append(bytes(self._pending[:end]))
            del self._pending[: end + 1]
        if len(self._pending) > self.max_line:
            self._pending.clear()
            self._discarding = True
            overlong = True
        if overlong:
            raise LinkError(f"control channel: a line is longer than {self.max_line} bytes")

    def pop(self) -> bytes | None:
        """The next complete line, or None."""
        return self._lines.popleft() if self._lines else None


def read_message(sock: socket.socket, buffer: LineBuffer, timeout: float | None) -> dict[str, Any]:
    """Block (up to ``timeout`` seconds) for the next message on the socket."""
    sock.settimeout(timeout)
    while True:
        line = buffer.pop()
        if line is not None:
            return decode(line)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            raise LinkError(f"control channel: no answer within {timeout} s") from None
        if not data:
            raise LinkError("control channel closed by the other side (did the link process die?)")
        buffer.feed(data)

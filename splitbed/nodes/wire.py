"""Socket helpers shared by both nodes: zero-copy sends with a deadline, and deadline-bounded unit reads."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from typing import Any

from splitbed.nodes import messages, rxstamp
from splitbed.nodes.errors import NodeTimeout, PeerClosed, ProtocolError, RemoteError
from splitbed.nodes.messages import Message
from splitbed.nodes.protocol import (
    DOWNLINK_CONTROL,
    HEADER_SIZE,
    MAX_CONTROL_BYTES,
    ControlUnit,
    MsgType,
    UnitFramer,
    decode_control,
)

RECV_CHUNK = 256 * 1024
IOV_MAX = 1024


def send_pieces(sock: socket.socket, pieces: Sequence[bytes | bytearray | memoryview], timeout_s: float) -> int:
    """Send every piece in order with sendmsg (scatter/gather: no joining copy); returns bytes sent.
    The whole send must finish within timeout_s, however the kernel splits it."""
    views = [memoryview(p).cast("B") for p in pieces if len(p)]
    total = sum(len(v) for v in views)
    deadline = time.monotonic() + timeout_s
    while views:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NodeTimeout(f"sending {total} bytes did not finish within {timeout_s:g} s")
        sock.settimeout(remaining)
        try:
            sent = sock.sendmsg(views[:IOV_MAX])
        except TimeoutError:
            raise NodeTimeout(f"sending {total} bytes did not finish within {timeout_s:g} s") from None
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise PeerClosed(f"peer closed the connection while we were sending: {exc}") from None
        while sent and views:
            if sent >= len(views[0]):
                sent -= len(views[0])
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0
    return total


class ControlReader:
    """Reads whole control units from a blocking socket, each within a deadline (the local node's downlink)."""

    def __init__(self, sock: socket.socket, *, max_control_bytes: int = MAX_CONTROL_BYTES) -> None:
        self.sock = sock
        self.framer = UnitFramer(max_unit_bytes=max_control_bytes, max_control_bytes=max_control_bytes,
                                 accepted_control=DOWNLINK_CONTROL)
        self._pending: list[tuple[ControlUnit, int, int, rxstamp.StampSource, bool]] = []
        self._buf = bytearray(RECV_CHUNK)
        self.bytes_received = 0
        self.rx = rxstamp.ReceiveClock(sock)
        self._stamp_source: rxstamp.StampSource = (None, None)  # of the unit read() returned
        self.bounded_by_rest = False  # that unit's stamp is its RESULT_REST's: an upper bound (rxstamp.BOUNDED_BY_REST)

    @property
    def kernel_ns(self) -> int | None:
        """When the kernel received the last byte of the unit read() returned (None: unknown; with
        `bounded_by_rest`, when it received the RESULT_REST's, a bound from above); decoded when asked, after the
        inference's windows."""
        return rxstamp.decode_stamp(self._stamp_source)[0]

    @property
    def no_stamp_reason(self) -> str | None:
        """Why that unit has no kernel_ns (rxstamp.END_REASONS)."""
        return rxstamp.decode_stamp(self._stamp_source)[1]

    def read(self, timeout_s: float) -> tuple[ControlUnit, int, int]:
        """The next control unit, its size on the wire and the CLOCK_MONOTONIC ns when its last byte was read
        (``kernel_ns``: when the kernel received it, where the kernel stamps received data and the unit's last
        byte was the last byte of its read, or a bound from above, ``bounded_by_rest``, for a RESULT whose
        RESULT_REST ended the read; else None)."""
        deadline = time.monotonic() + timeout_s
        while not self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NodeTimeout(f"no complete message from the remote node within {timeout_s:g} s")
            self.sock.settimeout(remaining)
            try:
                n, t_read = self.rx.recv_into(self._buf)
            except TimeoutError:
                raise NodeTimeout(f"no complete message from the remote node within {timeout_s:g} s") from None
            except ConnectionResetError as exc:
                raise PeerClosed(f"remote node reset the connection: {exc}") from None
            if n == 0:
                raise PeerClosed("remote node closed the connection"
                                 + (" in the middle of a message" if self.framer.mid_unit else ""))
            self.bytes_received += n
            read = memoryview(self._buf)[:n]
            whole = self.framer.take_whole(read)  # a read that is one whole unit (the RESULT): no pieces, no list
            if isinstance(whole, ControlUnit):
                self._stamp_source = self.rx.last_read  # the unit ends the read: the read's stamp is its own
                self.bounded_by_rest = False
                return whole, n, t_read
            frames: list[ControlUnit] = []
            for frame in (self.framer.feed(read) if whole is None else [whole]):
                if not isinstance(frame, ControlUnit):
                    raise ProtocolError("unexpected_message",
                                        f"unit of type {frame.unit_type} on the downlink; only control messages "
                                        "are valid there")
                frames.append(frame)
            ended = not self.framer.mid_unit  # the read's last byte is the last frame's
            for index, frame in enumerate(frames):
                # The kernel stamp is the arrival of the last byte this recv returned: it belongs to a unit only
                # if that unit ends there. A RESULT read together with the CHECKSUM behind it gets none (its
                # arrival is unknown, the record falls back to the read), never the CHECKSUM's. One exception: a
                # split RESULT's leading unit whose RESULT_REST ends the read gets the read's stamp as a bound
                # (the RESULT_REST's arrival: no earlier than its own), marked so.
                ends_the_read = index == len(frames) - 1 and ended
                bounded = ended and index == len(frames) - 2 and frame.unit_type == MsgType.RESULT \
                    and frames[-1].unit_type == MsgType.RESULT_REST
                self._pending.append((frame, HEADER_SIZE + len(frame.payload), t_read,
                                      self.rx.last_read if ends_the_read or bounded
                                      else (None, rxstamp.READ_CONTINUED), bounded))
        unit, size, t_read, self._stamp_source, self.bounded_by_rest = self._pending.pop(0)
        return unit, size, t_read

    def expect(self, wanted: MsgType, timeout_s: float) -> tuple[ControlUnit, int, int]:
        """Like read(), but an ERROR reply raises RemoteError and any other type is a protocol error."""
        unit, size, t_read = self.read(timeout_s)
        if unit.unit_type == MsgType.ERROR:
            body = decode_control(unit.unit_type, unit.payload)
            raise RemoteError(str(body.get("code", "unknown")), str(body.get("message", "")),
                              fatal=bool(body.get("fatal", True)), aips_events=list(body.get("aips_events") or []))
        if unit.unit_type != wanted:
            raise ProtocolError("unexpected_message", f"expected {wanted.name}, the remote sent {unit.unit_type.name}")
        return unit, size, t_read


class TcpTransport:
    """The UE's end of a session over TCP, as the local node uses it (nodes.transport.UeTransport): zero-copy
    sends with a deadline, whole typed messages with the kernel's receive stamp of their last byte, and the
    socket's TCP_INFO. The protocol itself is the session machine's (ue_session); only this class knows TCP."""

    def __init__(self, sock: socket.socket, handshake_ms: float | None = None) -> None:
        self.sock = sock
        self.reader = ControlReader(sock)
        self.handshake_ms = handshake_ms
        self._marked: bytes | None = None  # TCP_INFO at the last mark()

    @classmethod
    def connect(cls, host: str, port: int, timeout_s: float) -> TcpTransport:
        started = time.monotonic()
        sock = socket.create_connection((host, port), timeout=timeout_s)
        handshake_ms = (time.monotonic() - started) * 1e3  # connect() returns after the SYN-ACK: one RTT
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, handshake_ms)

    def counters(self) -> dict[str, Any]:
        return {}  # TCP's losses are the record's uplink_retransmitted_segments (TCP_INFO); its CPU is the kernel's

    def describe(self) -> dict[str, Any]:
        try:
            cc: str | None = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16) \
                .split(b"\0", 1)[0].decode()
        except (OSError, AttributeError):
            cc = None
        return {"binding": "tcp", "handshake_ms": None if self.handshake_ms is None else round(self.handshake_ms, 3),
                "congestion_control": cc, "streams": "one TCP connection per session",
                "implementation": "Linux kernel TCP"}

    def send(self, pieces: Sequence[bytes | bytearray | memoryview], timeout_s: float) -> int:
        return send_pieces(self.sock, pieces, timeout_s)

    def receive(self, timeout_s: float) -> tuple[Message, int, int]:
        """The next message, its size on the wire and the CLOCK_MONOTONIC ns its last byte was read."""
        unit, size, t_read = self.reader.read(timeout_s)
        return messages.decode(unit.unit_type, unit.payload), size, t_read

    def arrival(self) -> tuple[int | None, int | None, str | None]:
        """When the kernel received the last message's last byte (None: unknown), the out-of-order packets since
        mark(), and why there is no stamp (rxstamp.END_REASONS), or `bounded_by_rest` where the stamp is the
        RESULT_REST's that came in the same read (it passed the same checks: order, clock steps)."""
        kernel_ns, late, why = self.reader.rx.arrival(self.reader.kernel_ns, self.reader.no_stamp_reason)
        if kernel_ns is not None and self.reader.bounded_by_rest:
            why = rxstamp.BOUNDED_BY_REST
        return kernel_ns, late, why

    def mark(self) -> None:
        """A transfer starts: count the reply's out-of-order packets from here; the TCP state at this moment is
        kept for marked_state() (one TCP_INFO reading for both)."""
        self._marked = self.reader.rx.info.read()
        self.reader.rx.mark(self._marked)

    def marked_state(self) -> dict[str, Any] | None:
        """The TCP state read by the last mark() (tcp_state() then), decoded now: after the inference's windows."""
        return self.reader.rx.info.state(self._marked)

    def tcp_state(self) -> dict[str, Any] | None:
        """TCP_INFO of the connection now (the window a transfer starts with), None where unreadable."""
        info = self.reader.rx.info
        return info.state(info.read())

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

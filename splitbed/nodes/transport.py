"""The seam between the session protocol and what carries it.

The protocol is two sans-I/O machines (ue_session, edge_session): bytes and messages in, messages and actions
out. A transport carries one session's bytes as an ordered, reliable stream and tells the nodes what only it can
know: when the receiving kernel got the last byte of a message, how many packets came out of order, the
congestion window a transfer starts with. TCP is the transport today (wire.TcpTransport on the UE; the edge's
per-connection driver in remote.py); a QUIC stream (splitbed.nodes.quic) implements the same calls, and many UEs per edge
(a cell: splitbed.cellbed) are many edge machines, one per stream or connection, over one shared node state (models, memory
budget, admission).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from splitbed.nodes.messages import Message


class UeTransport(Protocol):
    """The local node's end of one session (wire.TcpTransport)."""

    def send(self, pieces: Sequence[bytes | bytearray | memoryview], timeout_s: float) -> int:
        """Send every piece in order within the deadline (NodeTimeout, PeerClosed); returns the bytes sent."""
        ...

    def receive(self, timeout_s: float) -> tuple[Message, int, int]:
        """The next whole message from the remote, its size on the wire, and when its last byte was read (ns)."""
        ...

    def arrival(self) -> tuple[int | None, int | None, str | None]:
        """(kernel arrival ns of the last message's last byte or None, out-of-order packets since mark(), why no
        stamp)."""
        ...

    def mark(self) -> None:
        """A transfer starts now: the next reply's out-of-order count begins here, and the sender's congestion
        state is taken (TCP: one TCP_INFO reading for both)."""
        ...

    def marked_state(self) -> dict[str, Any] | None:
        """The sender's congestion state taken by the last mark() (what tcp_state() said then), None where the
        transport has none; it may be decoded only now, after the measured windows."""
        ...

    def tcp_state(self) -> dict[str, Any] | None:
        """The sender's congestion state now (splitbed.host.tcpinfo), None where the transport has none."""
        ...

    def counters(self) -> dict[str, Any]:
        """Cumulative figures now (packets_sent, packets_lost, cwnd_bytes, cpu_ns: None where unknown)."""
        ...

    def describe(self) -> dict[str, Any]:
        """binding, handshake_ms, congestion_control, streams, implementation (the record's transport block)."""
        ...

    def close(self) -> None: ...

"""A TCP socket's congestion state (Linux TCP_INFO), read just before a transfer, and the window the kernel will
send that transfer with.

Why: how long a transfer of a few hundred kB takes on a long-RTT link depends less on the link's rate than on
the sender's congestion window when the transfer starts. A connection that sends one tensor per inference is
application-limited: its window grows only while a transfer fills it, Linux shrinks it after an idle period
longer than the RTO (RFC 5681 4.1, net.ipv4.tcp_slow_start_after_idle) and while the application leaves it
unused (RFC 2861 cwnd validation). A latency model that assumes a full window predicts a 100 kB transfer on LTE
30 ms too fast; one that reads the window off the socket does not.

The layout is struct tcp_info of include/uapi/linux/tcp.h (stable: fields are only ever appended); the kernel
fills as many bytes as it has, so fields newer than the running kernel read as None.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Any

#: Bytes of struct tcp_info asked for: up to tcpi_rcv_wnd (Linux 5.19+); older kernels return fewer.
TCP_INFO_BYTES = 240
#: Linux's "no slow-start threshold yet" value (TCP_INFINITE_SSTHRESH).
INFINITE_SSTHRESH = 0x7FFFFFFF
TCP_CONGESTION = getattr(socket, "TCP_CONGESTION", 13)
#: Congestion controls with a cong_control hook: Linux does not restart their window after idle.
OWN_CONTROL_LOOP = frozenset({"bbr", "bbr2", "bbr3"})
#: tcpi_ca_state values (enum tcp_ca_state).
CA_STATES = ("open", "disorder", "cwr", "recovery", "loss")

# (name, struct format, byte offset) of the fields read; offsets from include/uapi/linux/tcp.h
_FIELDS = (
    ("ca_state", "B", 1),
    ("rto_us", "I", 8),
    ("snd_mss", "I", 16),
    ("unacked", "I", 24),
    ("last_data_sent_ms", "I", 44),
    ("rtt_us", "I", 68),
    ("rttvar_us", "I", 72),
    ("snd_ssthresh", "I", 76),
    ("snd_cwnd", "I", 80),
    ("total_retrans", "I", 100),
    ("min_rtt_us", "I", 148),
    ("snd_wnd", "I", 228),
)


@dataclass(frozen=True)
class TcpState:
    """What a sender's TCP knew when a transfer began. Windows in segments of `mss_bytes` unless named _bytes."""

    congestion_control: str
    ca_state: str
    cwnd_segments: int
    ssthresh_segments: int | None   # None: no loss yet, slow start has no threshold
    mss_bytes: int
    rtt_ms: float                   # the kernel's smoothed RTT estimate
    rttvar_ms: float
    min_rtt_ms: float | None
    rto_ms: float
    idle_ms: float                  # since the last data segment this socket sent
    unacked_segments: int
    total_retrans: int
    peer_window_bytes: int | None   # the receive window the peer last advertised (tcpi_snd_wnd)

    def to_dict(self) -> dict[str, Any]:
        # Every field is a scalar: a shallow copy is what asdict's deep one gives, without its cost.
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TcpState:
        """Back from a metrics record; ValueError names a missing or mistyped field."""
        return cls(**checked_fields(data))

    def send_window_segments(self, *, slow_start_after_idle: bool, initial_window: int = 10) -> tuple[int, int | None]:
        """(cwnd, ssthresh) the next transfer starts with, after the kernel's restart-after-idle rule
        (`restart_after_idle`). Algorithms with their own control loop (BBR) skip that rule, and so does a sender
        with data still in flight."""
        if not slow_start_after_idle or self.congestion_control in OWN_CONTROL_LOOP or self.unacked_segments:
            return self.cwnd_segments, self.ssthresh_segments
        return restart_after_idle(self.cwnd_segments, self.ssthresh_segments, self.idle_ms, self.rto_ms,
                                  in_reduction=self.ca_state in ("cwr", "recovery"), initial_window=initial_window)


def _field_kinds() -> tuple[tuple[str, str, bool], ...]:
    """(name, str | int | float, None allowed) of each TcpState field, from its annotation."""
    kinds = []
    for name, kind in TcpState.__annotations__.items():
        base = "str" if kind == "str" else "int" if kind.startswith("int") else "float"
        kinds.append((name, base, "None" in kind))
    return tuple(kinds)


_KINDS = _field_kinds()


def checked_fields(data: dict[str, Any]) -> dict[str, Any]:
    """TcpState's fields from a record's (or a RESULT's) `to_dict()` form, each checked against its type: the
    fields TcpState(**...) takes, or what to_dict() of it gives back. ValueError names a missing or mistyped
    field."""
    values: dict[str, Any] = {}
    for name, kind, optional in _KINDS:
        if name not in data:
            raise ValueError(f"TCP state lacks {name!r}")
        value = data[name]
        if value is None and optional:
            values[name] = None
        elif kind == "str":
            values[name] = str(value)
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"TCP state field {name!r} must be an integer, got {value!r}")
            values[name] = value
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"TCP state field {name!r} must be a number, got {value!r}")
            values[name] = float(value)
    return values


def restart_after_idle(cwnd: int, ssthresh: int | None, idle_ms: float, rto_ms: float, *, in_reduction: bool = False,
                       initial_window: int = 10) -> tuple[int, int | None]:
    """(cwnd, ssthresh) of a sender that sat idle `idle_ms` with nothing in flight, as Linux leaves them
    (tcp_cwnd_restart in net/ipv4/tcp_output.c, run when net.ipv4.tcp_slow_start_after_idle = 1; RFC 2861).

    Nothing changes unless the idle exceeded the RTO. Then the threshold becomes tcp_current_ssthresh(), i.e.
    max(ssthresh, 3/4 cwnd) unless the connection is in a window reduction (CWR or Recovery), where it stays; an
    infinite threshold (None: no loss yet) stays infinite, so the window doubles again from the restart. cwnd
    halves once per RTO that elapsed, but not below min(initial window, cwnd): the window is NOT reset to the
    initial window after one RTO, so a window far above the bandwidth-delay product survives a short idle."""
    if idle_ms <= rto_ms or rto_ms <= 0:
        return cwnd, ssthresh
    if ssthresh is not None and not in_reduction:
        ssthresh = max(ssthresh, (cwnd >> 1) + (cwnd >> 2))
    floor = min(initial_window, cwnd)
    delta = idle_ms - rto_ms
    while delta > 0 and cwnd > floor:
        cwnd >>= 1
        delta -= rto_ms
    return max(cwnd, floor), ssthresh


# Compiled once: the nodes read the state around every inference, inside its measured windows.
_LAYOUTS = tuple((name, struct.Struct("=" + fmt), offset) for name, fmt, offset in _FIELDS)
_RCV_OOOPACK = struct.Struct("=I")
_RCV_OOOPACK_OFFSET = 224  # tcpi_rcv_ooopack (Linux 5.4+)


def _whole_layout() -> tuple[struct.Struct, tuple[str, ...]]:
    """One struct for every field read (pad bytes between them), for a kernel that returns all of them: one
    unpack instead of one per field."""
    fmt, pos = "=", 0
    for _name, code, offset in sorted(_FIELDS, key=lambda field: field[2]):
        fmt += f"{offset - pos}x{code}" if offset > pos else code
        pos = offset + struct.calcsize("=" + code)
    return struct.Struct(fmt), tuple(name for name, _code, _offset in sorted(_FIELDS, key=lambda field: field[2]))


_WHOLE, _WHOLE_NAMES = _whole_layout()


def read_state(sock: socket.socket) -> TcpState:
    """The congestion state of a connected TCP socket (OSError if it is none)."""
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES)
    return parse_fields(raw_fields(raw), congestion_control(sock))


def congestion_control(sock: socket.socket) -> str:
    return sock.getsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, 16).split(b"\0", 1)[0].decode("ascii", "replace")


def raw_fields(raw: bytes) -> dict[str, int | None]:
    """The integers of the fields read, from a TCP_INFO buffer (None: past what this kernel returned)."""
    if len(raw) >= _WHOLE.size:
        return dict(zip(_WHOLE_NAMES, _WHOLE.unpack_from(raw), strict=True))
    return {name: layout.unpack_from(raw, offset)[0] if len(raw) >= offset + layout.size else None
            for name, layout, offset in _LAYOUTS}


def parse_fields(fields: dict[str, int | None], algorithm: str) -> TcpState:
    """TcpState from the raw tcp_info integers (split out so that it can be checked without a socket)."""
    return TcpState(**state_fields(fields, algorithm))


def state_fields(fields: dict[str, int | None], algorithm: str) -> dict[str, Any]:
    """TcpState's fields (its to_dict(), the record's form) from the raw tcp_info integers."""

    def need(name: str) -> int:
        value = fields.get(name)
        if value is None:
            raise OSError(f"TCP_INFO from this kernel lacks {name}")
        return value

    ssthresh = need("snd_ssthresh")
    min_rtt = fields.get("min_rtt_us")
    ca_state = need("ca_state")
    return {
        "congestion_control": algorithm,
        "ca_state": CA_STATES[ca_state] if ca_state < len(CA_STATES) else str(ca_state),
        "cwnd_segments": need("snd_cwnd"),
        "ssthresh_segments": None if ssthresh >= INFINITE_SSTHRESH else ssthresh,
        "mss_bytes": need("snd_mss"),
        "rtt_ms": need("rtt_us") / 1000,
        "rttvar_ms": need("rttvar_us") / 1000,
        "min_rtt_ms": None if min_rtt in (None, 0xFFFFFFFF) else min_rtt / 1000,
        "rto_ms": need("rto_us") / 1000,
        "idle_ms": float(need("last_data_sent_ms")),
        "unacked_segments": need("unacked"),
        "total_retrans": need("total_retrans"),
        "peer_window_bytes": fields.get("snd_wnd"),
    }


def out_of_order_in(raw: bytes | None) -> int | None:
    """tcpi_rcv_ooopack of a TCP_INFO buffer; None without one, or where the kernel does not count."""
    if raw is None or len(raw) < _RCV_OOOPACK_OFFSET + _RCV_OOOPACK.size:
        return None
    return int(_RCV_OOOPACK.unpack_from(raw, _RCV_OOOPACK_OFFSET)[0])


def out_of_order_packets(sock: socket.socket) -> int | None:
    """Packets this socket has received out of order so far (a loss or a reordering leaves a hole that later
    packets wait behind); None where the kernel does not count them."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES)
    except (OSError, AttributeError):
        return None
    return out_of_order_in(raw)


def try_read_state(sock: socket.socket) -> dict[str, Any] | None:
    """read_state as a record field: None where the socket or kernel cannot tell (not TCP, not Linux)."""
    try:
        return read_state(sock).to_dict()
    except (OSError, AttributeError, struct.error):
        return None


class SocketInfo:
    """TCP_INFO of one connected socket, read the way the nodes read it around every inference, inside the
    testbed's own share of it (docs/METRICS.md): each reading is one getsockopt, and the sender's state and the
    receiver's out-of-order count both come from that one buffer. The congestion control's name is read once: a
    socket keeps the algorithm it was given when it was created unless a program sets another on it
    (TCP_CONGESTION), which the nodes never do."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._algorithm: str | None = None
        try:  # now, with the connection: a state decoded later (after a window, or the socket closed) needs it
            self._algorithm = congestion_control(sock)
        except (OSError, AttributeError):
            pass  # not TCP (then there is no state), or asked again at the first state()

    def read(self) -> bytes | None:
        """The TCP_INFO buffer now, None where the socket has none (not TCP, not Linux)."""
        try:
            return self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES)
        except (OSError, AttributeError):
            return None

    def state(self, raw: bytes | None) -> dict[str, Any] | None:
        """The sender's state in a buffer `read()` returned, as a record field (try_read_state's form)."""
        if raw is None:
            return None
        try:
            if self._algorithm is None:
                self._algorithm = congestion_control(self.sock)
            return state_fields(raw_fields(raw), self._algorithm)
        except (OSError, AttributeError, struct.error):
            return None

"""When the kernel received the bytes a `recv` returns, on the nodes' clock (CLOCK_MONOTONIC).

A node that stamps a byte when its `recv` returns counts, on top of the network, however long its reading thread
waited to be scheduled after the packet arrived: 3-5 ms at times on a busy 2-vCPU host, which would be charged to
the delivery time. With SO_TIMESTAMPNS the kernel stamps each received packet (CLOCK_REALTIME) and TCP's
`recvmsg` hands back the stamp of the last packet it read from (Linux tcp_recv_timestamp); that packet holds the
last byte returned. The stamp is moved to CLOCK_MONOTONIC with the REALTIME - MONOTONIC offset read right after
the call (sub-microsecond apart; a wall-clock step between the packet's arrival and the read would shift it, so a
converted stamp later than the read itself is discarded).

Wall-clock steps: the conversion is exact only if the REALTIME - MONOTONIC offset did not change between the
packet's arrival and the read. On this project's VM the guest's wall clock is at times stepped by 0.5 ms every
100 ms while it catches up with the host (measured 2026-12-03: 266 steps in 20 s), and a stamp converted across
such a step is off by the step. So `ReceiveClock` samples the offset when a transfer is marked and at every read,
and gives no kernel stamp for a transfer during which it changed by more than STEP_TOLERANCE_NS.

The last packet read is the last to arrive only when the packets came in order. After a loss (or a reordering)
the packets behind the hole wait in TCP's out-of-order queue, and the one that fills the hole, which arrives
last, need not be the last one read. So `ReceiveClock` counts the socket's out-of-order packets (TCP_INFO) and
gives no kernel stamp for a transfer that had any: then the read time, a bound from above, is what is left.
"""

from __future__ import annotations

import platform
import socket
import struct
import time

from splitbed.host.tcpinfo import SocketInfo, out_of_order_in
from splitbed.nodes.clock import now_ns

# SO_TIMESTAMPNS (= SCM_TIMESTAMPNS): 35 in asm-generic/socket.h, which x86, arm, arm64, riscv, powerpc, s390,
# mips and alpha share; sparc and parisc number their options differently and get no kernel stamps here.
SO_TIMESTAMPNS = None if platform.machine().startswith(("sparc", "parisc")) else 35
_TIMESPEC = struct.Struct("@qq")  # struct timespec on a 64-bit kernel ABI: tv_sec, tv_nsec
ANCILLARY_BYTES = socket.CMSG_SPACE(_TIMESPEC.size)
# Slack for the offset sampling between the two clock reads: a stamp up to this far after the read is rounding.
CONVERSION_SLACK_NS = 50_000
# A change of the REALTIME - MONOTONIC offset above this is a wall-clock step (sampling jitter is ~1 us).
STEP_TOLERANCE_NS = 20_000


# Why a transfer's end fell back from the kernel's stamp of its own last byte to the node's read (or, one reason, to
# a later unit's stamp) (the record's `delivery_end_reason`,
# `downlink_end_reason`; docs/METRICS.md, "Receive stamps").
STAMPING_OFF = "stamping_off"          # this socket cannot have its received data stamped (platform, setsockopt)
UNSTAMPED = "unstamped"                # the packet holding the last byte came without a stamp
STAMP_AFTER_READ = "stamp_after_read"  # the stamp converted to a time after the read: a wall-clock step between
OUT_OF_ORDER = "out_of_order"          # packets arrived out of order during the transfer (a loss, a reordering)
NO_ORDER_COUNT = "no_order_count"      # the kernel does not count out-of-order packets, so order is unknown
CLOCK_STEP = "clock_step"              # the wall clock was stepped during the transfer
READ_CONTINUED = "read_continued"      # the unit's last byte was not the last byte of its read (local node)
USERSPACE_TRANSPORT = "userspace_transport"  # a userspace stack (QUIC) hands the bytes over: no kernel stamp of them
# Not a fall back to the read: a split RESULT's leading unit read with its RESULT_REST, which ended the read. The
# read's stamp (the RESULT_REST's arrival) is an upper bound on the leading unit's, and the transfer ends there.
BOUNDED_BY_REST = "bounded_by_rest"
READ_REASONS = (STAMPING_OFF, UNSTAMPED, STAMP_AFTER_READ, OUT_OF_ORDER, NO_ORDER_COUNT, CLOCK_STEP, READ_CONTINUED,
                USERSPACE_TRANSPORT)  # the transfer ends at the read
END_REASONS = (*READ_REASONS, BOUNDED_BY_REST)


OFFSET_READ_TRIES = 5
OFFSET_READ_TIGHT_NS = 5_000


def wall_offset_ns() -> int:
    """CLOCK_REALTIME - CLOCK_MONOTONIC now: constant unless the wall clock is stepped. The REALTIME read is
    bracketed by two MONOTONIC reads and taken against their midpoint, from the tightest of a few tries: a thread
    preempted between two plain reads (a descheduled vCPU) would otherwise see a false step of the preemption's
    length (seen here: +-0.1 ms pairs)."""
    best_width, best_offset = None, 0
    for _ in range(OFFSET_READ_TRIES):
        before = now_ns()
        wall = time.clock_gettime_ns(time.CLOCK_REALTIME)
        after = now_ns()
        if best_width is None or after - before < best_width:
            best_width, best_offset = after - before, wall - (before + after) // 2
        if best_width <= OFFSET_READ_TIGHT_NS:
            break
    return best_offset


def enable(sock: socket.socket) -> bool:
    """Ask the kernel to stamp this socket's received data; False where it cannot (then reads are stamped)."""
    if SO_TIMESTAMPNS is None or struct.calcsize("@l") != 8:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def recv_into(sock: socket.socket, buf: bytearray, enabled: bool) -> tuple[int, int, int | None]:
    """Like ``sock.recv_into(buf)``; returns (bytes read, CLOCK_MONOTONIC ns of the read, CLOCK_MONOTONIC ns at
    which the kernel received the last packet read, or None when no usable kernel stamp came with the data)."""
    n, t_read, stamp, _why = recv_into_explained(sock, buf, enabled)
    return n, t_read, stamp


def recv_into_explained(sock: socket.socket, buf: bytearray,
                        enabled: bool) -> tuple[int, int, int | None, str | None]:
    """`recv_into`, plus why no stamp came (one of END_REASONS; None when there is a stamp)."""
    n, t_read, read = _recv_raw(sock, buf, enabled)
    return (n, t_read, *decode_stamp(read))


# What a read leaves for its kernel stamp: (the ancillary data, the REALTIME - MONOTONIC offset read right after the
# call, the read's time), or (None, why there is none) where the socket does not stamp. Decoded (decode_stamp) when
# the stamp is wanted: a node wants one stamp per transfer, often well after the read, outside its measured windows.
StampSource = tuple[list[tuple[int, int, bytes]], int, int] | tuple[None, str | None]


def _recv_raw(sock: socket.socket, buf: bytearray, enabled: bool) -> tuple[int, int, StampSource]:
    """(bytes read, CLOCK_MONOTONIC ns of the read, what its stamp is decoded from)."""
    if not enabled:
        n = sock.recv_into(buf)
        return n, now_ns(), (None, STAMPING_OFF)
    n, ancillary, _flags, _addr = sock.recvmsg_into([buf], ANCILLARY_BYTES)
    t_read = now_ns()
    return n, t_read, (ancillary, wall_offset_ns(), t_read)


def decode_stamp(source: StampSource) -> tuple[int | None, str | None]:
    """(the kernel stamp of a read's last packet on CLOCK_MONOTONIC, or None and why: END_REASONS)."""
    if source[0] is None:
        return None, source[1]
    return _kernel_stamp(*source)


def _kernel_stamp(ancillary: list[tuple[int, int, bytes]], realtime_minus_monotonic: int,
                  t_read: int) -> tuple[int | None, str | None]:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            if seconds <= 0:
                return None, UNSTAMPED  # the packet was never stamped
            stamp = seconds * 1_000_000_000 + nanoseconds - realtime_minus_monotonic
            if stamp > t_read + CONVERSION_SLACK_NS:
                return None, STAMP_AFTER_READ  # the wall clock stepped between arrival and read
            return min(stamp, t_read), None
    return None, UNSTAMPED


class ReceiveClock:
    """The receive side of one TCP socket: reads with their read time, and when the last byte of a transfer
    arrived (the kernel's stamp) if that can be known."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.info = SocketInfo(sock)  # TCP_INFO: out-of-order counts here, the sender's state for the nodes
        self.enabled = enable(sock)
        self.off_reason = STAMPING_OFF  # why there are no stamps when not enabled
        self.last_read: StampSource = (None, None)  # what the latest read's stamp is decoded from
        self._stamp: tuple[int | None, str | None] | None = (None, None)  # decoded, once asked
        self._out_of_order_mark = out_of_order_in(self.info.read())
        self._offset_mark = wall_offset_ns()
        self.clock_stepped = False  # the wall clock was stepped since mark(): no stamp can be converted

    def recv_into(self, buf: bytearray) -> tuple[int, int]:
        """``sock.recv_into(buf)``; returns (bytes read, CLOCK_MONOTONIC ns of the read)."""
        n, t_read, self.last_read = _recv_raw(self.sock, buf, self.enabled)
        self._stamp = None
        offset = self.last_read[1] if self.last_read[0] is not None else wall_offset_ns()
        if abs(offset - self._offset_mark) > STEP_TOLERANCE_NS:
            self.clock_stepped = True
        return n, t_read

    @property
    def kernel_ns(self) -> int | None:
        """The latest read's kernel stamp (None: no usable one)."""
        return self._decoded()[0]

    @property
    def no_stamp_reason(self) -> str | None:
        """Why the latest read came without a kernel stamp (END_REASONS), None when it has one."""
        return self._decoded()[1]

    def _decoded(self) -> tuple[int | None, str | None]:
        if self._stamp is None:
            self._stamp = decode_stamp(self.last_read)
        return self._stamp

    def mark(self, tcp_info: bytes | None = None) -> None:
        """A transfer begins: out-of-order packets and wall-clock steps are counted from here. ``tcp_info``: a
        TCP_INFO buffer just read (``info.read()``) by a caller that also wants the sender's state now."""
        self._out_of_order_mark = out_of_order_in(self.info.read() if tcp_info is None else tcp_info)
        self._offset_mark = wall_offset_ns()
        self.clock_stepped = False

    def arrival(self, kernel_ns: int | None, missing_reason: str | None = None,
                tcp_info: bytes | None = None) -> tuple[int | None, int | None, str | None]:
        """(``kernel_ns`` if it is when the transfer's last byte arrived, else None; packets that arrived out of
        order since mark(), None where the kernel does not count them; why there is no stamp, one of END_REASONS,
        None when there is one). No stamp either when the wall clock was stepped since mark().
        ``missing_reason``: why ``kernel_ns`` is None (default: why the latest read had no stamp). ``tcp_info``: a
        TCP_INFO buffer just read (``info.read()``) by a caller that also wants the sender's state now."""
        now = out_of_order_in(self.info.read() if tcp_info is None else tcp_info)
        late = None if now is None or self._out_of_order_mark is None else \
            (now - self._out_of_order_mark) & 0xFFFFFFFF  # a u32 counter
        if not self.enabled:
            why = self.off_reason
        elif late:
            why = OUT_OF_ORDER
        elif kernel_ns is None:
            why = missing_reason or self.no_stamp_reason or UNSTAMPED
        elif late is None:
            why = NO_ORDER_COUNT
        elif self.clock_stepped:
            why = CLOCK_STEP
        else:
            return kernel_ns, late, None
        return None, late, why

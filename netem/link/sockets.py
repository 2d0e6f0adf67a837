"""The link's AF_PACKET sockets: opening and tuning them, kernel drop counts, receive timestamps."""

from __future__ import annotations

import socket
import struct

from netem.errors import LinkError
from netem.link.options import ForwarderOptions

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35  # SO_TIMESTAMPNS_OLD: struct timespec of two longs (64-bit Linux)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
TIMESPEC = struct.Struct("qq")
TIMESTAMP_CMSG_SPACE = socket.CMSG_SPACE(TIMESPEC.size)


def read_socket_drops(sock: socket.socket) -> int:
    """Frames the kernel dropped because this packet socket's receive buffer was full, since the last call."""
    try:
        raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
    except OSError:
        return 0
    _packets, drops = struct.unpack("II", raw)
    return int(drops)


def open_packet_socket(ifname: str, options: ForwarderOptions) -> socket.socket:
    """A non-blocking AF_PACKET socket bound to ``ifname`` for every EtherType, tuned by ``options``."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    except PermissionError as exc:
        raise LinkError(f"cannot open an AF_PACKET socket (needs root / CAP_NET_RAW): {exc}") from exc
    try:
        sock.bind((ifname, ETH_P_ALL))
        if options.ignore_outgoing:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        if options.qdisc_bypass:
            sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        if options.socket_buffer_bytes:
            # SO_*BUFFORCE ignores net.core.[rw]mem_max (we are root); fall back to the capped call otherwise.
            for force, plain in ((33, socket.SO_RCVBUF), (32, socket.SO_SNDBUF)):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, force, options.socket_buffer_bytes)
                except OSError:
                    sock.setsockopt(socket.SOL_SOCKET, plain, options.socket_buffer_bytes)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise LinkError(f"cannot set up the packet socket on interface {ifname!r}: {exc}") from exc
    return sock


def enable_timestamps(*socks: socket.socket) -> bool:
    """Ask the kernel to stamp every received frame (SO_TIMESTAMPNS); False if a socket refuses."""
    try:
        for sock in socks:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True

"""Burst sender and receiver for tests/integration/netem/test_link_live_update.py (run as scripts, one per side).

    python live_update_peers.py recv HOST PORT          # edge side: prints "ready", serves until killed
    python live_update_peers.py send HOST PORT SIZE     # ue side: one command per stdin line, one JSON line each

Sender commands: ``burst KEY`` sends SIZE bytes (after an 8-byte length header) on the connection named KEY,
opening it on first use, and waits for the receiver's reply: the CLOCK_MONOTONIC time at which the last byte
arrived (one clock for all namespaces), so ``delivery_ms`` is first byte handed to TCP -> last byte read by the
receiving application, the delivery time of docs/METRICS.md. The line also carries the socket's TCP_INFO
(congestion control, RTT, cwnd, retransmissions) and, for BBR, its bandwidth and min-RTT estimates.
``quit`` ends the sender.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time

MAX_BURST_BYTES = 64 << 20
TCP_CONGESTION = 13
TCP_CC_INFO = 26
TCP_INFO_BYTES = 232


def recv_exact(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        count = sock.recv_into(view[got:])
        if count == 0:
            raise EOFError("peer closed")
        got += count
    return bytes(buffer)


def serve_connection(conn: socket.socket) -> None:
    with conn:
        try:
            while True:
                (size,) = struct.unpack("!Q", recv_exact(conn, 8))
                if size > MAX_BURST_BYTES:
                    raise ValueError(f"burst of {size} bytes is over the {MAX_BURST_BYTES}-byte cap")
                left = size
                chunk = bytearray(min(size, 1 << 20))
                while left:
                    count = conn.recv_into(chunk, min(left, len(chunk)))
                    if count == 0:
                        raise EOFError("peer closed mid-burst")
                    left -= count
                conn.sendall(struct.pack("!Q", time.monotonic_ns()))
        except (EOFError, OSError):
            pass


def receiver(host: str, port: int) -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen(8)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()


def tcp_state(sock: socket.socket) -> dict[str, object]:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES)
    algorithm = sock.getsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, 16).rstrip(b"\0").decode()
    state: dict[str, object] = {
        "cc": algorithm,
        "rto_ms": struct.unpack_from("=I", info, 8)[0] / 1000,
        "rtt_ms": struct.unpack_from("=I", info, 68)[0] / 1000,
        "ssthresh": struct.unpack_from("=I", info, 76)[0],
        "cwnd": struct.unpack_from("=I", info, 80)[0],
        "total_retrans": struct.unpack_from("=I", info, 100)[0],
    }
    if algorithm == "bbr":  # struct tcp_bbr_info: bw_lo, bw_hi (bytes/s), min_rtt (us), pacing/cwnd gain
        bw_lo, bw_hi, min_rtt_us, _, _ = struct.unpack("=5I", sock.getsockopt(socket.IPPROTO_TCP, TCP_CC_INFO, 20))
        state["bbr_bw_mbit"] = round(((bw_hi << 32) | bw_lo) * 8 / 1e6, 2)
        state["bbr_min_rtt_ms"] = min_rtt_us / 1000
    return state


def sender(host: str, port: int, size: int) -> None:
    if not 0 < size <= MAX_BURST_BYTES:
        raise SystemExit(f"size {size} must be in 1..{MAX_BURST_BYTES}")
    payload = bytes(size)
    connections: dict[str, socket.socket] = {}
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] != "burst" or len(words) != 2:
            raise SystemExit(f"unknown command {line!r}: expected 'burst KEY' or 'quit'")
        key = words[1]
        if key not in connections:
            connections[key] = socket.create_connection((host, port), timeout=30)
        sock = connections[key]
        start = time.monotonic_ns()
        sock.sendall(struct.pack("!Q", size) + payload)
        (arrived,) = struct.unpack("!Q", recv_exact(sock, 8))
        done = time.monotonic_ns()
        record = {"key": key, "delivery_ms": (arrived - start) / 1e6, "reply_ms": (done - start) / 1e6,
                  **tcp_state(sock)}
        print(json.dumps(record), flush=True)
    for sock in connections.values():
        sock.close()


if __name__ == "__main__":
    if sys.argv[1] == "recv":
        receiver(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "send":
        sender(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit("usage: live_update_peers.py recv HOST PORT | send HOST PORT SIZE")

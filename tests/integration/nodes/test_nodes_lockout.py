"""Slot lock-out against a real remote node with 16 slots: 16 clients that configure and then say nothing, and
16 that drip (8 their HELLO, 8 a data unit), all holding connections; a legitimate client must still get in
and be served, several times over, and every refusal, eviction and timeout must be in the node's log with
its reason. (Before admission control, the idle sessions alone held every slot for the whole idle timeout.)"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from nodes_harness import RawClient, RemoteProcess, start_remote

from splitbed.nodes import protocol as proto
from splitbed.nodes.protocol import MsgType

PARTITION = 5
SLOTS = 16
ARGS = ["--max-sessions", str(SLOTS), "--evict-after", "1", "--unit-timeout-base", "2", "--unit-min-rate",
        "1000000", "--read-timeout", "1.5", "--config-timeout", "6", "--idle-timeout", "30",
        "--shutdown-grace", "5"]


@pytest.fixture(scope="module")
def full_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteProcess]:
    server = start_remote(tmp_path_factory.mktemp("lockout"), *ARGS)
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0, server.log()[-3000:]


class Holder(threading.Thread):
    """One hostile connection that holds a slot as cheaply as it can, until the server closes it (once: it
    does not reconnect). `mode`: idle (configure, then silence), drip-hello, drip-data."""

    def __init__(self, node: RemoteProcess, mode: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.node, self.mode, self.stop = node, mode, stop
        self.outcome = "running"

    def run(self) -> None:
        try:
            with RawClient(self.node.host, self.node.port, timeout=5) as client:
                if self.mode == "drip-hello":
                    hello = proto.encode_control(MsgType.HELLO, {"protocol_version": proto.PROTOCOL_VERSION})
                    self._drip(client.sock, hello)
                    return
                client.configure()
                if self.mode == "drip-data":
                    self._drip(client.sock, proto.pack_header(2, 100_000) + bytes(100_000))
                    return
                self._wait_closed(client.sock)
        except (OSError, AssertionError) as exc:  # refused busy at once, or closed while configuring
            self.outcome = f"closed ({type(exc).__name__})"

    def _drip(self, sock: socket.socket, data: bytes) -> None:
        for byte in data:
            if self.stop.is_set():
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                self.outcome = "closed"
                return
            time.sleep(0.3)

    def _wait_closed(self, sock: socket.socket) -> None:
        sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                if not sock.recv(65536):
                    self.outcome = "closed"
                    return
            except TimeoutError:
                continue
            except OSError:
                self.outcome = "closed"
                return


def test_a_legitimate_client_gets_in_while_32_clients_hold_connections(full_node: RemoteProcess) -> None:
    stop = threading.Event()
    holders = [Holder(full_node, "idle", stop) for _ in range(16)]
    holders += [Holder(full_node, mode, stop) for mode in ("drip-hello", "drip-data") for _ in range(8)]
    try:
        for holder in holders[:16]:
            holder.start()
        time.sleep(1.5)  # the idle ones hold every slot before the drippers come
        for holder in holders[16:]:
            holder.start()
        time.sleep(1.5)
        for attempt in range(3):
            with RawClient(full_node.host, full_node.port, timeout=30) as client:
                client.configure()  # a `busy` ERROR instead of the OFFER fails here
                arrays = client.tensors(PARTITION, seed=attempt)
                for rep in range(3):
                    kind, body = client.infer(PARTITION, arrays, aips_id=1, send_aips=rep == 0)
                    assert kind == MsgType.RESULT, body
    finally:
        stop.set()
        for holder in holders:
            holder.join(10)
    log = full_node.log()
    assert "evicting session" in log and "to admit" in log
    assert log.count("evicting session") >= 3  # one at least per legitimate connection
    assert "idle for" in log
    assert "did not arrive within the time its progress allows" in log  # the drippers were cut off


def test_refusals_are_logged_with_their_reason(full_node: RemoteProcess) -> None:
    """Fill every slot with sessions at work (a clock ping every 0.2 s: never idle for --evict-after): the next
    client gets `busy` with the reason, and the node logs it."""
    clients: list[RawClient] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def keep_busy() -> None:
        try:
            while not stop.is_set():
                for client in clients:
                    client.send(proto.encode_control(MsgType.CLOCK_PING, {"t1": time.monotonic_ns()}))
                    client.units += 1
                    kind, _ = client.read(10)
                    assert kind == MsgType.CLOCK_PONG
                time.sleep(0.2)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    pinger = threading.Thread(target=keep_busy)
    try:
        for _ in range(SLOTS):
            client = RawClient(full_node.host, full_node.port)
            client.configure()
            clients.append(client)
        pinger.start()
        time.sleep(1.5)  # the first sessions would be idle for --evict-after by now, were they not pinging
        with RawClient(full_node.host, full_node.port) as late:
            kind, body = late.read(5)
            assert kind == MsgType.ERROR and body["code"] == "busy" and body["fatal"], body
            assert "none idle for 1 s" in body["message"]
    finally:
        stop.set()
        if pinger.is_alive():
            pinger.join(30)
        for client in clients:
            client.close()
    assert not failures, failures
    deadline = time.monotonic() + 5
    while "refused a connection" not in full_node.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "busy: all 16 sessions are at work" in full_node.log()

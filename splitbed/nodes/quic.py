"""The QUIC binding (docs/PROTOCOL.md, section 8): the same session bytes on one bidirectional QUIC stream.

The session code of both nodes reads and writes an ordered byte stream (a socket). This binding runs aioquic in
an asyncio thread of the node's process and joins each QUIC connection's stream to one end of a socketpair; the
other end is what the session code gets, so the edge's guards (admission, memory budget, caps, timeouts, auth)
run unchanged on every byte, and the bytes on the stream are exactly the bytes a TCP session carries.

What differs from TCP, and is said in the records: no kernel receive stamps (the bytes leave a userspace stack),
no TCP_INFO (aioquic's loss and congestion figures instead), and the transport's CPU time is the node's own
(measured per inference, so a binding that cannot keep up with the link says so). aioquic grants flow-control
credit as data arrives, not as the application consumes it, so the bytes the bridge holds for a busy session are
reserved from the node's memory budget; a peer that overruns it is closed.

The certificate is made per run (an ECDSA P-256 key that never leaves memory, a self-signed certificate for
the listening address, valid one day); its PEM goes to the local node, which trusts nothing else.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from splitbed.nodes import messages, rxstamp
from splitbed.nodes.budget import BudgetRefused, MemoryBudget, Reservation
from splitbed.nodes.errors import NodeError, NodeTimeout, PeerClosed
from splitbed.nodes.messages import Message
from splitbed.nodes.wire import RECV_CHUNK, ControlReader, send_pieces

log = logging.getLogger("splitbed.nodes.quic")

ALPN = "splitbed-1"           # the application protocol: session protocol version 1 on QUIC
CONGESTION_CONTROLLERS = ("reno", "cubic")  # what aioquic implements
TRANSPORTS = ("tcp", "quic")
SESSION_STREAM = 0            # the client's first bidirectional stream carries the whole session
BRIDGE_CHUNK = 64 * 1024
BUDGET_ERROR = 0x1            # QUIC application error code: the bridge's memory reservation was refused
PROTOCOL_ERROR = 0x2          # data on a stream other than the session's


def make_certificate(host: str) -> tuple[Any, Any, bytes]:
    """(certificate, private key, certificate PEM) for `host` (an address or a name), made now."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"splitbed edge {host}")])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key, cert.public_bytes(serialization.Encoding.PEM)


UDP_BUFFER_BYTES = 4 << 20  # a userspace receiver falls behind in bursts: the kernel's default UDP buffer drops them
SO_RCVBUFFORCE, SO_SNDBUFFORCE = 33, 32  # Linux: above net.core.rmem_max/wmem_max (CAP_NET_ADMIN)


def size_buffers(sock: Any) -> int | None:
    """Give the UDP socket UDP_BUFFER_BYTES each way (forced past the sysctl cap where the process may); returns
    the receive buffer the kernel granted (what the record says), None where unreadable."""
    for forced, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, UDP_BUFFER_BYTES)
        except OSError:
            try:
                sock.setsockopt(socket.SOL_SOCKET, plain, UDP_BUFFER_BYTES)
            except OSError:
                pass
    try:
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    except OSError:
        return None


def _configuration(*, is_client: bool, congestion: str) -> Any:
    from aioquic.quic.configuration import QuicConfiguration

    if congestion not in CONGESTION_CONTROLLERS:
        raise ValueError(f"congestion controller {congestion!r}: aioquic has {', '.join(CONGESTION_CONTROLLERS)}")
    return QuicConfiguration(is_client=is_client, alpn_protocols=[ALPN], congestion_control_algorithm=congestion,
                             idle_timeout=660.0)  # above the edge's idle timeout: the session code decides


def quic_counters(quic: Any) -> dict[str, int]:
    """Connection-wide figures aioquic keeps: packets sent, packets declared lost (each one's frames are sent
    again), and the congestion window now (bytes)."""
    rec = quic._loss  # aioquic's QuicPacketRecovery: no public accessor in 1.x
    return {"packets_sent": int(getattr(quic, "_splitbed_sent", 0)),
            "packets_lost": int(getattr(quic, "_splitbed_lost", 0)),
            "cwnd_bytes": int(getattr(rec, "congestion_window", 0) or 0)}


def _count_packets(quic: Any) -> None:
    """Wrap the connection's recovery so that sent and lost packets are counted (aioquic keeps no totals)."""
    rec = quic._loss
    quic._splitbed_sent = 0
    quic._splitbed_lost = 0
    on_sent, on_lost = rec.on_packet_sent, rec._on_packets_lost

    def sent(*args: Any, **kwargs: Any) -> Any:
        quic._splitbed_sent += 1
        return on_sent(*args, **kwargs)

    def lost(*args: Any, **kwargs: Any) -> Any:
        packets = kwargs.get("packets", args[0] if args else [])
        quic._splitbed_lost += len(packets)
        return on_lost(*args, **kwargs)

    rec.on_packet_sent = sent
    rec._on_packets_lost = lost


class _Bridge:
    """One QUIC stream joined to one end of a socketpair, in the event loop's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: Any, stream_id: int,
                 budget: MemoryBudget | None, what: str) -> None:
        self.loop, self.protocol, self.stream_id = loop, protocol, stream_id
        self.inner, self.outer = socket.socketpair()  # outer: what the session code reads and writes
        self.inner.setblocking(False)
        self.pending = bytearray()  # stream bytes the session code has not taken yet
        self.reservation: Reservation | None = None
        self.budget, self.what = budget, what
        self.peer_finished = False
        self.closed = False
        loop.add_reader(self.inner.fileno(), self._downstream)

    # stream -> session code
    def deliver(self, data: bytes, end_stream: bool) -> None:
        if self.closed:
            return
        if data:
            if self.budget is not None:
                try:
                    if self.reservation is None:
                        self.reservation = self.budget.reserve(len(data), self.what)
                    else:
                        self.reservation.grow(len(data))
                except BudgetRefused as exc:
                    log.warning("%s: closed: %s", self.what, exc.message)
                    self.protocol.abort(BUDGET_ERROR, "memory_budget: " + exc.message)
                    return
            self.pending += data
        self.peer_finished = self.peer_finished or end_stream
        self._flush()

    def _flush(self) -> None:
        while self.pending:
            try:
                n = self.inner.send(memoryview(self.pending)[:BRIDGE_CHUNK])
            except BlockingIOError:
                self.loop.add_writer(self.inner.fileno(), self._writable)
                return
            except OSError:  # the session code closed its end
                self.close()
                return
            del self.pending[:n]
        if self.reservation is not None:
            self.reservation.release()
            self.reservation = None
        if self.peer_finished:
            try:
                self.inner.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _writable(self) -> None:
        self.loop.remove_writer(self.inner.fileno())
        self._flush()

    # session code -> stream
    def _downstream(self) -> None:
        try:
            data = self.inner.recv(RECV_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the session code closed: end the stream and the connection
            self.close()
            self.protocol.finish(self.stream_id)
            return
        self.protocol.send(self.stream_id, data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.loop.remove_reader(self.inner.fileno())
            self.loop.remove_writer(self.inner.fileno())
        except (ValueError, OSError):
            pass
        self.inner.close()
        if self.reservation is not None:
            self.reservation.release()
            self.reservation = None


class _LoopThread:
    """An asyncio event loop in a daemon thread (the node's other threads call into it thread-safely)."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout_s: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def cpu_ns(self) -> int | None:
        """CPU time the loop's thread (the whole QUIC stack) has used so far."""
        ident = self.thread.ident
        try:
            return time.clock_gettime_ns(time.pthread_getcpuclockid(ident)) if ident else None
        except (OSError, AttributeError):
            return None

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5.0)
        if not self.thread.is_alive():
            self.loop.close()


def _protocol_class() -> Any:
    from aioquic.asyncio import QuicConnectionProtocol
    from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, StreamDataReceived

    class BridgeProtocol(QuicConnectionProtocol):
        """Either end: stream 0 <-> a socketpair (the server makes its bridge when the first bytes come)."""

        on_session: Callable[[BridgeProtocol], _Bridge | None] | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            _count_packets(self._quic)
            self.bridge: _Bridge | None = None
            self.terminated: str | None = None
            self.resumed: bool | None = None

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, HandshakeCompleted):
                self.resumed = bool(event.session_resumed)
            elif isinstance(event, StreamDataReceived):
                if event.stream_id != SESSION_STREAM:
                    self.abort(PROTOCOL_ERROR, f"data on stream {event.stream_id}; the session is on stream 0")
                    return
                if self.bridge is None and self.on_session is not None:
                    self.bridge = self.on_session(self)
                if self.bridge is not None:
                    self.bridge.deliver(event.data, event.end_stream)
            elif isinstance(event, ConnectionTerminated):
                self.terminated = f"error {event.error_code}: {event.reason_phrase}"
                if self.bridge is not None:
                    self.bridge.peer_finished = True
                    if not self.bridge.pending:
                        self.bridge.close()

        def send(self, stream_id: int, data: bytes) -> None:
            self._quic.send_stream_data(stream_id, data)
            self.transmit()

        def finish(self, stream_id: int) -> None:
            self._quic.close()
            self.transmit()

        def abort(self, code: int, reason: str) -> None:
            self._quic.close(error_code=code, reason_phrase=reason[:200])
            self.transmit()
            if self.bridge is not None:
                self.bridge.close()

    return BridgeProtocol


# --- the edge -------------------------------------------------------------------------------------------------

@dataclass
class QuicListener:
    """The remote node's QUIC endpoint: each connection's stream becomes a socket handed to `on_connection`
    (which runs the same admission and session code as a TCP connection)."""

    host: str
    port: int
    on_connection: Callable[[socket.socket, tuple[Any, ...]], None]
    budget: MemoryBudget | None = None
    congestion: str = "reno"
    cert_pem: bytes = b""
    _runner: _LoopThread | None = field(default=None, repr=False)
    _server: Any = field(default=None, repr=False)

    def start(self) -> tuple[str, int]:
        from aioquic.asyncio import serve

        cert, key, self.cert_pem = make_certificate(self.host)
        config = _configuration(is_client=False, congestion=self.congestion)
        config.certificate, config.private_key = cert, key
        base = _protocol_class()
        listener = self

        class EdgeProtocol(base):  # type: ignore[misc, valid-type]
            def on_session(self, protocol: Any) -> _Bridge | None:
                paths = protocol._quic._network_paths  # the peer's address (aioquic keeps it per path)
                peer = paths[0].addr if paths else ("?", 0)
                bridge = _Bridge(listener._runner.loop, protocol, SESSION_STREAM,  # type: ignore[union-attr]
                                 listener.budget, f"QUIC session from {peer[0]}:{peer[1]}")
                protocol.edge_stats = lambda: quic_counters(protocol._quic)
                listener.on_connection(bridge.outer, tuple(peer[:2]))
                return bridge

        self._runner = _LoopThread("quic-edge")
        self._server = self._runner.call(serve(self.host, self.port, configuration=config,
                                               create_protocol=EdgeProtocol), 10.0)
        size_buffers(self._server._transport.get_extra_info("socket"))
        sockname = self._server._transport.get_extra_info("sockname")
        self.port = int(sockname[1])
        return self.host, self.port

    def stop(self) -> None:
        if self._runner is None:
            return
        if self._server is not None:
            self._runner.loop.call_soon_threadsafe(self._server.close)
        self._runner.stop()
        self._runner = None


# --- the UE ---------------------------------------------------------------------------------------------------

class QuicTransport:
    """The UE's end of a session over QUIC (nodes.transport.UeTransport): the session's bytes go through a
    socketpair into stream 0 of one QUIC connection; replies come back the same way."""

    binding = "quic"

    def __init__(self, runner: _LoopThread, protocol: Any, bridge: _Bridge, handshake_ms: float,
                 congestion: str, client: Any) -> None:
        self.runner, self.protocol, self.bridge = runner, protocol, bridge
        self.sock = bridge.outer
        self.reader = ControlReader(self.sock)
        self.reader.rx.enabled = False  # a socketpair's stamps are the bridge's, never the network's
        self.handshake_ms = handshake_ms
        self.congestion = congestion
        self._client = client
        self._cpu_mark: int | None = None

    @classmethod
    def connect(cls, host: str, port: int, timeout_s: float, *, ca_pem: bytes,
                congestion: str = "reno") -> QuicTransport:
        from aioquic.asyncio import connect

        config = _configuration(is_client=True, congestion=congestion)
        config.load_verify_locations(cadata=ca_pem)
        config.server_name = host
        runner = _LoopThread("quic-ue")
        base = _protocol_class()

        async def open_session() -> tuple[Any, Any, _Bridge, float]:
            started = time.monotonic()
            client = connect(host, port, configuration=config, create_protocol=base, wait_connected=True)
            protocol: Any = await client.__aenter__()
            handshake_ms = (time.monotonic() - started) * 1e3
            protocol.udp_rcvbuf = size_buffers(protocol._transport.get_extra_info("socket"))
            bridge = _Bridge(runner.loop, protocol, SESSION_STREAM, None, "QUIC session")
            protocol.bridge = bridge
            return client, protocol, bridge, handshake_ms

        try:
            client, protocol, bridge, handshake_ms = runner.call(open_session(), timeout_s)
        except TimeoutError:
            runner.stop()
            raise NodeTimeout(f"QUIC handshake with {host}:{port} did not finish within {timeout_s:g} s") from None
        except ConnectionError as exc:
            runner.stop()
            raise PeerClosed(f"QUIC connection to {host}:{port} failed: {exc}") from None
        except Exception as exc:
            runner.stop()
            raise NodeError(f"QUIC connection to {host}:{port} failed: {type(exc).__name__}: {exc}") from None
        return cls(runner, protocol, bridge, handshake_ms, congestion, client)

    def send(self, pieces: Sequence[bytes | bytearray | memoryview], timeout_s: float) -> int:
        return send_pieces(self.sock, pieces, timeout_s)

    def receive(self, timeout_s: float) -> tuple[Message, int, int]:
        unit, size, t_read = self.reader.read(timeout_s)
        return messages.decode(unit.unit_type, unit.payload), size, t_read

    def arrival(self) -> tuple[int | None, int | None, str | None]:
        return None, None, rxstamp.USERSPACE_TRANSPORT

    def mark(self) -> None:
        pass

    def marked_state(self) -> dict[str, Any] | None:
        return None

    def tcp_state(self) -> dict[str, Any] | None:
        return None

    def counters(self) -> dict[str, Any]:
        """Loss and congestion figures now, and the QUIC thread's CPU time (ns) so far."""
        figures: dict[str, Any] = self.runner.call(_counters(self.protocol), 5.0)
        figures["cpu_ns"] = self.runner.cpu_ns()
        return figures

    def describe(self) -> dict[str, Any]:
        return {"binding": "quic", "handshake_ms": round(self.handshake_ms, 3), "congestion_control": self.congestion,
                "streams": "one bidirectional stream per session (stream 0)", "implementation": _aioquic_version(),
                "udp_rcvbuf_bytes": getattr(self.protocol, "udp_rcvbuf", None)}

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

        async def shut() -> None:
            self.protocol.close()
            try:
                await asyncio.wait_for(self.protocol.wait_closed(), 2.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - closing: nothing left to report to
                pass
            self.bridge.close()

        try:
            self.runner.call(shut(), 3.0)
        except Exception:  # noqa: BLE001 - closing
            pass
        self.runner.stop()


async def _counters(protocol: Any) -> dict[str, Any]:
    return quic_counters(protocol._quic)


def _aioquic_version() -> str:
    try:
        import aioquic

        return f"aioquic {aioquic.__version__}"
    except ImportError:  # pragma: no cover
        return "aioquic ?"


def read_ca_file(path: str) -> bytes:
    """The edge's certificate PEM (what the local node trusts), capped before it is read."""
    size = os.stat(path).st_size
    if size > 64 * 1024:
        raise ValueError(f"{path}: {size} bytes is not a certificate (at most 64 KiB)")
    with open(path, "rb") as fh:
        return fh.read()

"""The remote inference node (edge): a TCP server running tail sub-models for local nodes.

One TCP connection is one session (docs/PROTOCOL.md), spoken by the edge session machine (edge_session) and
driven by an EdgeConnection (edge_connection): a configuration stage (HELLO, OFFER, clock ping-pongs, SELECT,
ACCEPT), then AIPS and intermediate data units through the format decoder (AIPS lifetime rules), or JSON-baseline
units when the session chose that carriage, each complete set of tensors answered by a RESULT.

This module is the node: what all sessions share (ServerState: models, the model lock, the memory budget,
admission, the OFFER) and the accept loop. Threads: the accept loop runs in the caller's thread; each connection
gets its own thread. Models are loaded once per process (at start, for every offered model) and each tail is
built once per partition; building and running models is serialised by one lock, so a measured remote inference
never contains another session's compute (the time spent waiting for the lock is reported as
remote_queue_wait_ms). Many UEs per edge are many connections over this one state.

Robustness: every read has a timeout (idle between units, read progress within a unit, and a whole-unit deadline
against slow drip); every length is capped from the header before anything is kept; a node that is full admits a
new client by evicting the longest idle or slowest session (admission); bad input gets an ERROR reply and, when
the stream can no longer be trusted, that connection is closed while the others go on.
SIGTERM: stop accepting, let in-flight inferences finish within the grace period, close idle sessions, exit 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from splitbed.devices import DeviceError
from splitbed.devices import load as load_device
from splitbed.devices.emulation import DeviceEmulator
from splitbed.models.onnx import is_onnx_path
from splitbed.models.registry import CAMERA_PARTITION
from splitbed.nodes import messages as m
from splitbed.nodes import protocol as proto
from splitbed.nodes.admission import Admission, AdmissionRefused, RatePolicy
from splitbed.nodes.budget import DEFAULT_BUDGET_BYTES, MemoryBudget
from splitbed.nodes.clock import boot_id
from splitbed.nodes.edge_connection import POLL_S, EdgeConnection
from splitbed.nodes.errors import ConfigurationError, NodeError
from splitbed.nodes.formatio import compression_profiles
from splitbed.nodes.metrics import software_versions
from splitbed.nodes.resources import ResourceMeter, gpu_info, host_info
from splitbed.nodes.runner import INFERENCE_CALL, ModelRunner
from splitbed.nodes.wire import send_pieces

log = logging.getLogger("splitbed.nodes.remote")

@dataclass
class RemoteConfig:
    """Everything the remote node is started with (CLI options map 1:1)."""

    host: str = "127.0.0.1"
    port: int = 0
    models: tuple[str, ...] = ("mobilenet_v2",)
    weights: str = "auto"
    engine: str = "tensorflow"  # inference runtime of registered models (splitbed.nodes.runner.ENGINES)
    max_unit_bytes: int = proto.DEFAULT_MAX_UNIT_BYTES
    read_timeout_s: float = 30.0        # no progress at all within a started unit
    idle_timeout_s: float = 600.0       # nothing at all between units
    unit_timeout_base_s: float = 30.0   # a unit may take base + its received bytes at the min rate
    unit_min_rate_bps: float = 65536.0  # bytes per second, against slow drip (slowloris)
    evict_after_s: float = 10.0         # node full: a session idle (or behind the min rate) this long may go
    config_timeout_s: float = 30.0      # the whole configuration stage
    send_timeout_s: float = 60.0
    max_sessions: int = 16
    shutdown_grace_s: float = 10.0
    warm: bool = False                  # build every partition's tail at start
    memory_budget_bytes: int = DEFAULT_BUDGET_BYTES  # shared by all sessions' units (splitbed.nodes.budget)
    secret: bytes | None = field(default=None, repr=False)  # peers must prove they hold it (splitbed.nodes.auth)
    max_batch: int = 1                  # samples per inference (the local node sends one image at a time)
    device: str = "host"                # device profile the tail emulates (splitbed.devices; host = none)
    transport: str = "tcp"              # tcp | quic (splitbed.nodes.quic; docs/PROTOCOL.md section 8)
    quic_congestion: str = "reno"       # the QUIC binding's congestion controller (aioquic: reno, cubic)

    def rate_policy(self) -> RatePolicy:
        return RatePolicy(self.unit_timeout_base_s, self.unit_min_rate_bps)


@dataclass
class ServerState:
    """What all sessions share: models, the inference lock, the resource meter, shutdown, statistics."""

    config: RemoteConfig
    runner: ModelRunner
    meter: ResourceMeter
    budget: MemoryBudget
    admission: Admission
    offer: m.Offer = field(default_factory=m.Offer)
    # Host, software and GPU of this node: for the records, sent in ACCEPT only (never to a peer that has not
    # completed the configuration stage, authenticated when the node requires it); not in the OFFER.
    server_info: dict[str, Any] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    sessions: dict[int, EdgeConnection] = field(default_factory=dict)
    sessions_lock: threading.Lock = field(default_factory=threading.Lock)
    served: int = 0

    def active_sessions(self) -> int:
        with self.sessions_lock:
            return len(self.sessions)


def offered_partitions(model: str, spec: Any) -> list[dict[str, Any]]:
    """The OFFER's partitions of one model: its candidates (splitbed/models/data/<model>.toml, or an `.onnx`
    file's cuts), then, for a registered model, the `camera` pseudo-partition (id 255: the uint8 camera image goes
    uplink, the edge preprocesses it and runs the whole model; splitbed.models.camera), which the edge takes too
    and a peer should not have to know of out of band. The camera's tail is a registered model's `input_layer`
    tail behind its preprocessing, which an `.onnx` file's cuts do not name, so its OFFER lists its cuts alone."""
    offered = [{"partition_id": p.partition_id, "name": p.name, "tensors": p.tensors} for p in spec.partitions]
    if not is_onnx_path(model):
        camera = CAMERA_PARTITION
        offered.append({"partition_id": camera.partition_id, "name": camera.name, "tensors": camera.tensors})
    return offered


class RemoteNode:
    """The server: binds, loads the offered models, accepts sessions until shutdown() or SIGTERM."""

    def __init__(self, config: RemoteConfig, *, runner: ModelRunner | None = None) -> None:
        self.config = config
        self.state = ServerState(config, runner or ModelRunner(weights=config.weights, engine=config.engine,
                                                               device=edge_emulator(config.device)),
                                 ResourceMeter(), MemoryBudget(config.memory_budget_bytes),
                                 Admission(config.max_sessions, config.rate_policy(), config.evict_after_s))
        self.listener: socket.socket | None = None
        self.quic: Any = None  # splitbed.nodes.quic.QuicListener with transport quic
        self.address: tuple[str, int] = (config.host, config.port)
        self._threads: list[threading.Thread] = []

    def prepare(self) -> None:
        """Load every offered model (and, with warm, every tail) and build the OFFER; before accepting."""
        runner = self.state.runner
        models: list[m.ModelOffer] = []
        for name in self.config.models:
            loaded = runner.load(name)
            spec = loaded.spec
            if self.config.warm:
                with runner.lock:
                    for part in spec.partitions:
                        runner.plan(name, part.partition_id)
            models.append(m.ModelOffer(name, runner.weights_info(name), list(spec.input_shape),
                                       offered_partitions(name, spec), runner.runtime_info(name)))
        self.state.server_info = {"versions": software_versions(), "host": dict(host_info()), "gpu": dict(gpu_info()),
                                  "device": None if runner.device is None else runner.device.describe()}
        cfg = self.config
        self.state.offer = m.Offer(
            proto.PROTOCOL_VERSION, boot_id(), tuple(models), compression_profiles(), list(proto.ENCODINGS),
            list(proto.RESULT_MODES),
            {"max_unit_bytes": cfg.max_unit_bytes, "max_control_bytes": proto.MAX_CONTROL_BYTES,
             "read_timeout_s": cfg.read_timeout_s, "idle_timeout_s": cfg.idle_timeout_s,
             "unit_timeout_base_s": cfg.unit_timeout_base_s, "unit_min_rate_bps": cfg.unit_min_rate_bps,
             "max_sessions": cfg.max_sessions, "memory_budget_bytes": cfg.memory_budget_bytes,
             "max_batch": cfg.max_batch},
            INFERENCE_CALL)

    def bind(self) -> tuple[str, int]:
        if self.config.transport == "quic":
            from splitbed.nodes.quic import QuicListener

            self.quic = QuicListener(self.config.host, self.config.port, self._start_session, self.state.budget,
                                     self.config.quic_congestion)
            self.address = self.quic.start()
            return self.address
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.config.host, self.config.port))
        listener.listen(64)
        listener.settimeout(POLL_S)
        self.listener = listener
        host, port = listener.getsockname()[:2]
        self.address = (host, port)
        return self.address

    def serve(self) -> None:
        """Accept sessions until shutdown() is called; then wind down within the grace period."""
        if self.quic is not None:  # connections arrive from the QUIC thread (_start_session)
            try:
                while not self.state.stopping.wait(POLL_S):
                    pass
            finally:
                self._wind_down()
                self.quic.stop()
            return
        assert self.listener is not None, "bind() first"
        try:
            while not self.state.stopping.is_set():
                try:
                    conn, peer = self.listener.accept()
                except TimeoutError:
                    continue
                except OSError as exc:
                    if self.state.stopping.is_set():
                        break
                    log.warning("accept failed: %s", exc)
                    continue
                self._start_session(conn, peer)
        finally:
            self.listener.close()
            self._wind_down()

    def _start_session(self, conn: socket.socket, peer: tuple[Any, ...]) -> None:
        if conn.family != socket.AF_UNIX:  # AF_UNIX: a QUIC session's bridge (splitbed.nodes.quic)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        where = f"{peer[0]}:{peer[1]}"
        try:
            slot, victim, why = self.state.admission.admit(where)
        except AdmissionRefused as exc:
            log.warning("refused a connection from %s: busy: %s", where, exc.reason)
            try:
                send_pieces(conn, [m.encode(m.Error(
                    "busy", f"the remote node serves at most {self.config.max_sessions} sessions at once and "
                    f"{exc.reason}; retry later", True))], 2.0)
            except (NodeError, OSError):
                pass
            conn.close()
            return
        if victim is not None:
            log.warning("evicting session %s from %s to admit %s: %s", victim.label, victim.peer, where, why)
        session = EdgeConnection(self.state, conn, peer, slot)
        thread = threading.Thread(target=self._run_session, args=(session,), name=f"session-{peer[1]}",
                                  daemon=True)
        with self.state.sessions_lock:
            self.state.sessions[id(session)] = session
            self.state.served += 1
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _run_session(self, session: EdgeConnection) -> None:
        try:
            session.run()
        finally:
            self.state.admission.leave(session.slot)
            with self.state.sessions_lock:
                self.state.sessions.pop(id(session), None)

    def shutdown(self) -> None:
        """Ask serve() to stop (safe from a signal handler or another thread)."""
        self.state.stopping.set()

    def _wind_down(self) -> None:
        deadline = time.monotonic() + self.config.shutdown_grace_s
        for thread in list(self._threads):
            thread.join(max(deadline - time.monotonic(), 0))
        with self.state.sessions_lock:
            left = list(self.state.sessions.values())
        for session in left:  # still mid-unit or mid-inference after the grace period: abort
            log.warning("session %s aborted at shutdown", session.session_id or session.peer)
            try:
                session.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in list(self._threads):
            thread.join(2.0)


def edge_emulator(name: str) -> DeviceEmulator:
    """The edge node's device (a ConfigurationError for an unknown profile or one that is not an edge's)."""
    try:
        return DeviceEmulator(load_device(name), "edge")
    except DeviceError as exc:
        raise ConfigurationError(str(exc)) from None


def run_remote(config: RemoteConfig, *, announce: Any = print) -> int:
    """Run a remote node until SIGTERM/SIGINT: prepare, bind, announce a ready line, serve. Returns 0."""
    node = RemoteNode(config)
    node.prepare()
    host, port = node.bind()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        node.shutdown()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    announce_ready(announce, host, port, config, node.quic.cert_pem.decode() if node.quic is not None else None)
    node.serve()
    log.info("remote node stopped after %d sessions", node.state.served)
    return 0


def announce_ready(announce: Any, host: str, port: int, config: RemoteConfig, quic_cert_pem: str | None = None) -> None:
    """The ready line; with QUIC it carries the certificate made for this run (public: the local node trusts it)."""
    import json
    import os

    line: dict[str, Any] = {"event": "ready", "host": host, "port": port, "pid": os.getpid(),
                            "models": list(config.models), "transport": config.transport}
    if quic_cert_pem is not None:
        line["quic_cert_pem"] = quic_cert_pem
    announce(json.dumps(line), flush=True)


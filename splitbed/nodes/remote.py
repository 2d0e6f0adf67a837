"""The remote inference node (edge): a TCP server running tail sub-models for local nodes.

One TCP connection is one session (docs/PROTOCOL.md): a configuration stage (HELLO, OFFER, clock ping-pongs,
SELECT, ACCEPT), then AIPS and intermediate data units through the format decoder (AIPS lifetime rules), or
JSON-baseline units when the session chose that carriage, each complete set of tensors answered by a RESULT.

Threads: the accept loop runs in the caller's thread; each connection gets its own thread. Models are loaded
once per process (at start, for every offered model) and each tail is built once per partition; building and
running models is serialised by one lock, so a measured remote inference never contains another session's
compute (the time spent waiting for the lock is reported as remote_queue_wait_ms).

Robustness: every read has a timeout (idle between units, read progress within a unit, and a whole-unit deadline
against slow drip); every length is capped from the header before anything is kept; bad input gets an ERROR
reply and, when the stream can no longer be trusted, that connection is closed while the others go on.
SIGTERM: stop accepting, let in-flight inferences finish within the grace period, close idle sessions, exit 0.
"""

from __future__ import annotations

import logging
import select
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import numpy as np

from netem.tcpinfo import try_read_state
from splitbed.devices import DeviceError
from splitbed.devices import load as load_device
from splitbed.devices.emulation import DeviceEmulator
from splitbed.nodes import logsafe, rxstamp
from splitbed.nodes import protocol as proto
from splitbed.nodes.admission import Admission, AdmissionRefused, RatePolicy, Slot
from splitbed.nodes.auth import ServerHandshake
from splitbed.nodes.budget import DEFAULT_BUDGET_BYTES, BudgetRefused, MemoryBudget, Reservation
from splitbed.nodes.clock import boot_id, now_ns
from splitbed.nodes.errors import ConfigurationError, NodeError, NodeTimeout, PeerClosed, ProtocolError
from splitbed.nodes.formatio import (
    DecodedTensors,
    FormatSession,
    decode_json_baseline,
    json_baseline_bytes,
    tensor_crc32,
)
from splitbed.nodes.metrics import software_versions
from splitbed.nodes.protocol import ControlUnit, MsgType, UnitChunk, UnitEnd, UnitFramer, UnitStart
from splitbed.nodes.resources import ResourceMeter, gpu_info, host_info
from splitbed.nodes.runner import INFERENCE_CALL, ModelRunner, PartPlan
from splitbed.nodes.wire import RECV_CHUNK, send_pieces

log = logging.getLogger("splitbed.nodes.remote")

POLL_S = 0.2  # how often a blocked read looks at the shutdown flag


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
    offer: dict[str, Any] = field(default_factory=dict)
    # Host, software and GPU of this node: for the records, sent in ACCEPT only (never to a peer that has not
    # completed the configuration stage, authenticated when the node requires it); not in the OFFER.
    server_info: dict[str, Any] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    sessions: dict[int, RemoteSession] = field(default_factory=dict)
    sessions_lock: threading.Lock = field(default_factory=threading.Lock)
    served: int = 0

    def active_sessions(self) -> int:
        with self.sessions_lock:
            return len(self.sessions)


class _Abort(Exception):
    """Leave the session loop: the connection is closed (after an error reply, or on shutdown)."""


class RemoteSession:
    """One connection: configuration stage, then units until the peer closes, an error, or shutdown."""

    def __init__(self, state: ServerState, conn: socket.socket, peer: tuple[Any, ...], slot: Slot) -> None:
        self.state = state
        self.cfg = state.config
        self.conn = conn
        self.peer = f"{peer[0]}:{peer[1]}"
        self.slot = slot  # what admission sees of this session: idle or receiving, and how fast
        self.auth = ServerHandshake(self.cfg.secret)
        self.rate = self.cfg.rate_policy()
        self.session_id = ""
        self.model = ""
        self.encoding = "tlv"
        self.result_mode = "full"
        self.top_k = 5
        self.verify = False
        self.framer = UnitFramer(max_unit_bytes=self.cfg.max_unit_bytes,
                                 accepted_control=frozenset({MsgType.HELLO, MsgType.SELECT, MsgType.CLOCK_PING,
                                                             MsgType.RESET, MsgType.PREPARE, MsgType.ERROR,
                                                             MsgType.JSON_BASELINE}))
        self.fmt = FormatSession(self.cfg.max_unit_bytes)
        self.configured = False
        self.units = 0               # uplink units completed since ACCEPT (replies say which one they answer)
        self.inferences = 0
        self._buf = bytearray(RECV_CHUNK)
        self.hello_seen = False
        self._first_byte_ns: int | None = None  # of the current inference's first unit
        self.rx = rxstamp.ReceiveClock(conn)  # reads, and when their bytes arrived
        self._decode_ns = 0
        self._events: list[dict[str, Any]] = []
        self._held: Reservation | None = None  # memory of the unit being received, until its reply is sent
        self._refused: ProtocolError | None = None  # why the unit being received is skipped (answered at its end)

    # --- main loop --------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        except _Abort:
            pass
        except PeerClosed as exc:
            log.info("session %s from %s: %s", self.session_id or "-", self.peer, exc)
        except ProtocolError as exc:
            log.warning("session %s from %s: %s", self.session_id or "-", self.peer, exc)
            self._last_words(exc.code, exc.message)
        except Exception as exc:  # a bug must not take the server down: report it to the peer and the log
            log.exception("session %s from %s: internal error", self.session_id or "-", self.peer)
            self._last_words("internal_error", f"{type(exc).__name__}: {exc}")
        finally:
            self._release_unit()
            try:
                self.conn.close()
            except OSError:
                pass

    def _last_words(self, code: str, message: str) -> None:
        """A fatal error reply just before closing; if even that cannot be sent, closing says it all."""
        try:
            self._reply_error(code, message, fatal=True)
        except _Abort:
            pass

    def _loop(self) -> None:
        config_deadline = time.monotonic() + self.cfg.config_timeout_s
        last_progress = time.monotonic()
        slot = self.slot
        while True:
            now = time.monotonic()
            if slot.evicted is not None:
                log.warning("session %s from %s: %s", slot.label, self.peer, slot.evicted)
                self._reply_error("evicted", f"the remote node is full and this session was {slot.evicted}",
                                  fatal=True)
                raise _Abort
            if self.state.stopping.is_set() and not self.framer.mid_unit and not self._readable_now():
                # Bytes already received are in-flight work: they are served first (the grace period bounds it).
                self._reply_error("shutting_down", "the remote node is shutting down", fatal=True)
                raise _Abort
            if not self.configured and now > config_deadline:
                raise NodeTimeout(f"configuration stage not finished within {self.cfg.config_timeout_s:g} s")
            if self.framer.mid_unit:
                if now - last_progress > self.cfg.read_timeout_s:
                    raise NodeTimeout(f"no bytes for {self.cfg.read_timeout_s:g} s in the middle of a unit")
                if slot.overdue_s(now, self.rate) > 0:
                    elapsed = now - (slot.unit_started or now)
                    raise NodeTimeout(f"a {self.framer.unit_length}-byte unit did not arrive within the time its "
                                      f"progress allows: {slot.unit_received} bytes in {elapsed:.1f} s, slower than "
                                      f"{self.rate.min_rate_bps:g} B/s after a {self.rate.base_s:g} s allowance")
            elif slot.idle_s(now) > self.cfg.idle_timeout_s:
                raise NodeTimeout(f"session idle for more than {self.cfg.idle_timeout_s:g} s")
            self.conn.settimeout(POLL_S)
            try:
                n, t_recv = self.rx.recv_into(self._buf)
            except TimeoutError:
                continue
            except ConnectionResetError as exc:
                raise PeerClosed(f"connection reset: {exc}") from None
            if n == 0:
                if self.framer.mid_unit:
                    raise PeerClosed(f"peer closed in the middle of a {self.framer.unit_length}-byte unit "
                                     "(truncated unit discarded)")
                raise PeerClosed("peer closed the session")
            last_progress = time.monotonic()
            if not self.framer.mid_unit:
                self._mark_first_byte(t_recv)
            if slot.idle_since is not None:
                slot.unit_begins(last_progress)  # busy from here until the units of this read are answered
            started_before = self.framer.units_started
            for frame in self.framer.feed(memoryview(self._buf)[:n]):
                self._on_frame(frame, t_recv)
            if self.framer.mid_unit:
                if self.framer.units_started != started_before:
                    slot.unit_begins(time.monotonic())  # the unit still open began in this recv, after its replies
                slot.unit_progress(self.framer.unit_received)
            else:
                slot.at_rest(time.monotonic())

    def _readable_now(self) -> bool:
        readable, _, _ = select.select([self.conn], [], [], 0)
        return bool(readable)

    def _mark_first_byte(self, t_recv: int) -> None:
        """Remember when the first byte of the current inference's first unit was read."""
        if self._first_byte_ns is None and self.configured:
            self._first_byte_ns = t_recv

    # --- frames ------------------------------------------------------------------------------------

    def _on_frame(self, frame: proto.Frame, t_recv: int) -> None:
        if isinstance(frame, UnitStart):
            if frame.unit_type == MsgType.JSON_BASELINE:
                self._start_json_unit(frame)
                return
            self._require_configured(f"unit of type {frame.unit_type}")
            self._mark_first_byte(t_recv)
            if self.encoding != "tlv":
                raise ProtocolError("unexpected_message", "AIPS/intermediate data units on a session configured "
                                    "for the json-baseline carriage")
            if self._hold(self.fmt.unit_bytes(frame.unit_type, frame.length), f"type {frame.unit_type} unit "
                          f"of {frame.length} bytes"):
                self._feed_format(frame.header)
        elif isinstance(frame, UnitChunk):
            if self._refused is None:
                self._feed_format(frame.data)
        elif isinstance(frame, UnitEnd):
            self.units += 1
            if self._refused is not None:
                refused, self._refused = self._refused, None
                self._reply_error(refused.code, refused.message, fatal=False)
                return
            try:
                self._drain_format(t_recv)
            finally:
                self._release_unit()
        else:
            try:
                self._on_control(frame, t_recv)
            finally:
                self._release_unit()

    def _hold(self, nbytes: int, what: str) -> bool:
        """Reserve the unit's memory from the node's budget before keeping a byte of it; if it does not fit,
        skip the unit (it is answered with memory_budget at its end) and return False."""
        try:
            self._held = self.state.budget.reserve(nbytes, what)
        except BudgetRefused as exc:
            log.warning("session %s from %s: refused a unit: %s", self.session_id or "-", self.peer, exc.message)
            self._skip_unit(exc)
            return False
        return True

    def _skip_unit(self, reason: ProtocolError) -> None:
        self._refused = reason
        self.framer.skip_unit()

    def _release_unit(self) -> None:
        if self._held is not None:
            self._held.release()
            self._held = None

    def _start_json_unit(self, frame: UnitStart) -> None:
        """A JSON-baseline unit is refused at its header, before a byte of it is buffered, unless this session
        was configured for that carriage and the node's memory budget has room to assemble it."""
        self._require_configured("JSON_BASELINE unit")
        if self.encoding != "json-baseline":
            self._skip_unit(ProtocolError("unexpected_message", "JSON_BASELINE unit on a session configured for "
                                          "the tlv carriage", fatal=False))
            return
        self._hold(frame.length + (frame.length >> 3) + 64, f"JSON-baseline unit of {frame.length} bytes")

    def _require_configured(self, what: str) -> None:
        if not self.configured:
            raise ProtocolError("unexpected_message", f"{what} before the configuration stage finished "
                                "(send HELLO, then SELECT, and wait for ACCEPT)")

    def _feed_format(self, data: bytes | memoryview) -> None:
        start = time.perf_counter_ns()
        self.fmt.feed(data)
        self._decode_ns += time.perf_counter_ns() - start

    def _drain_format(self, t_last_byte: int) -> None:
        start = time.perf_counter_ns()
        outcome = self.fmt.drain()
        self._decode_ns += time.perf_counter_ns() - start
        self._events.extend(outcome.events)
        for error in outcome.errors:
            if error.fatal:
                raise error
            self._reply_error(error.code, error.message, fatal=False)
        if outcome.complete is not None:
            self._infer(outcome.complete, t_last_byte)

    def _on_control(self, unit: ControlUnit, t_recv: int) -> None:
        kind = unit.unit_type
        if kind == MsgType.JSON_BASELINE:  # configured for it: checked at its header (_start_json_unit)
            self._mark_first_byte(t_recv)
            self.units += 1
            try:  # what json.loads will build, before it builds it (a count, outside the timed decode)
                if self._held is not None:
                    self._held.grow(json_baseline_bytes(unit.payload))
            except BudgetRefused as exc:
                log.warning("session %s from %s: refused a unit: %s", self.session_id or "-", self.peer,
                            exc.message)
                self._reply_error(exc.code, exc.message, fatal=False)
                return
            start = time.perf_counter_ns()
            try:
                decoded = decode_json_baseline(unit.payload, self.cfg.max_unit_bytes)
            except ProtocolError as exc:
                self._decode_ns = 0
                self._first_byte_ns = None
                self._reply_error(exc.code, exc.message, fatal=False)
                return
            self._decode_ns += time.perf_counter_ns() - start
            self._infer(decoded, t_recv)
            return
        body = proto.decode_control(kind, unit.payload)
        if not self.auth.authenticated and kind != MsgType.HELLO:
            raise ProtocolError("unauthenticated", f"{kind.name} before authentication: this remote node serves only "
                                "peers that hold its shared secret (HELLO with the proof first)")
        if kind == MsgType.HELLO:
            self._on_hello(body)
        elif kind == MsgType.CLOCK_PING:
            t1 = proto.require(body, "t1", int, msg="CLOCK_PING")
            pong = {"t1": t1, "t2": t_recv, "t3": 0}
            if self.configured:
                self.units += 1
                pong["after_unit"] = self.units
            pong["t3"] = now_ns()
            self._send([proto.encode_control(MsgType.CLOCK_PONG, pong)])
            self._first_byte_ns = None
        elif kind == MsgType.SELECT:
            self._on_select(body)
        elif kind == MsgType.RESET:
            self._require_configured("RESET")
            self.units += 1
            self._events.extend(self.fmt.reset())
            self._decode_ns = 0
            self._first_byte_ns = None
            self._send([proto.encode_control(MsgType.RESET_DONE, {"after_unit": self.units,
                                                                   "aips_events": self._take_events()})])
        elif kind == MsgType.PREPARE:
            self._require_configured("PREPARE")
            self.units += 1
            self._first_byte_ns = None
            size = body.get("input_size")
            if size is not None and not (isinstance(size, list) and len(size) == 2
                                         and all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
                raise ProtocolError("bad_control_message", f"PREPARE input_size must be [height, width], got "
                                    f"{size!r}")
            self._on_prepare(proto.require(body, "partition_id", int, msg="PREPARE"), size)
        elif kind == MsgType.ERROR:
            log.warning("session %s: local node reported an error: %s", self.session_id, body)
            raise _Abort

    def _on_prepare(self, partition_id: int, input_size: list[int] | None = None) -> None:
        runner = self.state.runner
        with runner.lock:
            try:
                plan = runner.plan(self.model, partition_id, input_size)
            except ConfigurationError as exc:
                self._reply_error("unknown_partition", str(exc), fatal=False)
                return
            edge_device = runner.device_figures(plan)  # the partition's device plan; each RESULT adds its run
        build_ms = 0.0 if plan.build_reported else plan.build_ms
        plan.build_reported = True
        self._send([proto.encode_control(MsgType.PREPARED, {
            "after_unit": self.units, "partition_id": plan.partition_id, "partition_name": plan.name,
            "build_ms": build_ms, "edge_device": edge_device,
            "cut": [{"tensor_id": c.tensor_id, "name": c.name, "shape": list(c.shape), "dtype": c.dtype}
                    for c in plan.cut]})])

    # --- configuration stage -----------------------------------------------------------------------

    def _on_hello(self, body: dict[str, Any]) -> None:
        if self.configured:
            raise ProtocolError("unexpected_message", "HELLO after the configuration stage")
        version = proto.require(body, "protocol_version", int, msg="HELLO")
        if version != proto.PROTOCOL_VERSION:
            raise ProtocolError("unsupported_protocol_version",
                                f"this remote node speaks protocol {proto.PROTOCOL_VERSION}, the local node {version}")
        offer = self.state.offer
        if not self.auth.authenticated:
            proof = self.auth.answer(body)
            if proof is None:  # the challenge: nothing else about this node before the peer proves itself
                self._send([proto.encode_control(MsgType.OFFER, {"protocol_version": proto.PROTOCOL_VERSION,
                                                                 "auth": self.auth.challenge()})])
                return
            log.info("peer %s authenticated", self.peer)
            offer = {**offer, "auth": proof}
        self.hello_seen = True
        self._send([proto.encode_control(MsgType.OFFER, offer)])

    def _on_select(self, body: dict[str, Any]) -> None:
        if self.configured:
            raise ProtocolError("unexpected_message", "SELECT after ACCEPT: open a new session to reconfigure")
        if not self.hello_seen:
            raise ProtocolError("unexpected_message", "SELECT before HELLO")
        model = proto.require(body, "model", str, msg="SELECT")
        encoding = proto.require(body, "encoding", str, msg="SELECT")
        result_mode = str(body.get("result_mode", "full"))
        top_k = body.get("top_k", 5)
        verify = body.get("verify", False)
        if not isinstance(verify, bool):
            raise ProtocolError("bad_control_message", f"verify must be true or false, got {verify!r}")
        session_id = logsafe.session_id(body.get("session_id")) or uuid.uuid4().hex
        if model not in self.cfg.models:
            raise ProtocolError("unknown_model", f"model {model!r} is not offered; offered: "
                                f"{', '.join(self.cfg.models)}")
        if encoding not in proto.ENCODINGS:
            raise ProtocolError("unknown_encoding", f"encoding {encoding!r}; choose one of {proto.ENCODINGS}")
        if result_mode not in proto.RESULT_MODES:
            raise ProtocolError("bad_control_message", f"result_mode {result_mode!r}; choose {proto.RESULT_MODES}")
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= 1000:
            raise ProtocolError("bad_control_message", f"top_k must be an integer 1..1000, got {top_k!r}")
        self.model, self.encoding, self.result_mode, self.top_k = model, encoding, result_mode, top_k
        self.verify = verify
        self.session_id = session_id
        self.slot.label = session_id
        self.fmt.new_session()
        self.configured = True
        self._first_byte_ns = None
        log.info("session %s from %s: model %s, %s carriage", session_id, self.peer, model, encoding)
        self._send([proto.encode_control(MsgType.ACCEPT, {
            "session_id": session_id, "model": model, "encoding": encoding, "result_mode": result_mode,
            "top_k": top_k, "verify": verify, "weights": self.state.runner.weights_info(model),
            "server": self.state.server_info})])

    # --- inference ---------------------------------------------------------------------------------

    def _infer(self, decoded: DecodedTensors, t_last_byte: int) -> None:
        first_byte = self._first_byte_ns if self._first_byte_ns is not None else t_last_byte
        last_byte_kernel, out_of_order, no_stamp_reason = self.rx.arrival(self.rx.kernel_ns)
        decode_ms = self._decode_ns / 1e6
        self._first_byte_ns, self._decode_ns = None, 0
        seq = self.inferences
        self.inferences += 1
        t_lock = now_ns()
        with self.state.runner.lock:
            t_locked = now_ns()
            try:
                plan = self.state.runner.plan_for(self.model, decoded.partition_id, decoded.arrays)
            except ConfigurationError as exc:
                self._reply_error("unknown_partition", str(exc), fatal=False)
                return
            built_now = 0.0 if plan.build_reported else plan.build_ms
            plan.build_reported = True
            try:
                arrays = ModelRunner.check_tensors(plan, decoded.arrays, self.cfg.max_batch)
            except ProtocolError as exc:
                self._reply_error(exc.code, exc.message, fatal=False)
                return
            window = self.state.meter.start()
            t_tail = now_ns()
            preds = ModelRunner.run_tail(plan, arrays)
            t_tail_end = now_ns()
            resources = self.state.meter.stop(window)
            edge_run = ModelRunner.device_run(plan)  # under the lock: this run's outcome (None: nothing emulated)
        result = self._result_body(plan, preds, seq=seq, decode_ms=decode_ms, built_ms=built_now,
                                   stamps={"remote_first_byte": first_byte, "remote_last_byte": t_last_byte,
                                           "remote_lock_request": t_lock, "remote_tail_start": t_tail,
                                           "remote_tail_end": t_tail_end},
                                   queue_ms=(t_locked - t_lock) / 1e6, resources=dict(resources),
                                   extra=decoded.extra)
        result["edge_run"] = edge_run
        result["downlink_tcp"] = try_read_state(self.conn)  # the window the RESULT starts with
        result["uplink_out_of_order_packets"] = out_of_order
        result["uplink_end_reason"] = no_stamp_reason
        result["timestamps_ns"]["remote_last_byte_kernel"] = last_byte_kernel
        result["timestamps_ns"]["remote_result_send"] = now_ns()
        self._send([proto.encode_control(MsgType.RESULT, result)])
        if self.verify:  # after the RESULT went: checksumming must not inflate any figure
            self._send([proto.encode_control(MsgType.CHECKSUM, {
                "after_unit": self.units, "tensor_crc32": [tensor_crc32(a) for a in decoded.arrays]})])

    def _result_body(self, plan: PartPlan, preds: np.ndarray, *, seq: int, decode_ms: float, built_ms: float,
                     stamps: dict[str, int], queue_ms: float, resources: dict[str, Any],
                     extra: dict[str, Any]) -> dict[str, Any]:
        row = np.asarray(preds, dtype=np.float64).reshape(preds.shape[0], -1)[0]
        order = np.argsort(row, kind="stable")[::-1][: self.top_k]
        body: dict[str, Any] = {
            "after_unit": self.units,
            "seq": seq,
            "model": self.model,
            "partition_id": plan.partition_id,
            "partition_name": plan.name,
            "top": [[int(i), float(row[i])] for i in order],
            "remote_model_inference_time": (stamps["remote_tail_end"] - stamps["remote_tail_start"]) / 1e9,
            "remote_inference_ms": (stamps["remote_tail_end"] - stamps["remote_tail_start"]) / 1e6,
            "remote_decode_ms": decode_ms,
            "remote_queue_wait_ms": queue_ms,
            "remote_tail_build_ms": built_ms,  # non-zero only when no PREPARE preceded the first inference
            "server_physical_gpus": self.state.server_info["gpu"]["count"],
            "remote_resources": resources,
            "concurrent_sessions": self.state.active_sessions(),
            "aips_events": self._take_events(),
            "carriage_extra": extra,
            "timestamps_ns": dict(stamps),
            "inference_call": self.state.runner.inference_call(self.model),
        }
        if self.result_mode == "full":
            body["preds"] = [float(v) for v in row]  # the seed's json.dumps({'preds': preds.tolist(), ...})
        return body

    # --- replies -----------------------------------------------------------------------------------

    def _take_events(self) -> list[dict[str, Any]]:
        events, self._events = self._events, []
        return events

    def _reply_error(self, code: str, message: str, *, fatal: bool) -> None:
        body = proto.error_body(code, message, fatal=fatal, aips_events=self._take_events(), seq=None)
        body["after_unit"] = self.units
        if not fatal:
            self._first_byte_ns, self._decode_ns = None, 0
        try:
            self._send([proto.encode_control(MsgType.ERROR, body)])
        except (NodeError, OSError) as exc:
            log.info("session %s: could not send the error reply (%s)", self.session_id or "-", exc)
            raise _Abort from None

    def _send(self, pieces: list[bytes]) -> None:
        send_pieces(self.conn, pieces, self.cfg.send_timeout_s)
        self.rx.mark()  # the local node's next transfer follows a reply: count its out-of-order packets afresh


class RemoteNode:
    """The server: binds, loads the offered models, accepts sessions until shutdown() or SIGTERM."""

    def __init__(self, config: RemoteConfig, *, runner: ModelRunner | None = None) -> None:
        self.config = config
        self.state = ServerState(config, runner or ModelRunner(weights=config.weights, engine=config.engine,
                                                               device=edge_emulator(config.device)), ResourceMeter(),
                                 MemoryBudget(config.memory_budget_bytes),
                                 Admission(config.max_sessions, config.rate_policy(), config.evict_after_s))
        self.listener: socket.socket | None = None
        self.address: tuple[str, int] = (config.host, config.port)
        self._threads: list[threading.Thread] = []

    def prepare(self) -> None:
        """Load every offered model (and, with warm, every tail) and build the OFFER; before accepting."""
        from splitbed.nodes.formatio import compression_profiles

        runner = self.state.runner
        models = []
        for name in self.config.models:
            loaded = runner.load(name)
            spec = loaded.spec
            if self.config.warm:
                with runner.lock:
                    for part in spec.partitions:
                        runner.plan(name, part.partition_id)
            models.append({
                "name": name, "weights": runner.weights_info(name), "input_shape": list(spec.input_shape),
                "runtime": runner.runtime_info(name),
                "partitions": [{"partition_id": p.partition_id, "name": p.name, "tensors": p.tensors}
                               for p in spec.partitions],
            })
        self.state.server_info = {"versions": software_versions(), "host": dict(host_info()), "gpu": dict(gpu_info()),
                                  "device": None if runner.device is None else runner.device.describe()}
        self.state.offer = {
            "protocol_version": proto.PROTOCOL_VERSION,
            "boot_id": boot_id(),
            "models": models,
            "compression_profiles": compression_profiles(),
            "encodings": list(proto.ENCODINGS),
            "result_modes": list(proto.RESULT_MODES),
            "limits": {"max_unit_bytes": self.config.max_unit_bytes, "max_control_bytes": proto.MAX_CONTROL_BYTES,
                       "read_timeout_s": self.config.read_timeout_s, "idle_timeout_s": self.config.idle_timeout_s,
                       "unit_timeout_base_s": self.config.unit_timeout_base_s,
                       "unit_min_rate_bps": self.config.unit_min_rate_bps, "max_sessions": self.config.max_sessions,
                       "memory_budget_bytes": self.config.memory_budget_bytes, "max_batch": self.config.max_batch},
            "inference_call": INFERENCE_CALL,
        }

    def bind(self) -> tuple[str, int]:
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
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        where = f"{peer[0]}:{peer[1]}"
        try:
            slot, victim, why = self.state.admission.admit(where)
        except AdmissionRefused as exc:
            log.warning("refused a connection from %s: busy: %s", where, exc.reason)
            try:
                send_pieces(conn, [proto.encode_control(MsgType.ERROR, proto.error_body(
                    "busy", f"the remote node serves at most {self.config.max_sessions} sessions at once and "
                    f"{exc.reason}; retry later", fatal=True))], 2.0)
            except (NodeError, OSError):
                pass
            conn.close()
            return
        if victim is not None:
            log.warning("evicting session %s from %s to admit %s: %s", victim.label, victim.peer, where, why)
        session = RemoteSession(self.state, conn, peer, slot)
        thread = threading.Thread(target=self._run_session, args=(session,), name=f"session-{peer[1]}",
                                  daemon=True)
        with self.state.sessions_lock:
            self.state.sessions[id(session)] = session
            self.state.served += 1
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _run_session(self, session: RemoteSession) -> None:
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
    announce_ready(announce, host, port, config)
    node.serve()
    log.info("remote node stopped after %d sessions", node.state.served)
    return 0


def announce_ready(announce: Any, host: str, port: int, config: RemoteConfig) -> None:
    import json
    import os

    announce(json.dumps({"event": "ready", "host": host, "port": port, "pid": os.getpid(),
                         "models": list(config.models)}), flush=True)


if __name__ == "__main__":
    from splitbed.commands.nodes import remote_main

    remote_main()

"""The local inference node (UE): image -> preprocess -> head -> encode -> TCP -> result -> metrics record.

`LocalNode` is usable in-process (tests) and behind the CLI, one-shot or driven by JSON-line jobs on stdin
(`run_jobs`). It keeps its TCP session and loaded models across jobs: one session per (model, carriage); a job
for another model or carriage opens a new session. Within a session an AIPS is sent only when needed (first
data, partition, tensor count, shape or compression change, or after the remote's AIPS ended) unless a job's
`aips` policy forces otherwise; every record says whether an AIPS went with it, why, and its size.

Timestamps are CLOCK_MONOTONIC ns (splitbed.nodes.clock); remote ones are mapped with the session's clock
decision. Timing points and windows are defined in docs/METRICS.md.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TextIO, cast

import numpy as np

from netem.tcpinfo import TcpState, try_read_state
from splitbed.devices import DeviceError
from splitbed.devices import load as load_device
from splitbed.devices.emulation import DeviceEmulator
from splitbed.devices.figures import complete as complete_devices
from splitbed.devices.figures import with_run
from splitbed.nodes import formatio, rxstamp
from splitbed.nodes import protocol as proto
from splitbed.nodes.auth import ClientHandshake
from splitbed.nodes.clock import ClockRecord, PingSample, boot_id, decide_clock, estimate_offset, now_ns
from splitbed.nodes.errors import (
    ConfigurationError,
    NodeError,
    NodeTimeout,
    PeerClosed,
    ProtocolError,
    RemoteError,
)
from splitbed.nodes.images import resolve_image
from splitbed.nodes.jobs import ADAPTIVE_PARTITION, Job, parse_job
from splitbed.nodes.metrics import SCHEMA_VERSION, ErrorInfo, InferenceRecord, Prediction, software_versions
from splitbed.nodes.protocol import MsgType
from splitbed.nodes.resources import GpuInfo, ResourceMeter, gpu_info, host_info
from splitbed.nodes.runner import ModelRunner, PartPlan
from splitbed.nodes.wire import ControlReader, send_pieces

log = logging.getLogger("splitbed.nodes.local")

AIPS_ID_MODULO = 1 << 16  # ai_parameter_set_id is a u16 (docs/FORMAT.md)
WEIGHTS_IDENTITY = ("source", "seed", "sha256")


@dataclass
class LocalConfig:
    host: str = "127.0.0.1"
    port: int = 0
    weights: str = "auto"
    engine: str = "tensorflow"  # inference runtime of registered models (splitbed.nodes.runner.ENGINES)
    link: dict[str, Any] | None = None
    connect_timeout_s: float = 10.0
    connect_retry_s: float = 0.0   # keep retrying a refused connection this long (remote node still starting)
    config_timeout_s: float = 30.0
    result_timeout_s: float = 120.0
    send_timeout_s: float = 300.0
    clock_pings: int = 8
    allow_weights_mismatch: bool = False
    verify_delivery: bool = False  # remote returns CRC-32s of the decoded tensors; the record compares them
    secret: bytes | None = field(default=None, repr=False)  # shared with the remote (splitbed.nodes.auth)
    device: str = "host"           # device profile the head emulates (splitbed.devices; host = none)


@dataclass
class Session:
    """One TCP connection to the remote node and what was agreed on it."""

    sock: socket.socket
    reader: ControlReader
    session_id: str
    model: str
    encoding: str
    result_mode: str
    top_k: int
    offer: dict[str, Any]
    accept: dict[str, Any]
    clock: ClockRecord
    units_sent: int = 0
    inferences: int = 0
    aips: Any = None             # the AIPS the remote holds active, as far as we know
    next_aips_id: int = 1
    pending_reason: str = "first_data"  # why the next AIPS is needed when none is active
    alive: bool = True
    prepared: set[tuple[int, tuple[int, int] | None]] = field(default_factory=set)  # (partition, input size)
    edge_devices: dict[tuple[int, tuple[int, int] | None], Any] = field(default_factory=dict)  # from PREPARED

    def close(self) -> None:
        self.alive = False
        try:
            self.sock.close()
        except OSError:
            pass


def _weights_identity(info: dict[str, Any] | None) -> tuple[Any, ...]:
    info = info or {}
    return tuple(info.get(k) for k in WEIGHTS_IDENTITY)


def ue_emulator(name: str) -> DeviceEmulator:
    """The local node's device (a ConfigurationError for an unknown profile or one that is not a UE's)."""
    try:
        return DeviceEmulator(load_device(name), "ue")
    except DeviceError as exc:
        raise ConfigurationError(str(exc)) from None


def default_link(config_link: dict[str, Any] | None) -> dict[str, Any]:
    if config_link:
        return dict(config_link)
    return {"profile": None, "backend": None,
            "note": "not given: pass --link-info (or the job's link) to record the emulated link"}


class LocalNode:
    """The UE side. Not thread-safe: one LocalNode per thread of control."""

    def __init__(self, config: LocalConfig, *, runner: ModelRunner | None = None,
                 meter: ResourceMeter | None = None) -> None:
        self.config = config
        self.runner = runner or ModelRunner(weights=config.weights, engine=config.engine,
                                            device=ue_emulator(config.device))
        self.meter = meter or ResourceMeter()
        self.session: Session | None = None
        self._gpu: GpuInfo | None = None
        self._host = host_info()
        self.policies: dict[str, Any] = {}      # splitbed.adaptive policies, kept across jobs and sessions
        self._deadline: float | None = None     # monotonic deadline of the running inference (job.deadline_s)
        self._deadline_s: float | None = None

    def timeout(self, default_s: float) -> float:
        """`default_s`, cut to what is left of the running inference's deadline (job `deadline_s`)."""
        if self._deadline is None:
            return default_s
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise NodeTimeout(f"the inference deadline of {self._deadline_s:g} s has passed")
        return min(default_s, left)

    # --- sessions ----------------------------------------------------------------------------------

    def __enter__(self) -> LocalNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def _ensure_session(self, job: Job) -> Session:
        s = self.session
        if s is not None and s.alive and (s.model, s.encoding, s.result_mode, s.top_k) == \
                (job.model, job.encoding, job.result_mode, job.top_k):
            return s
        self.close()
        self.session = self._open_session(job.model, job.encoding, job.result_mode, job.top_k)
        return self.session

    def reconnect(self) -> dict[str, Any]:
        """Start a new session with the current session's choices (AIPS lifetime rule "new session")."""
        old = self.session
        if old is None:
            raise ConfigurationError("reconnect: there is no session yet (run an inference first)")
        self.close()
        self.session = self._open_session(old.model, old.encoding, old.result_mode, old.top_k)
        return {"record_type": "action", "action": "reconnect", "old_session_id": old.session_id,
                "session_id": self.session.session_id}

    def _open_session(self, model: str, encoding: str, result_mode: str, top_k: int) -> Session:
        cfg = self.config
        local_weights = self.runner.weights_info(model)  # loads the model before connecting (slow)
        sock = self._connect()
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = ControlReader(sock)
            deadline = time.monotonic() + self.timeout(cfg.config_timeout_s)

            def left() -> float:
                return max(deadline - time.monotonic(), 0.001)

            handshake = ClientHandshake(cfg.secret)
            hello = {"protocol_version": proto.PROTOCOL_VERSION, "boot_id": boot_id(),
                     "client": {"versions": software_versions(), "host": dict(self._host)}}
            send_pieces(sock, [proto.encode_control(MsgType.HELLO, {**hello, **handshake.hello_fields()})], left())
            unit, _, _ = reader.expect(MsgType.OFFER, left())
            offer = proto.decode_control(unit.unit_type, unit.payload)
            challenge = offer.get("auth")
            if isinstance(challenge, dict) and "nonce" in challenge and "proof" not in challenge:
                send_pieces(sock, [proto.encode_control(MsgType.HELLO, {**hello, **handshake.respond(challenge)})],
                            left())
                unit, _, _ = reader.expect(MsgType.OFFER, left())
                offer = proto.decode_control(unit.unit_type, unit.payload)
            handshake.check_server(offer.get("auth"))
            self._check_offer(offer, model, encoding, local_weights)
            samples = []
            for _ in range(max(cfg.clock_pings, 1)):
                t1 = now_ns()
                send_pieces(sock, [proto.encode_control(MsgType.CLOCK_PING, {"t1": t1})], left())
                unit, _, t4 = reader.expect(MsgType.CLOCK_PONG, left())
                pong = proto.decode_control(unit.unit_type, unit.payload)
                if proto.require(pong, "t1", int, msg="CLOCK_PONG") != t1:
                    raise ProtocolError("bad_control_message", "CLOCK_PONG answers another ping")
                samples.append(PingSample(t1, proto.require(pong, "t2", int, msg="CLOCK_PONG"),
                                          proto.require(pong, "t3", int, msg="CLOCK_PONG"), t4))
            clock = decide_clock(boot_id(), str(offer.get("boot_id", "")), estimate_offset(samples))
            session_id = uuid.uuid4().hex
            send_pieces(sock, [proto.encode_control(MsgType.SELECT, {
                "model": model, "encoding": encoding, "result_mode": result_mode, "top_k": top_k,
                "session_id": session_id, "weights": local_weights,
                "verify": cfg.verify_delivery})], left())
            unit, _, _ = reader.expect(MsgType.ACCEPT, left())
            accept = proto.decode_control(unit.unit_type, unit.payload)
        except BaseException:
            sock.close()
            raise
        log.info("session %s: %s, %s carriage, clock %s", session_id, model, encoding, clock["method"])
        return Session(sock, reader, session_id, model, encoding, result_mode, top_k, offer, accept, clock)

    def _connect(self) -> socket.socket:
        cfg = self.config
        give_up = time.monotonic() + cfg.connect_retry_s
        while True:
            limit = self.timeout(cfg.connect_timeout_s)
            try:
                return socket.create_connection((cfg.host, cfg.port), timeout=limit)
            except ConnectionRefusedError:
                if time.monotonic() >= give_up:
                    raise
                time.sleep(0.2)
            except TimeoutError:
                raise NodeTimeout(f"connecting to the remote node at {cfg.host}:{cfg.port} did not succeed within "
                                  f"{limit:.3g} s" + self._deadline_note()) from None

    def _deadline_note(self) -> str:
        return "" if self._deadline_s is None else f" (inference deadline {self._deadline_s:g} s)"

    def _check_offer(self, offer: dict[str, Any], model: str, encoding: str,
                     local_weights: dict[str, Any]) -> None:
        models = {m.get("name"): m for m in offer.get("models", []) if isinstance(m, dict)}
        if model not in models:
            raise ConfigurationError(f"the remote node does not offer model {model!r}; it offers "
                                     f"{', '.join(map(str, models)) or 'nothing'}")
        if encoding not in offer.get("encodings", []):
            raise ConfigurationError(f"the remote node does not accept the {encoding} carriage")
        remote_weights = models[model].get("weights")
        if _weights_identity(remote_weights) != _weights_identity(local_weights) \
                and not self.config.allow_weights_mismatch:
            raise ConfigurationError(
                f"weights differ: local {local_weights}, remote {remote_weights}; head and tail would come from "
                "different models and predictions would be meaningless. Start both nodes with the same --weights "
                "(or pass --allow-weights-mismatch to measure traffic only)")

    # --- actions -----------------------------------------------------------------------------------

    @contextmanager
    def _closing_on_failure(self, s: Session) -> Iterator[None]:
        """A session exchange outside an inference: if the connection or the protocol breaks (or the remote says
        the error is fatal), close the session so that the next job starts a fresh one."""
        try:
            yield
        except RemoteError as exc:
            if exc.fatal:
                s.close()
            raise
        except (ProtocolError, PeerClosed, OSError):
            s.close()
            raise

    def reset_decoder(self) -> dict[str, Any]:
        """Ask the remote node to reset its format decoder (AIPS lifetime rule "decoder reset")."""
        s = self.session
        if s is None or not s.alive:
            raise ConfigurationError("reset-decoder: there is no open session (run an inference first)")
        with self._closing_on_failure(s):
            return self._reset_decoder(s)

    def _reset_decoder(self, s: Session) -> dict[str, Any]:
        s.units_sent += 1
        send_pieces(s.sock, [proto.encode_control(MsgType.RESET, {})], self.config.send_timeout_s)
        unit, _, _ = s.reader.expect(MsgType.RESET_DONE, self.config.result_timeout_s)
        body = proto.decode_control(unit.unit_type, unit.payload)
        events = list(body.get("aips_events") or [])
        self._track_events(s, events)
        s.aips, s.pending_reason = None, "after_decoder_reset"
        return {"record_type": "action", "action": "reset-decoder", "session_id": s.session_id,
                "aips_events": events}

    # --- inference ---------------------------------------------------------------------------------

    def infer(self, job: Job, repetition: int = 0) -> InferenceRecord:
        """One inference as `job` describes; returns its metrics record (status ok or error). With
        `job.deadline_s`, session setup, send and result all fit in that many seconds, or it is a `timeout`."""
        plan = self._plan(job)
        self._deadline_s = job.deadline_s
        self._deadline = None if job.deadline_s is None else time.monotonic() + job.deadline_s
        try:
            session = self._ensure_session(job)
            if (plan.partition_id, plan.input_size) not in session.prepared:
                with self._closing_on_failure(session):
                    self._prepare(session, plan)
            return _Inference(self, session, job, plan, repetition).run()
        finally:
            self._deadline = self._deadline_s = None

    def _prepare(self, s: Session, plan: PartPlan) -> None:
        """Have the remote build this partition's tail before any measured window, and check both sides cut
        the model the same way (a different cut means different models: nothing would be meaningful)."""
        s.units_sent += 1
        body: dict[str, Any] = {"partition_id": plan.partition_id}
        if plan.input_size is not None:
            body["input_size"] = list(plan.input_size)
        send_pieces(s.sock, [proto.encode_control(MsgType.PREPARE, body)],
                    self.timeout(self.config.send_timeout_s))
        unit, _, _ = s.reader.expect(MsgType.PREPARED, self.timeout(self.config.result_timeout_s))
        body = proto.decode_control(unit.unit_type, unit.payload)
        theirs = [(c.get("name"), tuple(c.get("shape", ())), c.get("dtype")) for c in body.get("cut", [])]
        ours = [(c.name, c.shape, c.dtype) for c in plan.cut]
        if theirs != ours:
            raise ConfigurationError(f"partition {plan.name}: the remote cuts the model into {theirs}, this node "
                                     f"into {ours}; the two nodes do not run the same model")
        s.prepared.add((plan.partition_id, plan.input_size))
        s.edge_devices[(plan.partition_id, plan.input_size)] = body.get("edge_device")

    def _plan(self, job: Job) -> PartPlan:
        with self.runner.lock:
            return self.runner.plan(job.model, job.partition, job.input_size)

    def gpu(self) -> GpuInfo:
        if self._gpu is None:
            self._gpu = gpu_info()
        return self._gpu

    def run_job(self, job: Job) -> list[dict[str, Any]]:
        """Records for one job: one per inference, or one action record."""
        if job.action == "reset-decoder":
            if self.session is None or not self.session.alive:
                self._ensure_session(job)
            return [dict(self.reset_decoder(), job_id=job.job_id)]
        if job.action == "reconnect":
            if self.session is None:
                self._ensure_session(job)
            return [dict(self.reconnect(), job_id=job.job_id)]
        if job.partition == ADAPTIVE_PARTITION:
            from splitbed.adaptive import run_adaptive

            return [run_adaptive(self, job, rep) for rep in range(job.repetitions)]
        return [dict(self.infer(job, rep)) for rep in range(job.repetitions)]

    @staticmethod
    def _track_events(s: Session, events: list[dict[str, Any]]) -> None:
        """Follow the remote's AIPS lifecycle so that the next inference sends an AIPS when the remote has none."""
        for event in events:
            if event.get("event") == "ended" and s.aips is not None and event.get("aips_id") == s.aips.aips_id:
                s.aips = None
                s.pending_reason = f"remote_aips_ended:{event.get('reason')}"


class _Inference:
    """The steps of one inference and the figures they produce."""

    def __init__(self, node: LocalNode, session: Session, job: Job, plan: PartPlan, repetition: int) -> None:
        self.node, self.s, self.job, self.plan, self.repetition = node, session, job, plan, repetition
        self.stamps: dict[str, int | None] = {}
        self.arrays: list[np.ndarray] = []
        self.data_pieces: list[Any] = []
        self.record = self._blank()

    def _blank(self) -> InferenceRecord:
        s, job, plan, node = self.s, self.job, self.plan, self.node
        # The remote's host, versions and GPU come in ACCEPT (protocol 1 remotes before 2026 sent them in OFFER).
        offer_server = s.accept.get("server") or s.offer.get("server") or {}
        model_offer: dict[str, Any] = next((m for m in s.offer.get("models", []) if m.get("name") == job.model), {})
        return InferenceRecord(
            schema_version=SCHEMA_VERSION, record_type="inference", status="ok", error=None,
            session_id=s.session_id, session_inference_index=s.inferences, job_id=job.job_id,
            repetition=self.repetition, tags=dict(job.tags), started_at_utc=datetime.now(timezone.utc).isoformat(),
            model=job.model, partition_name=plan.name, partition_id=plan.partition_id, encoding=job.encoding,
            compression_profile=None, compression_profile_id=None, image=job.image, input_shape=[],
            input_data_bytes=0, preprocessed_input_bytes=0, raw_intermediate_bytes=0,
            serialized_intermediate_bytes=0, aips_sent=False, aips_reason="", aips_id=None, aips_bytes=0,
            uplink_bytes=0, compression_ratio=None, tensors=[], downlink_bytes=0,
            preprocess_ms=0.0, local_inference_ms=0.0, encode_ms=0.0, send_ms=0.0, delivery_ms=None,
            delivery_end=None, delivery_end_reason=None, delivery_read_ms=None, remote_read_lag_ms=None,
            delivery_uncertainty_ms=None, remote_decode_ms=None, remote_queue_wait_ms=None, remote_tail_build_ms=None,
            remote_inference_ms=None, total_inference_ms=None, remote_processing_ms=None, downlink_ms=None,
            downlink_end=None, downlink_end_reason=None, local_read_lag_ms=None, uplink_out_of_order_packets=None,
            downlink_out_of_order_packets=None, uplink_retransmitted_segments=None,
            round_trip_ms=None, result_decode_ms=None, e2e_latency_ms=None, timestamps_ns=self.stamps,
            uplink_tcp=None, downlink_tcp=None,
            result_mode=job.result_mode, predictions=[], delivery_check=None, aips_events=[], adaptive=None,
            local_resources=None, remote_resources=None, local_gpu=node.gpu(),
            remote_gpu=offer_server.get("gpu"), remote_concurrent_sessions=None,
            ue_device=None, edge_device=None, local_inference_measured_ms=None, local_inference_modelled_ms=None,
            remote_inference_modelled_ms=None, e2e_latency_modelled_ms=None, ue_energy=None, edge_energy=None,
            local_head_memory=plan.head_memory,
            inference_call=node.runner.inference_call(job.model), weights=node.runner.weights_info(job.model),
            ue_runtime=node.runner.runtime_info(job.model), edge_runtime=model_offer.get("runtime"),
            remote_weights=model_offer.get("weights"),
            link=default_link(job.link if job.link is not None else node.config.link), clock=s.clock,
            versions={"local": software_versions(), "remote": offer_server.get("versions")},
            host={"local": node._host, "remote": offer_server.get("host")},
        )

    def run(self) -> InferenceRecord:
        s, rec = self.s, self.record
        s.inferences += 1
        try:
            self._local_part()
            body, replies = self._await_result()
            self._remote_part(body, replies)
        except RemoteError as exc:
            self._fail(exc.code, exc.message, exc.fatal, "remote")
            rec["aips_events"].extend(exc.aips_events)
            LocalNode._track_events(s, exc.aips_events)
        except ProtocolError as exc:
            note = self.node._deadline_note() if isinstance(exc, NodeTimeout) else ""
            self._fail(exc.code, exc.message + note, True, "local")
        except (PeerClosed, OSError) as exc:
            self._fail("connection_lost", str(exc), True, "local")
        if self.data_pieces:  # after every measured window: reading sizes back costs a copy of the unit
            for figures, size in zip(rec["tensors"], formatio.payload_sizes(self.data_pieces), strict=True):
                figures["serialized_bytes"] = size
        if not s.alive:
            self.node.session = None if self.node.session is s else self.node.session
        return rec

    def _fail(self, code: str, message: str, fatal: bool, where: str) -> None:
        self.record["status"] = "error"
        self.record["error"] = ErrorInfo(code=code, message=message, fatal=fatal, where=where)
        if fatal:
            self.s.close()

    # local half: preprocess, head, encode, send --------------------------------------------------------

    def _local_part(self) -> None:
        from splitbed.models import preprocess
        from splitbed.models.errors import ModelError

        rec, job, plan, node, s = self.record, self.job, self.plan, self.node, self.s
        path = resolve_image(job.image)
        spec = node.runner.spec(job.model, job.input_size)
        stamps = self.stamps
        window = node.meter.start()
        try:
            stamps["local_start"] = now_ns()
            try:
                prepared = preprocess.load_image(path, spec)
            except ModelError as exc:
                raise ConfigurationError(str(exc)) from exc
            stamps["local_preprocessed"] = now_ns()
            arrays = self.arrays = ModelRunner.run_head(plan, prepared.array)
            stamps["local_head_done"] = now_ns()
            self._ue_device()
            pieces, aips, aips_bytes, units = self._encode(arrays)
            stamps["local_encoded"] = now_ns()
            rec["input_shape"] = list(prepared.array.shape)
            rec["input_data_bytes"] = prepared.input_bytes
            rec["preprocessed_input_bytes"] = prepared.preprocessed_bytes
            rec["raw_intermediate_bytes"] = sum(a.nbytes for a in arrays)
            rec["aips_bytes"] = aips_bytes
            rec["uplink_bytes"] = sum(len(memoryview(p).cast("B")) for p in pieces)
            rec["serialized_intermediate_bytes"] = rec["uplink_bytes"] - aips_bytes
            rec["compression_ratio"] = rec["raw_intermediate_bytes"] / max(rec["serialized_intermediate_bytes"], 1)
            rec["preprocess_ms"] = _ms(stamps["local_start"], stamps["local_preprocessed"])
            rec["local_inference_ms"] = _ms(stamps["local_preprocessed"], stamps["local_head_done"])
            rec["encode_ms"] = _ms(stamps["local_head_done"], stamps["local_encoded"])
            # Committed before sending: once any byte may be on the wire, the remote counts these units.
            s.units_sent += units
            if aips_bytes:
                s.aips = aips
                if aips.aips_id == s.next_aips_id:
                    s.next_aips_id = (s.next_aips_id + 1) % AIPS_ID_MODULO
            rec["uplink_tcp"] = try_read_state(s.sock)  # before the first byte: the window this transfer starts with
            s.reader.rx.mark()  # the RESULT's out-of-order packets are counted from here
            stamps["local_first_send"] = now_ns()
            send_pieces(s.sock, pieces, node.timeout(node.config.send_timeout_s))
            stamps["local_send_done"] = now_ns()
            rec["send_ms"] = _ms(stamps["local_first_send"], stamps["local_send_done"])
        finally:
            rec["local_resources"] = node.meter.stop(window)

    def _ue_device(self) -> None:
        """The UE device's figures for this head run (splitbed.devices; docs/METRICS.md "Devices")."""
        rec, plan = self.record, self.plan
        device = rec["ue_device"] = self.node.runner.device_figures(plan)
        outcome = plan.last_outcome if plan.device is not None else None
        rec["local_inference_measured_ms"] = (outcome.measured_ms if outcome is not None
                                              else _ms(self.stamps["local_preprocessed"], self.stamps["local_head_done"]))
        rec["local_inference_modelled_ms"] = None if device is None else device["device_ms"]

    def _encode(self, arrays: list[np.ndarray]) -> tuple[list[Any], Any, int, int]:
        """(pieces to send, AIPS in force, bytes of the AIPS unit sent (0: none), units sent). Changes no
        session state, so an encoding error leaves the session as it was."""
        rec, job, s, pid = self.record, self.job, self.s, self.plan.partition_id
        if job.encoding == "json-baseline":
            unit = formatio.json_baseline_unit(arrays, pid)
            rec["aips_reason"] = "none: the json-baseline carriage has no AIPS"
            rec["tensors"] = [self._tensor_figures(i, a, None) for i, a in enumerate(arrays)]
            return [unit], None, 0, 1
        profile_id, profile_name = formatio.profile_id(job.compression)
        rec["compression_profile"], rec["compression_profile_id"] = profile_name, profile_id
        wanted = formatio.build_aips(s.next_aips_id, pid, arrays, profile_id)
        reason = self._aips_reason(wanted)
        if reason in ("reused", "omitted_on_request"):
            aips = s.aips if s.aips is not None else wanted  # omitted with none active: data names a new id
            send_aips = False
        elif reason == "forced_same_id" and s.aips is not None:
            aips = formatio.build_aips(s.aips.aips_id, pid, arrays, profile_id)
            send_aips = True
        else:
            aips, send_aips = wanted, True
        pieces: list[Any] = []
        if send_aips:
            pieces.append(formatio.aips_unit(aips))
        data_pieces = formatio.data_unit(aips, arrays)
        self.data_pieces = data_pieces
        pieces.extend(data_pieces)
        aips_bytes = len(pieces[0]) if send_aips else 0
        rec["aips_sent"] = send_aips
        rec["aips_reason"] = reason
        rec["aips_id"] = aips.aips_id
        rec["tensors"] = [self._tensor_figures(i, a, None) for i, a in enumerate(arrays)]  # sizes: finish()
        return pieces, aips, aips_bytes, 2 if send_aips else 1

    def _aips_reason(self, wanted: Any) -> str:
        """Why an AIPS goes with this inference (or `reused` / `omitted_on_request`)."""
        policy, active = self.job.aips, self.s.aips
        if policy == "omit":
            return "omitted_on_request"
        if policy == "resend-same-id":
            return "forced_same_id"
        if policy == "resend-new-id":
            return "forced_new_id"
        if active is None:
            return self.s.pending_reason
        if active.partition_id != wanted.partition_id:
            return "partition_changed"
        if len(active.tensors) != len(wanted.tensors):
            return "tensor_count_changed"
        if any(a.shape != w.shape or a.dtype != w.dtype for a, w in zip(active.tensors, wanted.tensors,
                                                                        strict=True)):
            return "shape_changed"
        if any(a.compression_profile_id != w.compression_profile_id
               for a, w in zip(active.tensors, wanted.tensors, strict=True)):
            return "compression_changed"
        return "reused"

    def _tensor_figures(self, index: int, array: np.ndarray, payload: int | None) -> Any:
        cut = self.plan.cut[index]
        return {"tensor_id": index, "name": cut.name, "dtype": array.dtype.name, "shape": list(array.shape),
                "raw_bytes": int(array.nbytes), "serialized_bytes": payload}

    # remote half: wait, map timestamps, decode predictions ---------------------------------------------

    def _await_result(self) -> tuple[dict[str, Any], list[tuple[dict[str, Any], int]]]:
        """Replies up to the one answering our last unit; earlier ones (errors on the AIPS) are kept."""
        s, node = self.s, self.node
        replies: list[tuple[dict[str, Any], int]] = []
        while True:
            unit, size, t_read = s.reader.read(node.timeout(node.config.result_timeout_s))
            body = proto.decode_control(unit.unit_type, unit.payload)
            self.record["downlink_bytes"] += size
            if unit.unit_type not in (MsgType.RESULT, MsgType.ERROR):
                raise ProtocolError("unexpected_message", f"expected RESULT or ERROR, got {unit.unit_type.name}")
            events = list(body.get("aips_events") or [])
            self.record["aips_events"].extend(events)
            LocalNode._track_events(s, events)
            after = body.get("after_unit")
            if unit.unit_type == MsgType.ERROR and (body.get("fatal") or after == s.units_sent):
                raise RemoteError(str(body.get("code")), str(body.get("message")),
                                  fatal=bool(body.get("fatal")), aips_events=[])
            replies.append((body, t_read))
            if after == s.units_sent:
                if unit.unit_type != MsgType.RESULT:
                    raise ProtocolError("unexpected_message", "the reply to a data unit must be RESULT or ERROR")
                self.stamps["local_result_received"] = t_read
                kernel_ns, self.record["downlink_out_of_order_packets"], self.record["downlink_end_reason"] = \
                    s.reader.rx.arrival(s.reader.kernel_ns, s.reader.no_stamp_reason)
                self.record["uplink_retransmitted_segments"] = _retransmitted_since(self.record["uplink_tcp"], s.sock)
                self.stamps["local_result_received_kernel"] = kernel_ns
                return body, replies
            if not isinstance(after, int) or after > s.units_sent:
                raise ProtocolError("bad_control_message", f"reply answers unit {after!r}; we sent {s.units_sent}")

    def _remote_part(self, body: dict[str, Any], replies: list[tuple[dict[str, Any], int]]) -> None:
        rec, s, stamps = self.record, self.s, self.stamps
        for earlier, _ in replies[:-1]:
            rec["aips_events"].append({"event": "remote_error", "code": earlier.get("code"),
                                       "message": earlier.get("message")})
        remote_stamps = proto.require(body, "timestamps_ns", dict, msg="RESULT")
        for key in ("remote_first_byte", "remote_last_byte", "remote_tail_start", "remote_tail_end",
                    "remote_result_send", "remote_lock_request"):
            value = remote_stamps.get(key)
            if not isinstance(value, int):
                raise ProtocolError("bad_control_message", f"RESULT timestamps_ns lacks an integer {key}")
            stamps[key] = value
        offset = s.clock["offset_ns"]
        first_send, result_in = stamps["local_first_send"], stamps["local_result_received"]
        assert first_send is not None and result_in is not None
        last_byte = stamps["remote_last_byte"]
        result_send = stamps["remote_result_send"]
        assert last_byte is not None and result_send is not None
        # Where the kernels stamped the received data, a transfer ends when the last byte arrived, not when the
        # reading node got round to it (docs/METRICS.md, "Receive stamps").
        last_byte_kernel = _kernel_stamp(remote_stamps, "remote_last_byte_kernel", not_after=last_byte)
        stamps["remote_last_byte_kernel"] = last_byte_kernel
        delivered = last_byte if last_byte_kernel is None else last_byte_kernel
        result_kernel = stamps.get("local_result_received_kernel")
        result_at = result_in if result_kernel is None else result_kernel
        rec["delivery_ms"] = (delivered - offset - first_send) / 1e6
        rec["delivery_end"] = "app_read" if last_byte_kernel is None else "kernel_rx"
        rec["delivery_end_reason"] = _end_reason(body.get("uplink_end_reason"), stamped=last_byte_kernel is not None)
        rec["delivery_read_ms"] = (last_byte - offset - first_send) / 1e6
        rec["remote_read_lag_ms"] = None if last_byte_kernel is None else (last_byte - last_byte_kernel) / 1e6
        rec["delivery_uncertainty_ms"] = s.clock["offset_uncertainty_ns"] / 1e6
        rec["downlink_ms"] = (result_at - (result_send - offset)) / 1e6
        rec["downlink_end"] = "app_read" if result_kernel is None else "kernel_rx"
        rec["local_read_lag_ms"] = None if result_kernel is None else (result_in - result_kernel) / 1e6
        rec["remote_processing_ms"] = (result_send - delivered) / 1e6
        rec["round_trip_ms"] = (result_in - first_send) / 1e6
        rec["uplink_out_of_order_packets"] = _count_field(body.get("uplink_out_of_order_packets"))
        rec["remote_decode_ms"] = float(body.get("remote_decode_ms", 0.0))
        rec["remote_queue_wait_ms"] = float(body.get("remote_queue_wait_ms", 0.0))
        rec["remote_tail_build_ms"] = float(body.get("remote_tail_build_ms", 0.0))
        remote_ms = float(proto.require(body, "remote_inference_ms", (int, float), msg="RESULT"))
        rec["remote_inference_ms"] = remote_ms
        rec["total_inference_ms"] = rec["local_inference_ms"] + remote_ms
        rec["remote_resources"] = body.get("remote_resources")
        rec["remote_concurrent_sessions"] = body.get("concurrent_sessions")
        rec["downlink_tcp"] = _tcp_state_field(body.get("downlink_tcp"))
        rec["predictions"] = self._predictions(body)
        stamps["local_end"] = now_ns()
        rec["result_decode_ms"] = _ms(result_in, stamps["local_end"])
        rec["e2e_latency_ms"] = _ms(stamps["local_start"], stamps["local_end"])
        rec["delivery_check"] = self._delivery_check()  # after local_end: not part of any figure
        try:
            rec["edge_device"] = with_run(s.edge_devices.get((self.plan.partition_id, self.plan.input_size)),
                                          body.get("edge_run"), remote_ms)
        except ValueError as exc:
            raise ProtocolError("bad_control_message", f"edge device (PREPARED, RESULT edge_run): {exc}") from None
        runner_device = self.node.runner.device
        complete_devices(cast(dict[str, Any], rec), None if runner_device is None else runner_device.profile)
        if int(body.get("partition_id", -1)) != self.plan.partition_id:
            raise ProtocolError("bad_control_message", f"RESULT is for partition {body.get('partition_id')}, "
                                f"we sent {self.plan.partition_id}")

    def _delivery_check(self) -> dict[str, Any] | None:
        """With verify on, the remote sends a CHECKSUM unit right after the RESULT; read it now, after every
        measured window, and compare with the tensors the head produced."""
        if not self.node.config.verify_delivery:
            return None
        unit, _, _ = self.s.reader.expect(MsgType.CHECKSUM, self.node.config.result_timeout_s)
        body = proto.decode_control(unit.unit_type, unit.payload)
        if body.get("after_unit") != self.s.units_sent:
            raise ProtocolError("bad_control_message", f"CHECKSUM answers unit {body.get('after_unit')!r}")
        received = body.get("tensor_crc32")
        lossless = self.job.encoding == "json-baseline" or bool(formatio.profile_lossless(self.job.compression))
        sent = [formatio.tensor_crc32(a) for a in self.arrays]
        return {"method": "CRC-32 of each tensor as sent by the head vs as decoded by the remote node",
                "sent_crc32": sent, "received_crc32": received, "match": received == sent,
                "expected_match": lossless}

    def _predictions(self, body: dict[str, Any]) -> list[Prediction]:
        """Decode the predictions on the local side, as the seed allows (decode_predictions)."""
        from splitbed.models import labels

        top_k = self.s.top_k
        if self.s.result_mode == "full":
            preds = proto.require(body, "preds", list, msg="RESULT")
            if len(preds) != labels.NUM_CLASSES or not all(isinstance(p, (int, float)) for p in preds):
                raise ProtocolError("bad_control_message", f"RESULT preds must be {labels.NUM_CLASSES} numbers")
            row = np.asarray(preds, dtype=np.float64)
            order = np.argsort(row, kind="stable")[::-1][:top_k]
            pairs = [(int(i), float(row[i])) for i in order]
        else:
            top = proto.require(body, "top", list, msg="RESULT")
            pairs = []
            for item in top[:top_k]:
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int)
                        and 0 <= item[0] < labels.NUM_CLASSES and isinstance(item[1], (int, float))):
                    raise ProtocolError("bad_control_message", f"RESULT top entry {item!r} is not [class, score]")
                pairs.append((item[0], float(item[1])))
        index = labels.class_index()
        return [Prediction(rank=r + 1, class_index=i, wnid=index[i][0], label=index[i][1], score=score)
                for r, (i, score) in enumerate(pairs)]


def _tcp_state_field(value: Any) -> dict[str, Any] | None:
    """The remote's TCP state from a RESULT: null (a remote that cannot read it) or a complete TcpState."""
    if value is None:
        return None
    try:
        if not isinstance(value, dict):
            raise ValueError(f"expected an object, got {type(value).__name__}")
        return TcpState.from_dict(value).to_dict()
    except ValueError as exc:
        raise ProtocolError("bad_control_message", f"RESULT downlink_tcp: {exc}") from None


def _ms(start: int | None, end: int | None) -> float:
    assert start is not None and end is not None
    return (end - start) / 1e6


# --- driven mode ----------------------------------------------------------------------------------------

def run_jobs(node: LocalNode, lines: Iterable[str], out: TextIO = sys.stdout,
             on_record: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Run JSON-line jobs; one JSON line per record on `out`, then a job_done line per job. Returns the number
    of jobs that failed outright (bad spec, no connection). Inference errors are records with status error."""
    failed = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        job_id: str | None = None
        try:
            job = parse_job(line)
            job_id = job.job_id if job.job_id is not None else str(number)
            job.job_id = job_id
            records = node.run_job(job)
        except (NodeError, OSError) as exc:
            failed += 1
            _emit(out, {"record_type": "job_error", "job_id": job_id or str(number),
                        "error": {"code": getattr(exc, "code", type(exc).__name__), "message": str(exc)}})
            _emit(out, {"record_type": "job_done", "job_id": job_id or str(number), "records": 0, "errors": 1})
            continue
        for record in records:
            _emit(out, record)
            if on_record is not None:
                on_record(record)
        errors = sum(1 for r in records if r.get("status") == "error")
        _emit(out, {"record_type": "job_done", "job_id": job_id, "records": len(records), "errors": errors})
    return failed


def _emit(out: TextIO, record: dict[str, Any]) -> None:
    out.write(json.dumps(record, separators=(",", ":"), allow_nan=False, default=str) + "\n")
    out.flush()


def _retransmitted_since(before: dict[str, Any] | None, sock: socket.socket) -> int | None:
    """Segments the local TCP retransmitted since `before` (its state just before the send) until now, from
    TCP_INFO's connection-wide `total_retrans`: the RESULT is in, so the remote had every byte of the uplink
    transfer and every retransmission that delivered one has happened. None where either reading is missing."""
    after = try_read_state(sock)
    if before is None or after is None:
        return None
    return max(0, int(after["total_retrans"]) - int(before["total_retrans"]))


def _kernel_stamp(stamps: dict[str, Any], key: str, *, not_after: int) -> int | None:
    """An optional kernel receive stamp from the remote's RESULT: null, or an integer no later than the read."""
    value = stamps.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value > not_after:
        raise ProtocolError("bad_control_message", f"RESULT timestamps_ns {key} must be null or an integer no "
                            f"later than remote_last_byte, got {value!r}")
    return value


def _end_reason(value: Any, *, stamped: bool) -> str | None:
    """The remote's reason for ending the delivery at its read: null with a kernel stamp, else a known reason."""
    if stamped and value is None:
        return None
    if not stamped and value in rxstamp.END_REASONS:
        return str(value)
    raise ProtocolError("bad_control_message", "RESULT uplink_end_reason must be null with a kernel stamp and one of "
                        f"{', '.join(rxstamp.END_REASONS)} without one, got {str(value)[:40]!r}")


def _count_field(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError("bad_control_message", f"RESULT uplink_out_of_order_packets must be null or a count, "
                            f"got {value!r}")
    return value


if __name__ == "__main__":
    from splitbed.commands.nodes import local_main

    local_main()


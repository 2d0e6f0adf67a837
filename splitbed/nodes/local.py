"""The local inference node (UE): image -> preprocess -> head -> encode -> transport -> result -> metrics record.

`LocalNode` is usable in-process (tests) and behind the CLI, one-shot or driven by JSON-line jobs on stdin
(`run_jobs`). It keeps its session and loaded models across jobs: one session per (model, carriage); a job for
another model or carriage opens a new session. The protocol is the session machine's (ue_session: when an AIPS
goes and why, which reply answers what); this module moves the bytes (nodes.transport), runs the head, reads the
clocks and fills the record (nodes.record, nodes.timing). Timing points and windows: docs/METRICS.md.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from splitbed.devices import DeviceError
from splitbed.devices import load as load_device
from splitbed.devices.emulation import DeviceEmulator
from splitbed.nodes import messages as m
from splitbed.nodes.clock import ClockRecord, boot_id, decide_clock, estimate_offset, now_ns
from splitbed.nodes.errors import (
    ConfigurationError,
    NodeError,
    NodeTimeout,
    PeerClosed,
    ProtocolError,
    RemoteError,
)
from splitbed.nodes.inference import Inference
from splitbed.nodes.jobs import ADAPTIVE_PARTITION, Job, parse_job
from splitbed.nodes.metrics import InferenceRecord, software_versions
from splitbed.nodes.resources import GpuInfo, ResourceMeter, gpu_info, host_info
from splitbed.nodes.runner import ModelRunner, PartPlan
from splitbed.nodes.transport import UeTransport
from splitbed.nodes.ue_session import Choices, UeSession
from splitbed.nodes.wire import TcpTransport

log = logging.getLogger("splitbed.nodes.local")


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
    transport: str = "tcp"         # tcp | quic (splitbed.nodes.quic)
    quic_ca_pem: bytes | None = field(default=None, repr=False)  # the remote's certificate: the only one trusted
    quic_congestion: str = "reno"


@dataclass
class Session:
    """One connection to the remote node: its transport, its protocol machine, its clock decision."""

    transport: UeTransport
    machine: UeSession
    clock: ClockRecord
    alive: bool = True
    # the edge's device plan per prepared (partition, input size), from PREPARED; each RESULT adds its run
    edge_devices: dict[tuple[int, tuple[int, int] | None], Any] = field(default_factory=dict)

    @property
    def choices(self) -> Choices:
        return self.machine.choices

    def close(self) -> None:
        self.alive = False
        self.transport.close()


def ue_emulator(name: str) -> DeviceEmulator:
    """The local node's device (a ConfigurationError for an unknown profile or one that is not a UE's)."""
    try:
        return DeviceEmulator(load_device(name), "ue")
    except DeviceError as exc:
        raise ConfigurationError(str(exc)) from None


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
        self.policies: dict[str, Any] = {}      # splitbed.nodes.adaptive policies, across jobs and sessions
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

    def deadline_note(self) -> str:
        return "" if self._deadline_s is None else f" (inference deadline {self._deadline_s:g} s)"

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
        if s is not None and s.alive and (s.choices.model, s.choices.encoding, s.choices.result_mode,
                                          s.choices.top_k) == (job.model, job.encoding, job.result_mode, job.top_k):
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
        c = old.choices
        self.session = self._open_session(c.model, c.encoding, c.result_mode, c.top_k)
        return {"record_type": "action", "action": "reconnect", "old_session_id": c.session_id,
                "session_id": self.session.choices.session_id}

    def _open_session(self, model: str, encoding: str, result_mode: str, top_k: int) -> Session:
        """Connect and run the configuration stage (HELLO, OFFER, clock pings, SELECT, ACCEPT)."""
        cfg = self.config
        weights = self.runner.weights_info(model)  # loads the model before connecting (slow)
        machine = UeSession(Choices(model, encoding, result_mode, top_k, uuid.uuid4().hex, weights,
                                    cfg.verify_delivery, cfg.allow_weights_mismatch, cfg.secret))
        transport = self._connect()
        try:
            deadline = time.monotonic() + self.timeout(cfg.config_timeout_s)

            def exchange(message: m.Message) -> tuple[m.Message, int]:
                left = max(deadline - time.monotonic(), 0.001)
                transport.send([m.encode(message)], left)
                reply, _, t_read = transport.receive(max(deadline - time.monotonic(), 0.001))
                return reply, t_read

            again = machine.offered(exchange(machine.start(boot_id=boot_id(), client={
                "versions": software_versions(), "host": dict(self._host)}))[0])
            if again is not None:  # a challenge: the same HELLO with the proof of the shared secret
                machine.offered(exchange(again)[0])
            assert machine.offer is not None
            samples = []
            for _ in range(max(cfg.clock_pings, 1)):
                ping = machine.ping(now_ns())
                samples.append(machine.ponged(*exchange(ping)))
            clock = decide_clock(boot_id(), machine.offer.boot_id, estimate_offset(samples))
            machine.accepted(exchange(machine.select())[0])
        except BaseException:
            transport.close()
            raise
        log.info("session %s: %s, %s carriage, clock %s", machine.choices.session_id, model, encoding,
                 clock["method"])
        return Session(transport, machine, clock)

    def _connect(self) -> UeTransport:
        cfg = self.config
        give_up = time.monotonic() + cfg.connect_retry_s
        while True:
            limit = self.timeout(cfg.connect_timeout_s)
            try:
                if cfg.transport == "quic":
                    from splitbed.nodes.quic import QuicTransport

                    if cfg.quic_ca_pem is None:
                        raise ConfigurationError("the QUIC transport needs the remote's certificate (quic_ca_pem)")
                    return QuicTransport.connect(cfg.host, cfg.port, limit, ca_pem=cfg.quic_ca_pem,
                                                 congestion=cfg.quic_congestion)
                return TcpTransport.connect(cfg.host, cfg.port, limit)
            except ConnectionRefusedError:
                if time.monotonic() >= give_up:
                    raise
                time.sleep(0.2)
            except TimeoutError:
                raise NodeTimeout(f"connecting to the remote node at {cfg.host}:{cfg.port} did not succeed within "
                                  f"{limit:.3g} s" + self.deadline_note()) from None

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
            s.transport.send([m.encode(s.machine.reset())], self.config.send_timeout_s)
            events = s.machine.reset_done(s.transport.receive(self.config.result_timeout_s)[0])
        return {"record_type": "action", "action": "reset-decoder", "session_id": s.choices.session_id,
                "aips_events": events}

    # --- inference ---------------------------------------------------------------------------------

    def infer(self, job: Job, repetition: int = 0) -> InferenceRecord:
        """One inference as `job` describes; returns its metrics record (status ok or error). With
        `job.deadline_s`, session setup, send and result all fit in that many seconds, or it is a `timeout`."""
        with self.runner.lock:
            plan = self.runner.plan(job.model, job.partition, job.input_size)
        self._deadline_s = job.deadline_s
        self._deadline = None if job.deadline_s is None else time.monotonic() + job.deadline_s
        try:
            session = self._ensure_session(job)
            if session.machine.needs_prepare(plan.partition_id, plan.input_size):
                with self._closing_on_failure(session):
                    self._prepare(session, plan)
            return Inference(self, session, job, plan, repetition).run()
        finally:
            self._deadline = self._deadline_s = None

    def _prepare(self, s: Session, plan: PartPlan) -> None:
        """Have the remote build this partition's tail before any measured window (and compare the cuts)."""
        request = s.machine.prepare(plan.partition_id, plan.input_size)
        s.transport.send([m.encode(request)], self.timeout(self.config.send_timeout_s))
        reply = s.transport.receive(self.timeout(self.config.result_timeout_s))[0]
        prepared = s.machine.prepared(reply, request, name=plan.name,
                                      cut=[(c.name, c.shape, c.dtype) for c in plan.cut])
        s.edge_devices[(plan.partition_id, plan.input_size)] = prepared.edge_device

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
            from splitbed.nodes.adaptive import run_adaptive

            return [run_adaptive(self, job, rep) for rep in range(job.repetitions)]
        return [dict(self.infer(job, rep)) for rep in range(job.repetitions)]


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
        for rec in records:
            _emit(out, rec)
            if on_record is not None:
                on_record(rec)
        errors = sum(1 for r in records if r.get("status") == "error")
        _emit(out, {"record_type": "job_done", "job_id": job_id, "records": len(records), "errors": errors})
    return failed


def _emit(out: TextIO, rec: dict[str, Any]) -> None:
    out.write(json.dumps(rec, separators=(",", ":"), allow_nan=False, default=str) + "\n")
    out.flush()

"""The edge side of one session as a sans-I/O state machine (docs/PROTOCOL.md): bytes in, actions out, the way
the format's Decoder turns bytes into events. It frames the uplink (splitbed.nodes.protocol), runs the
configuration stage, feeds AIPS and data units through the format decoder (formatio.FormatSession), counts units
for `after_unit`, stamps the first and last byte of each inference and times its decoding, and builds every
reply. What needs the world it asks for as an action and waits: `Infer` (run the tail on decoded tensors) and
`Build` (build a partition's tail for PREPARE); the remote node (remote.py) performs them and answers with
`result()`, `refuse()` or `built()`. It sends nothing itself: `Send` actions carry the messages, in order.

Pull it like the decoder: `receive(data, t_recv)`, then `next_action()` until it returns None (wants bytes).
After an Infer or Build it returns no further action until that request is answered, so a reply never carries
what arrived after the unit it answers. A peer that breaks the protocol raises ProtocolError (fatal: the node
sends `error_reply()` as its last words and closes). No sockets, threads or models here: the session is tested
against the UE machine in memory (tests/unit/nodes/test_nodes_session.py).

What the node shares between sessions comes in as objects, not I/O: the memory budget (splitbed.nodes.budget:
each unit's memory is reserved at its header, before a byte is kept, and released when its reply is built; a unit
that does not fit is skipped and answered `memory_budget`), and the shared secret (splitbed.nodes.auth: until a
peer proves it holds it, it gets the challenge and nothing else). Call `close()` when the session ends.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from splitbed.nodes import logsafe
from splitbed.nodes import messages as m
from splitbed.nodes import protocol as proto
from splitbed.nodes.auth import ServerHandshake
from splitbed.nodes.budget import BudgetRefused, MemoryBudget, Reservation
from splitbed.nodes.clock import now_ns
from splitbed.nodes.errors import ProtocolError
from splitbed.nodes.formatio import (
    DecodedTensors,
    FormatSession,
    decode_json_baseline,
    json_baseline_bytes,
    tensor_crc32,
)
from splitbed.nodes.protocol import ControlUnit, MsgType, UnitChunk, UnitEnd, UnitFramer, UnitStart, UnitWhole
from splitbed.nodes.runner import INFERENCE_CALL

UPLINK = proto.UPLINK_CONTROL | {MsgType.JSON_BASELINE}
log = logging.getLogger("splitbed.nodes.remote")


@dataclass(frozen=True)
class Send:
    message: m.Message


@dataclass(frozen=True)
class Infer:
    """Run the tail on these tensors, then call `result()` (or `refuse()` when they cannot run)."""

    seq: int
    after_unit: int
    decoded: DecodedTensors
    first_byte_ns: int      # read of the first byte of the inference's first unit
    last_byte_ns: int       # read of the last byte of its data unit
    decode_ms: float


@dataclass(frozen=True)
class Build:
    """PREPARE: build this partition's tail now, then call `built()` (or `refuse()`)."""

    after_unit: int
    partition_id: int
    input_size: tuple[int, int] | None


@dataclass(frozen=True)
class PeerFailed:
    """The local node reported an error: the session ends without a reply."""

    error: m.Error


Action = Send | Infer | Build | PeerFailed


class EdgeSession:
    """One session on the edge (see the module docstring). Not thread-safe: one per connection."""

    def __init__(self, offer: m.Offer, *, server: dict[str, Any] | None = None, secret: bytes | None = None,
                 budget: MemoryBudget | None = None, max_unit_bytes: int = proto.DEFAULT_MAX_UNIT_BYTES,
                 peer: str = "-", clock: Callable[[], int] = now_ns, perf: Callable[[], int] = time.perf_counter_ns,
                 new_session_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self.offer = offer
        self.server = server or {}   # host, software, GPU: sent in ACCEPT only, never to an unconfigured peer
        self.offered = tuple(model.name for model in offer.models)
        self.auth = ServerHandshake(secret)
        self.budget = budget if budget is not None else MemoryBudget()
        self.peer = peer
        self.max_unit_bytes = max_unit_bytes
        self.clock, self.perf, self.new_session_id = clock, perf, new_session_id
        self.framer = UnitFramer(max_unit_bytes=max_unit_bytes, accepted_control=frozenset(UPLINK),
                                 whole_units=True)
        self.fmt = FormatSession(max_unit_bytes)
        self.hello_seen = False
        self.configured = False
        self.select: m.Select | None = None
        self.session_id = ""
        self.units = 0               # uplink units completed since ACCEPT (replies say which one they answer)
        self.inferences = 0
        self._first_byte_ns: int | None = None  # of the current inference's first unit
        self._decode_ns = 0
        self._events: list[dict[str, Any]] = []
        self._frames: Iterator[proto.Frame] | None = None
        self._t_recv = 0
        self._out: deque[Action] = deque()
        self._pending: Infer | Build | None = None
        self._lead: tuple[Infer, int] | None = None   # a split RESULT's leading unit queued: its request, send stamp
        self._held: Reservation | None = None          # memory of the unit being received, until its reply
        self._refused: ProtocolError | None = None     # why the unit being received is skipped (answered at its end)

    # --- bytes in, actions out ---------------------------------------------------------------------------

    def receive(self, data: bytes | bytearray | memoryview, t_recv: int) -> None:
        """Bytes read at `t_recv` (CLOCK_MONOTONIC ns). Pull next_action() until None before the next call."""
        if self._frames is not None:
            raise RuntimeError("receive() before the actions of the previous bytes were pulled")
        if not self.framer.mid_unit:
            self._mark_first_byte(t_recv)
        self._t_recv = t_recv
        self._frames = self.framer.feed(data)

    def next_action(self) -> Action | None:
        """The next thing to do, or None when the machine wants bytes (or waits for a request's answer)."""
        while not self._out:
            if self._pending is not None or self._frames is None:
                return None
            frame = next(self._frames, None)
            if frame is None:
                self._frames = None
                return None
            self._on_frame(frame)
        return self._out.popleft()

    @property
    def waiting(self) -> Infer | Build | None:
        """The request the machine waits to be answered, if any."""
        return self._pending

    @property
    def mid_unit(self) -> bool:
        return self.framer.mid_unit

    @property
    def model(self) -> str:
        """The model this session selected (ProtocolError before SELECT)."""
        return self._selection().model

    def close(self) -> None:
        """The session ended: give back the memory still reserved."""
        self._release_unit()

    # --- answers to requests -----------------------------------------------------------------------------

    def result(self, request: Infer, *, partition_id: int, partition_name: str, preds: np.ndarray,
               tail_start_ns: int, tail_end_ns: int, lock_request_ns: int, queue_ms: float, built_ms: float,
               resources: dict[str, Any], concurrent_sessions: int, downlink_tcp: dict[str, Any] | None,
               last_byte_kernel: int | None, out_of_order: int | None, end_reason: str | None,
               inference_call: str = INFERENCE_CALL, edge_run: dict[str, Any] | None = None) -> None:
        """The tail ran: the RESULT (and with verify, the CHECKSUM behind it, outside every figure). After
        `result_lead()` (a session that asked for split RESULTs) the RESULT_REST with every member the leading
        unit left out, stamped with the leading unit's `remote_result_send` and its own `remote_result_rest_send`."""
        lead, self._lead = self._lead, None
        if lead is not None and lead[0] is not request:
            raise RuntimeError("the rest of a RESULT for another request than its leading unit")
        self._answered(request)
        self._release_unit()
        select = self._selection()
        row = np.asarray(preds).reshape(preds.shape[0], -1)[0]  # the scores as the tail gave them: float(x) is exact
        stamps = {"remote_first_byte": request.first_byte_ns, "remote_last_byte": request.last_byte_ns,
                  "remote_lock_request": lock_request_ns, "remote_tail_start": tail_start_ns,
                  "remote_tail_end": tail_end_ns, "remote_last_byte_kernel": last_byte_kernel}
        body: dict[str, Any] = (  # m.RESULT_LEADING first, in that order: the local node reads them at once
            {"after_unit": request.after_unit} if lead is not None else
            self._leading(request, partition_id, row, select))
        body.update({
            "seq": request.seq, "model": select.model, "partition_name": partition_name,
            "remote_model_inference_time": (tail_end_ns - tail_start_ns) / 1e9,
            "remote_inference_ms": (tail_end_ns - tail_start_ns) / 1e6,
            "remote_decode_ms": request.decode_ms, "remote_queue_wait_ms": queue_ms,
            "remote_tail_build_ms": built_ms,  # non-zero only when no PREPARE preceded the first inference
            "server_physical_gpus": self.server.get("gpu", {}).get("count"),
            "remote_resources": resources, "concurrent_sessions": concurrent_sessions,
            "carriage_extra": request.decoded.extra, "timestamps_ns": stamps,
            "inference_call": inference_call, "downlink_tcp": downlink_tcp,
            "uplink_out_of_order_packets": out_of_order, "uplink_end_reason": end_reason,
            "edge_run": edge_run,  # this run of the tail on the edge's device (None: nothing emulated)
        })
        if lead is not None:
            stamps["remote_result_send"] = lead[1]
            stamps[m.REST_STAMP] = self.clock()  # as remote_result_send: just before it is serialised and sent
            self._out.append(Send(m.ResultRest(request.after_unit, body)))
        else:
            stamps["remote_result_send"] = self.clock()
            self._out.append(Send(m.Result.outgoing(body)))
        if select.verify:
            self._out.append(Send(m.Checksum(request.after_unit,
                                             [tensor_crc32(a) for a in request.decoded.arrays])))

    def result_lead(self, request: Infer, *, partition_id: int, preds: np.ndarray) -> bool:
        """The tail ran, and the session asked for split RESULTs (SELECT `result_split`): the RESULT's leading
        unit now, with what the local node needs before `local_end` (docs/PROTOCOL.md 3.6); `result()` sends the
        rest when the node has its figures. False (nothing queued) when the session did not ask: `result()` then
        sends the whole RESULT."""
        if self._pending is not request:
            raise RuntimeError("a RESULT for a request the session is not waiting for")
        select = self._selection()
        if not select.result_split:
            return False
        row = np.asarray(preds).reshape(preds.shape[0], -1)[0]
        body = self._leading(request, partition_id, row, select)
        self._lead = (request, self.clock())  # remote_result_send: taken as the leading unit goes out
        self._out.append(Send(m.Result.outgoing(body)))
        return True

    def _leading(self, request: Infer, partition_id: int, row: np.ndarray, select: m.Select) -> dict[str, Any]:
        """A RESULT's m.RESULT_LEADING members, in that order, and in full mode every score."""
        top = m.top_classes(row, select.top_k)
        body: dict[str, Any] = {"after_unit": request.after_unit, "partition_id": partition_id,
                                "aips_events": self._take_events(), "top": [[i, score] for i, score in top]}
        if select.result_mode == "full":
            body["preds"] = row.tolist()  # the testbed contribution's json.dumps({'preds': ...}): Python floats
        return body

    def built(self, request: Build, *, partition_id: int, name: str, build_ms: float,
              cut: list[dict[str, Any]], edge_device: dict[str, Any] | None = None) -> None:
        self._answered(request)
        self._release_unit()
        self._out.append(Send(m.Prepared(request.after_unit, partition_id, name, build_ms, cut, edge_device)))

    def refuse(self, request: Infer | Build, code: str, message: str) -> None:
        """The request cannot be served (unknown partition, tensors that do not fit): a non-fatal ERROR."""
        self._answered(request)
        self._release_unit()
        self._out.append(Send(self.error_reply(code, message, fatal=False)))

    def error_reply(self, code: str, message: str, *, fatal: bool) -> m.Error:
        """An ERROR answering the last unit, with the AIPS events since the previous reply."""
        if not fatal:
            self._first_byte_ns, self._decode_ns = None, 0
        return m.Error(code, message, fatal, self._take_events(), None, self.units)

    # --- frames ------------------------------------------------------------------------------------------

    def _on_frame(self, frame: proto.Frame) -> None:
        if isinstance(frame, UnitWhole):  # start, value and end of a format unit at once: as the three below
            if self._start_format_unit(frame.unit_type, frame.length, whole=True):
                if self._decode_whole(frame):
                    return
                self._feed_format(frame.unit)
            self._end_format_unit()
        elif isinstance(frame, UnitStart):
            if frame.unit_type == MsgType.JSON_BASELINE:
                self._start_json_unit(frame)
                return
            if self._start_format_unit(frame.unit_type, frame.length, whole=False):
                self._feed_format(frame.header)
        elif isinstance(frame, UnitChunk):
            if self._refused is None:
                self._feed_format(frame.data)
        elif isinstance(frame, UnitEnd):
            self._end_format_unit()
        elif frame.unit_type == MsgType.JSON_BASELINE:
            self._on_json_baseline(frame)
        else:
            self._on_control(frame.unit_type, proto.decode_control(frame.unit_type, frame.payload))
            if self._pending is None:
                self._release_unit()

    def _start_format_unit(self, unit_type: int, length: int, *, whole: bool) -> bool:
        """A format unit's header: whether its bytes are to be fed to the format decoder (False: refused, answered
        at its end). `whole`: the unit came whole (UnitWhole), so there is nothing left for the framer to skip."""
        self._require_configured(f"unit of type {unit_type}")
        self._mark_first_byte(self._t_recv)
        if self._selection().encoding != "tlv":
            raise ProtocolError("unexpected_message", "AIPS/intermediate data units on a session configured "
                                "for the json-baseline carriage")
        return self._hold(self.fmt.unit_bytes(unit_type, length), f"type {unit_type} unit of {length} bytes",
                          skip=not whole)

    def _decode_whole(self, frame: UnitWhole) -> bool:
        """A data unit in the steady state decoded at once (FormatSession.decode_whole), ended and asked to be
        inferred as _end_format_unit would; False (nothing done) when it must be fed and drained."""
        start = self.perf()
        decoded = self.fmt.decode_whole(frame.unit_type, frame.unit)
        self._decode_ns += self.perf() - start
        if decoded is None:
            return False
        self.units += 1
        self._infer(decoded)
        return True

    def _end_format_unit(self) -> None:
        self.units += 1
        if self._refused is not None:
            refused, self._refused = self._refused, None
            self._out.append(Send(self.error_reply(refused.code, refused.message, fatal=False)))
            return
        self._drain_format()
        if self._pending is None:
            self._release_unit()  # an AIPS, an unknown type, an error: nothing of it is held any more

    def _hold(self, nbytes: int, what: str, *, skip: bool = True) -> bool:
        """Reserve the unit's memory from the node's budget before keeping a byte of it; if it does not fit,
        skip the unit (answered `memory_budget` at its end; `skip`: tell the framer to count off the rest of it)
        and return False."""
        try:
            self._held = self.budget.reserve(nbytes, what)
        except BudgetRefused as exc:
            log.warning("session %s from %s: refused a unit: %s", self.session_id or "-", self.peer, exc.message)
            self._skip_unit(exc, framer=skip)
            return False
        return True

    def _skip_unit(self, reason: ProtocolError, *, framer: bool = True) -> None:
        self._refused = reason
        if framer:
            self.framer.skip_unit()

    def _release_unit(self) -> None:
        if self._held is not None:
            self._held.release()
            self._held = None

    def _start_json_unit(self, frame: UnitStart) -> None:
        """A JSON-baseline unit is refused at its header, before a byte of it is buffered, unless this session
        was configured for that carriage and the node's memory budget has room to assemble it."""
        self._require_configured("JSON_BASELINE unit")
        if self._selection().encoding != "json-baseline":
            self._skip_unit(ProtocolError("unexpected_message", "JSON_BASELINE unit on a session configured for "
                                          "the tlv carriage", fatal=False))
            return
        self._hold(frame.length + (frame.length >> 3) + 64, f"JSON-baseline unit of {frame.length} bytes")

    def _require_configured(self, what: str) -> None:
        if not self.configured:
            raise ProtocolError("unexpected_message", f"{what} before the configuration stage finished "
                                "(send HELLO, then SELECT, and wait for ACCEPT)")

    def _mark_first_byte(self, t_recv: int) -> None:
        if self._first_byte_ns is None and self.configured:
            self._first_byte_ns = t_recv

    def _feed_format(self, data: bytes | memoryview) -> None:
        start = self.perf()
        self.fmt.feed(data)
        self._decode_ns += self.perf() - start

    def _drain_format(self) -> None:
        start = self.perf()
        outcome = self.fmt.drain()
        self._decode_ns += self.perf() - start
        self._events.extend(outcome.events)
        for error in outcome.errors:
            if error.fatal:
                raise error
            self._out.append(Send(self.error_reply(error.code, error.message, fatal=False)))
        if outcome.complete is not None:
            self._infer(outcome.complete)

    def _on_json_baseline(self, unit: ControlUnit) -> None:
        """Configured for this carriage (checked at its header, _start_json_unit)."""
        self._mark_first_byte(self._t_recv)
        self.units += 1
        try:  # what json.loads will build, before it builds it (a count, outside the timed decode)
            if self._held is not None:
                self._held.grow(json_baseline_bytes(unit.payload))
        except BudgetRefused as exc:
            log.warning("session %s from %s: refused a unit: %s", self.session_id or "-", self.peer, exc.message)
            self._out.append(Send(self.error_reply(exc.code, exc.message, fatal=False)))
            self._release_unit()
            return
        start = self.perf()
        try:
            decoded = decode_json_baseline(unit.payload, self.max_unit_bytes)
        except ProtocolError as exc:
            self._out.append(Send(self.error_reply(exc.code, exc.message, fatal=False)))
            self._release_unit()
            return
        self._decode_ns += self.perf() - start
        self._infer(decoded)

    def _infer(self, decoded: DecodedTensors) -> None:
        first = self._first_byte_ns if self._first_byte_ns is not None else self._t_recv
        request = Infer(self.inferences, self.units, decoded, first, self._t_recv, self._decode_ns / 1e6)
        self._first_byte_ns, self._decode_ns = None, 0
        self.inferences += 1
        self._ask(request)

    def _on_control(self, kind: MsgType, body: dict[str, Any]) -> None:
        """State first, then the message's fields: a message that is wrong now is `unexpected_message` whatever
        its fields say."""
        if not self.auth.authenticated and kind != MsgType.HELLO:
            raise ProtocolError("unauthenticated", f"{kind.name} before authentication: this remote node serves only "
                                "peers that hold its shared secret (HELLO with the proof first)")
        if kind == MsgType.HELLO:
            if self.configured:
                raise ProtocolError("unexpected_message", "HELLO after the configuration stage")
            message = m.Hello.from_body(body)
            if message.protocol_version != proto.PROTOCOL_VERSION:
                raise ProtocolError("unsupported_protocol_version", f"this remote node speaks protocol "
                                    f"{proto.PROTOCOL_VERSION}, the local node {message.protocol_version}")
            offer = self.offer
            if not self.auth.authenticated:
                proof = self.auth.answer(body)
                if proof is None:  # the challenge: nothing else about this node before the peer proves itself
                    self._out.append(Send(m.Offer(auth=self.auth.challenge())))
                    return
                log.info("peer %s authenticated", self.peer)
                offer = dataclasses.replace(offer, auth=proof)
            self.hello_seen = True
            self._out.append(Send(offer))
        elif kind == MsgType.CLOCK_PING:
            ping = m.ClockPing.from_body(body)
            after = None
            if self.configured:
                self.units += 1
                after = self.units
            self._out.append(Send(m.ClockPong(ping.t1, self._t_recv, self.clock(), after)))
            self._first_byte_ns = None
        elif kind == MsgType.SELECT:
            self._on_select(body)
        elif kind == MsgType.RESET:
            self._require_configured("RESET")
            self.units += 1
            self._events.extend(self.fmt.reset())
            self._first_byte_ns, self._decode_ns = None, 0
            self._out.append(Send(m.ResetDone(self.units, self._take_events())))
        elif kind == MsgType.PREPARE:
            self._require_configured("PREPARE")
            self.units += 1
            self._first_byte_ns = None
            prepare = m.Prepare.from_body(body)
            self._ask(Build(self.units, prepare.partition_id, prepare.input_size))
        elif kind == MsgType.ERROR:
            self._out.append(PeerFailed(m.Error.from_body(body)))

    def _on_select(self, body: dict[str, Any]) -> None:
        if self.configured:
            raise ProtocolError("unexpected_message", "SELECT after ACCEPT: open a new session to reconfigure")
        if not self.hello_seen:
            raise ProtocolError("unexpected_message", "SELECT before HELLO")
        select = m.Select.from_body(body)
        refusal = select.refusal(self.offered)
        if refusal is not None:
            raise refusal
        self.select = select
        self.session_id = logsafe.session_id(select.session_id) or self.new_session_id()
        self.fmt.new_session()
        self.configured = True
        self._first_byte_ns = None
        model = self.offer.model(select.model)
        log.info("session %s from %s: model %s, %s carriage", self.session_id, self.peer, select.model,
                 select.encoding)
        self._out.append(Send(m.Accept(self.session_id, select.model, select.encoding, str(select.result_mode),
                                       int(select.top_k), select.verify, None if model is None else model.weights,
                                       self.server, select.result_split)))

    # --- helpers ---------------------------------------------------------------------------------------

    def _selection(self) -> m.Select:
        if self.select is None:
            raise ProtocolError("unexpected_message", "no SELECT yet")
        return self.select

    def _ask(self, request: Infer | Build) -> None:
        self._pending = request
        self._out.append(request)

    def _answered(self, request: Infer | Build) -> None:
        if self._pending is not request:
            raise RuntimeError("an answer to a request the session is not waiting for")
        self._pending = None

    def _take_events(self) -> list[dict[str, Any]]:
        events, self._events = self._events, []
        return events

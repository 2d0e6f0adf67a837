"""One connection of the remote node: the socket loop around the edge session machine (edge_session).

The machine speaks the protocol; this driver reads the socket (with the receive clock's kernel stamps,
rxstamp), enforces the timeouts (configuration stage, read progress, a unit's time against its size at the
minimum rate, idle sessions), tells admission how the session is doing (its Slot: idle or receiving, how fast),
performs what the machine asks (`Infer`: the tail under the node's model lock, timed and metered; `Build`: a
partition's tail for PREPARE) and sends the machine's messages. A protocol error is answered with a fatal ERROR
as last words and the connection closed; the other sessions go on.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from typing import TYPE_CHECKING, Any, cast

from splitbed.nodes import messages as m
from splitbed.nodes import rxstamp
from splitbed.nodes.admission import Slot
from splitbed.nodes.clock import now_ns
from splitbed.nodes.edge_session import Build, EdgeSession, Infer, PeerFailed, Send
from splitbed.nodes.errors import ConfigurationError, NodeError, NodeTimeout, PeerClosed, ProtocolError
from splitbed.nodes.runner import ModelRunner
from splitbed.nodes.wire import RECV_CHUNK, send_pieces

if TYPE_CHECKING:
    from splitbed.nodes.remote import ServerState

log = logging.getLogger("splitbed.nodes.remote")

POLL_S = 0.2  # how often a blocked read looks at the shutdown flag


class _Abort(Exception):
    """Leave the session loop: the connection is closed (after an error reply, or on shutdown)."""


class EdgeConnection:
    """One connection: configuration stage, then units until the peer closes, an error, or shutdown."""

    def __init__(self, state: ServerState, conn: socket.socket, peer: tuple[Any, ...], slot: Slot) -> None:
        self.state = state
        self.cfg = state.config
        self.conn = conn
        self.peer = f"{peer[0]}:{peer[1]}"
        self.slot = slot  # what admission sees of this session: idle or receiving, and how fast
        self.rate = self.cfg.rate_policy()
        self.machine = EdgeSession(state.offer, server=state.server_info, secret=self.cfg.secret,
                                   budget=state.budget, max_unit_bytes=self.cfg.max_unit_bytes, peer=self.peer)
        self.rx = rxstamp.ReceiveClock(conn)  # reads, and when their bytes arrived
        if conn.family == socket.AF_UNIX:  # the QUIC binding's bridge (nodes.quic): stamps would be the bridge's
            self.rx.enabled, self.rx.off_reason = False, rxstamp.USERSPACE_TRANSPORT
        self._buf = bytearray(RECV_CHUNK)

    @property
    def session_id(self) -> str:
        return self.machine.session_id

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
            self.machine.close()
            try:
                self.conn.close()
            except OSError:
                pass

    def _last_words(self, code: str, message: str) -> None:
        """A fatal error reply just before closing; if even that cannot be sent, closing says it all."""
        try:
            self._send(self.machine.error_reply(code, message, fatal=True))
        except _Abort:
            pass

    def _loop(self) -> None:
        cfg, machine, slot = self.cfg, self.machine, self.slot
        config_deadline = time.monotonic() + cfg.config_timeout_s
        last_progress = time.monotonic()
        while True:
            now = time.monotonic()
            if slot.evicted is not None:
                log.warning("session %s from %s: %s", slot.label, self.peer, slot.evicted)
                self._send(machine.error_reply("evicted", f"the remote node is full and this session was "
                                               f"{slot.evicted}", fatal=True))
                raise _Abort
            if self.state.stopping.is_set() and not machine.mid_unit and not self._readable_now():
                # Bytes already received are in-flight work: they are served first (the grace period bounds it).
                self._send(machine.error_reply("shutting_down", "the remote node is shutting down", fatal=True))
                raise _Abort
            if not machine.configured and now > config_deadline:
                raise NodeTimeout(f"configuration stage not finished within {cfg.config_timeout_s:g} s")
            if machine.mid_unit:
                if now - last_progress > cfg.read_timeout_s:
                    raise NodeTimeout(f"no bytes for {cfg.read_timeout_s:g} s in the middle of a unit")
                if slot.overdue_s(now, self.rate) > 0:
                    elapsed = now - (slot.unit_started or now)
                    raise NodeTimeout(f"a {machine.framer.unit_length}-byte unit did not arrive within the time its "
                                      f"progress allows: {slot.unit_received} bytes in {elapsed:.1f} s, slower than "
                                      f"{self.rate.min_rate_bps:g} B/s after a {self.rate.base_s:g} s allowance")
            elif slot.idle_s(now) > cfg.idle_timeout_s:
                raise NodeTimeout(f"session idle for more than {cfg.idle_timeout_s:g} s")
            self.conn.settimeout(POLL_S)
            try:
                n, t_recv = self.rx.recv_into(self._buf)
            except TimeoutError:
                continue
            except ConnectionResetError as exc:
                raise PeerClosed(f"connection reset: {exc}") from None
            if n == 0:
                if machine.mid_unit:
                    raise PeerClosed(f"peer closed in the middle of a {machine.framer.unit_length}-byte unit "
                                     "(truncated unit discarded)")
                raise PeerClosed("peer closed the session")
            last_progress = time.monotonic()
            if slot.idle_since is not None:
                slot.unit_begins(last_progress)  # busy from here until the units of this read are answered
            started_before = machine.framer.units_started
            machine.receive(memoryview(self._buf)[:n], t_recv)
            while (action := machine.next_action()) is not None:
                self._perform(action)
            if machine.mid_unit:
                if machine.framer.units_started != started_before:
                    slot.unit_begins(time.monotonic())  # the unit still open began in this recv, after its replies
                slot.unit_progress(machine.framer.unit_received)
            else:
                slot.at_rest(time.monotonic())

    def _readable_now(self) -> bool:
        readable, _, _ = select.select([self.conn], [], [], 0)
        return bool(readable)

    # --- what the machine asks for ----------------------------------------------------------------------

    def _perform(self, action: object) -> None:
        if isinstance(action, Send):
            self._send(action.message)
            if isinstance(action.message, m.Accept):
                self.slot.label = action.message.session_id
        elif isinstance(action, Infer):
            self._infer(action)
        elif isinstance(action, Build):
            self._build(action)
        elif isinstance(action, PeerFailed):
            log.warning("session %s: local node reported an error: %s", self.session_id, action.error.to_body())
            raise _Abort

    def _build(self, request: Build) -> None:
        runner = self.state.runner
        with runner.lock:
            try:
                plan = runner.plan(self.machine.model, request.partition_id,
                                   None if request.input_size is None else list(request.input_size))
            except ConfigurationError as exc:
                self.machine.refuse(request, "unknown_partition", str(exc))
                return
            edge_device = runner.device_figures(plan)  # the partition's device plan; each RESULT adds its run
        build_ms = 0.0 if plan.build_reported else plan.build_ms
        plan.build_reported = True
        self.machine.built(request, partition_id=plan.partition_id, name=plan.name, build_ms=build_ms,
                           cut=[{"tensor_id": c.tensor_id, "name": c.name, "shape": list(c.shape), "dtype": c.dtype}
                                for c in plan.cut], edge_device=cast(dict[str, Any] | None, edge_device))

    def _infer(self, request: Infer) -> None:
        """The tail on the decoded tensors, under the node's model lock (its wait is remote_queue_wait_ms)."""
        state, decoded = self.state, request.decoded
        t_lock = now_ns()
        with state.runner.lock:
            t_locked = now_ns()
            try:
                plan = state.runner.plan_for(self.machine.model, decoded.partition_id, decoded.arrays)
            except ConfigurationError as exc:
                self.machine.refuse(request, "unknown_partition", str(exc))
                return
            built_now = 0.0 if plan.build_reported else plan.build_ms
            plan.build_reported = True
            try:
                arrays = ModelRunner.check_tensors(plan, decoded.arrays, self.cfg.max_batch)
            except ProtocolError as exc:
                self.machine.refuse(request, exc.code, exc.message)
                return
            window = state.meter.start()
            t_tail = now_ns()
            preds = ModelRunner.run_tail(plan, arrays)
            t_tail_end = now_ns()
            ended = state.meter.end(window)
            # One TCP_INFO reading, decoded below: the window the RESULT starts with, and the uplink's out-of-order
            # packets since the previous reply (the local node sends nothing between its data unit and the RESULT,
            # so the count is the one at the data's last byte; the kernel stamp of that byte is the read's, kept by
            # the ReceiveClock). Read before a split RESULT's leading unit goes: its bytes are not in the state.
            tcp_info = self.rx.info.read()
            # A session that asked for split RESULTs gets the leading unit now, before the meter reads its
            # counters (still under the lock: the high-water mark is the process's); the rest follows them.
            if self.machine.result_lead(request, partition_id=plan.partition_id, preds=preds):
                self._send_queued()
            resources = state.meter.finish(window, ended)
            edge_run = ModelRunner.device_run(plan)  # under the lock: this run's outcome (None: nothing emulated)
        last_byte_kernel, out_of_order, no_stamp_reason = self.rx.arrival(self.rx.kernel_ns, tcp_info=tcp_info)
        self.machine.result(request, partition_id=plan.partition_id, partition_name=plan.name, preds=preds,
                            tail_start_ns=t_tail, tail_end_ns=t_tail_end, lock_request_ns=t_lock,
                            queue_ms=(t_locked - t_lock) / 1e6, built_ms=built_now, resources=cast(dict[str, Any], resources),
                            concurrent_sessions=state.active_sessions(), downlink_tcp=self.rx.info.state(tcp_info),
                            last_byte_kernel=last_byte_kernel, out_of_order=out_of_order, end_reason=no_stamp_reason,
                            inference_call=state.runner.inference_call(self.machine.model), edge_run=edge_run)

    def _send_queued(self) -> None:
        """Send what the machine queued while its request is still open (a split RESULT's leading unit). Not a
        reply's end: the out-of-order count goes on to the RESULT_REST, which reads it."""
        while (action := self.machine.next_action()) is not None:
            assert isinstance(action, Send), action
            self._send(action.message, mark=False)

    def _send(self, message: m.Message, *, mark: bool = True) -> None:
        try:
            send_pieces(self.conn, [m.encode(message)], self.cfg.send_timeout_s)
        except (NodeError, OSError) as exc:
            if isinstance(message, m.Error):
                log.info("session %s: could not send the error reply (%s)", self.session_id or "-", exc)
                raise _Abort from None
            raise
        if mark:
            self.rx.mark()  # the local node's next transfer follows a reply: count its out-of-order packets afresh

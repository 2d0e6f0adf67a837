"""The forwarder: moves Ethernet frames between the link's two interfaces through the direction pipelines.

Runs inside the middle namespace with one AF_PACKET socket per interface: frames read on the ue-side socket
go through the uplink pipeline and out of the edge-side socket, and the reverse for the downlink. One event
loop serves both directions and the control channel: it sleeps (select) until a socket is readable or the
earliest due time of any stage, then sends every frame that is due.

What makes plain Python fast enough here (docs/LINK.md has the measurements): every wake-up drains up to
``batch`` frames per socket with non-blocking ``recv_into`` into one preallocated buffer; a direction without
impairments forwards each frame straight from that buffer (no copy, no pipeline); PACKET_IGNORE_OUTGOING keeps
the sockets from reading back the frames we send; PACKET_QDISC_BYPASS sends without a qdisc; large socket
buffers absorb bursts; the timer slack is set to 1 ns so select wakes when asked, the loop busy-polls the
last ``spin_us`` before a due time, and the process runs under SCHED_FIFO so a busy host does not delay it.
"""

from __future__ import annotations

import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from netem.errors import LinkError
from netem.link import control
from netem.link.histogram import LatencyHistogram
from netem.link.log import DIRECTION_LETTER, LinkLog
from netem.link.options import ForwarderOptions
from netem.link.pipeline import DirectionPipeline, build_stages
from netem.link.sockets import (
    PACKET_OUTGOING,
    SCM_TIMESTAMPNS,
    TIMESPEC,
    TIMESTAMP_CMSG_SPACE,
    enable_timestamps,
    read_socket_drops,
)
from netem.link.timing import SpinBudget, apply_scheduling, set_timer_slack
from netem.profile import LinkProfile

MSG_TRUNC = socket.MSG_TRUNC
ETHERNET_HEADER_BYTES = 14
VLAN_TAG_BYTES = 4
#: Receive buffer: large enough for any frame a veth can hand over (64 KiB GSO + headers), so an oversize
#: frame is measured and refused rather than silently truncated.
RX_BUFFER_BYTES = 65536 + 512
REPLY_TIMEOUT_S = 5.0
#: A kernel receive stamp older than this (or in the future) is not trusted (e.g. the wall clock was stepped).
MAX_STAMP_AGE_NS = 1_000_000_000
MAX_NOTES = 16


class _Terminate(Exception):
    """Raised from the SIGTERM handler to leave the event loop at once."""


class Forwarder:
    """The event loop of the link process: two sockets, two pipelines, one control channel."""

    def __init__(
        self,
        ue_sock: socket.socket,
        edge_sock: socket.socket,
        profile: LinkProfile,
        *,
        max_frame_ue: int = 1500 + ETHERNET_HEADER_BYTES,
        max_frame_edge: int = 1500 + ETHERNET_HEADER_BYTES,
        options: ForwarderOptions | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
        packet_sockets: bool = True,
    ) -> None:
        self.options = options or ForwarderOptions()
        self.ue_sock = ue_sock
        self.edge_sock = edge_sock
        self.clock = clock
        now = clock()
        self.started_ns = now
        self.profile = profile
        self.uplink = DirectionPipeline("uplink", profile.uplink, now)
        self.downlink = DirectionPipeline("downlink", profile.downlink, now)
        self.max_frame_ue = max_frame_ue
        self.max_frame_edge = max_frame_edge
        # A frame read on the ue socket leaves on the edge socket: its size limit is the edge side's MTU.
        self._limit = {ue_sock.fileno(): max_frame_edge, edge_sock.fileno(): max_frame_ue}
        self._packet_sockets = packet_sockets
        self._check_outgoing = packet_sockets and not self.options.ignore_outgoing
        self._buffer = bytearray(RX_BUFFER_BYTES)
        self._view = memoryview(self._buffer)
        self._buffers = [self._buffer]
        self._timestamps = self.options.kernel_timestamps and enable_timestamps(ue_sock, edge_sock)
        self._stopping = False
        self.spin = SpinBudget(self.options.spin_us * 1000, self.options.min_sleep_percent / 100)
        self.wakeups = 0
        self.updates = 0
        #: How much later than asked select returned when it timed out: the host's wake-up latency.
        self.oversleep = LatencyHistogram()
        #: Time from waking up to going back to sleep, per loop turn: the forwarder's own work.
        self.busy = LatencyHistogram()
        self.notes: list[str] = []
        self._oversize_noted = False
        self.rx_errors = 0
        self.scheduling = "not started"
        self.log: LinkLog | None = LinkLog(self.options.log_path, profile, now) if self.options.log_path else None

    # ----------------------------------------------------------------------------------------------- receive
    def _receive(self, src: socket.socket, dst: socket.socket, pipeline: DirectionPipeline) -> None:
        """Drain up to ``batch`` frames from ``src``: forward at once (fast path) or push into the pipeline.

        A shaped direction reads each frame with its kernel receive timestamp (SO_TIMESTAMPNS, converted to the
        monotonic clock), so the time the frame waited for this loop to wake up counts as link time instead of
        being added on top of the profile's delay.
        """
        buffer, view = self._buffer, self._view
        limit = self._limit[src.fileno()]
        counters = pipeline.counters
        fast = pipeline.fast
        send = dst.send
        clock = self.clock
        check_outgoing = self._check_outgoing
        stamped = not fast and self._timestamps
        buffers = self._buffers
        offset = time.time_ns() - clock() if stamped else 0
        recv_into = src.recv_into
        log = self.log
        letter = DIRECTION_LETTER[pipeline.name]
        packets = nbytes = 0
        for _ in range(self.options.batch):
            try:
                if stamped:
                    size, ancillary, _flags, address = src.recvmsg_into(buffers, TIMESTAMP_CMSG_SPACE, MSG_TRUNC)
                    if check_outgoing and address[2] == PACKET_OUTGOING:
                        continue
                elif check_outgoing:
                    size, address = src.recvfrom_into(buffer, 0, MSG_TRUNC)
                    if address[2] == PACKET_OUTGOING:
                        continue
                else:
                    size = recv_into(buffer, 0, MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ENETDOWN: reported once by the socket, then cleared
                self.rx_errors += 1
                self._note(f"{pipeline.name}: receive error: {exc.strerror or exc} (interface down or removed?)")
                break
            if size == 0:  # a packet socket never reads an empty frame; a closed stream-like peer does
                break
            if size > limit and not self._fits_tagged(size, limit):
                counters.rx_packets += 1
                counters.rx_bytes += size
                counters.drops["oversize"] += 1
                if not self._oversize_noted:
                    self._oversize_noted = True
                    self._note(
                        f"{pipeline.name}: dropped a {size}-byte frame larger than the {limit}-byte limit "
                        "(egress MTU + Ethernet header): turn off GRO/GSO/TSO on the link's veths"
                    )
                continue
            if fast:
                try:
                    send(view[:size])
                except OSError:
                    counters.drops["tx_error"] += 1
                    counters.rx_packets += 1
                    counters.rx_bytes += size
                    continue
                packets += 1
                nbytes += size
                if log is not None:
                    now = clock()
                    log.arrival(letter, now, size)
                    log.departure(letter, now, size, 0)
            else:
                now = clock()
                arrival = now
                if stamped and ancillary:
                    level, kind, data = ancillary[0]
                    if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(data) >= 16:
                        seconds, nanoseconds = TIMESPEC.unpack_from(data)
                        stamp = seconds * 1_000_000_000 + nanoseconds - offset
                        if now - MAX_STAMP_AGE_NS <= stamp <= now:
                            arrival = stamp
                pipeline.push(bytes(view[:size]), arrival)
                if log is not None:
                    log.arrival(letter, arrival, size)
        if packets:
            counters.rx_packets += packets
            counters.rx_bytes += nbytes
            counters.tx_packets += packets
            counters.tx_bytes += nbytes

    def _note(self, text: str) -> None:
        """Keep the first few distinct notes for stats() (bounded: a flapping interface cannot grow it)."""
        if text not in self.notes and len(self.notes) < MAX_NOTES:
            self.notes.append(text)

    def _fits_tagged(self, size: int, limit: int) -> bool:
        """An 802.1Q-tagged frame may be 4 bytes longer than the limit."""
        return size <= limit + VLAN_TAG_BYTES and self._buffer[12:14] == b"\x81\x00"

    # -------------------------------------------------------------------------------------------------- send
    def _send_due(self) -> None:
        for pipeline, dst in ((self.uplink, self.edge_sock), (self.downlink, self.ue_sock)):
            if pipeline.fast:
                continue
            now = self.clock()
            items = pipeline.pop_due(now)
            if items:
                self._send(pipeline, dst, items, now)

    def _send(self, pipeline: DirectionPipeline, dst: socket.socket, items: list, now: int) -> None:
        send = dst.send
        log = self.log
        letter = DIRECTION_LETTER[pipeline.name]
        for item in items:
            try:
                send(item[2])
            except OSError:
                pipeline.counters.drops["tx_error"] += 1
                continue
            pipeline.record_sent(item, now)
            if log is not None:
                log.departure(letter, now, len(item[2]), now - item[1])

    def next_due(self) -> int | None:
        earliest = None
        for pipeline in (self.uplink, self.downlink):
            if not pipeline.fast:
                due = pipeline.next_due()
                if due is not None and (earliest is None or due < earliest):
                    earliest = due
        return earliest

    def _timeout(self) -> float | None:
        due = self.next_due()
        now = self.clock()
        return self.spin.timeout(None if due is None else due - now, now)

    # ------------------------------------------------------------------------------------------------ control
    def update(self, profile: LinkProfile) -> dict[str, int]:
        """Switch both directions to ``profile`` live; returns the frames carried over per direction."""
        now = self.clock()
        # Build both directions first, so a bad trace file leaves the running profile untouched.
        new_up = build_stages(profile.uplink, now)
        new_down = build_stages(profile.downlink, now)
        carried = {
            "uplink": self.uplink.reconfigure(profile.uplink, now, new_up),
            "downlink": self.downlink.reconfigure(profile.downlink, now, new_down),
        }
        self.profile = profile
        self.updates += 1
        if self.log is not None:
            self.log.profile(profile)
        for pipeline, dst in ((self.uplink, self.edge_sock), (self.downlink, self.ue_sock)):
            items = pipeline.take_carried()
            if items:
                self._send(pipeline, dst, items, self.clock())
        return carried

    def _collect_socket_drops(self) -> None:
        if not self._packet_sockets:
            return
        for sock, pipeline in ((self.ue_sock, self.uplink), (self.edge_sock, self.downlink)):
            pipeline.counters.drops["socket_overflow"] += read_socket_drops(sock)

    def stats(self) -> dict[str, Any]:
        """JSON-able counters of both directions and of the loop."""
        self._collect_socket_drops()
        return {
            "profile": self.profile.name,
            "uptime_s": round((self.clock() - self.started_ns) / 1e9, 6),
            "uplink": self.uplink.stats(),
            "downlink": self.downlink.stats(),
            "wakeups": self.wakeups,
            "oversleep_ms": self.oversleep.summary_ms(),
            "busy_ms": self.busy.summary_ms(),
            "spins": self.spin.spins,
            "spins_capped": self.spin.capped,
            "updates": self.updates,
            "options": self.options.to_dict(),
            "scheduling": self.scheduling,
            "rx_errors": self.rx_errors,
            "kernel_timestamps": self._timestamps,
            "notes": list(self.notes),
        }

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request."""
        op = message.get("op")
        if op == "stats":
            return {"ok": True, "stats": self.stats()}
        if op == "ping":
            return {"ok": True}
        if op == "update":
            data = message.get("profile")
            if not isinstance(data, dict):
                return {"ok": False, "error": "update needs a 'profile' object (LinkProfile.to_dict())"}
            try:
                profile = LinkProfile.from_dict(data)
                carried = self.update(profile)
            except Exception as exc:  # report any bad profile/trace; the running profile stays
                return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            return {"ok": True, "carried": carried, "profile": profile.name}
        if op == "stop":
            self._stopping = True
            return {"ok": True, "stats": self.stats()}
        return {"ok": False, "error": f"unknown op {op!r}; known: stats, update, stop, ping"}

    def _serve_control(self, sock: socket.socket, buffer: control.LineBuffer) -> bool:
        """Read and answer control requests; False when the parent closed the channel."""
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return True
        if not data:
            return False
        try:
            buffer.feed(data)
        except LinkError as exc:
            self._reply(sock, {"ok": False, "error": str(exc)})
        while (line := buffer.pop()) is not None:
            try:
                reply = self.handle(control.decode(line))
            except LinkError as exc:
                reply = {"ok": False, "error": str(exc)}
            self._reply(sock, reply)
        return True

    @staticmethod
    def _reply(sock: socket.socket, message: dict[str, Any]) -> None:
        """Send one reply, waiting at most a few seconds for a parent that does not read."""
        sock.settimeout(REPLY_TIMEOUT_S)
        try:
            sock.sendall(control.encode(message))
        finally:
            sock.setblocking(False)

    # -------------------------------------------------------------------------------------------------- loop
    def prepare(self) -> None:
        """Timer slack and scheduling for this process (once; `serve` calls it if the caller did not)."""
        if self.scheduling != "not started":
            return
        set_timer_slack(self.options.timer_slack_ns)
        self.scheduling = apply_scheduling(self.options.realtime_priority)

    def serve(self, control_sock: socket.socket | None = None, *, duration_s: float | None = None) -> dict[str, Any]:
        """Forward until a ``stop`` request, SIGTERM, the control channel closing, or ``duration_s``."""
        self.prepare()
        if self._packet_sockets:  # reading the statistics resets them: count from here
            read_socket_drops(self.ue_sock)
            read_socket_drops(self.edge_sock)
        buffer = control.LineBuffer()
        rlist: list[socket.socket] = [self.ue_sock, self.edge_sock]
        if control_sock is not None:
            control_sock.setblocking(False)
            rlist.append(control_sock)
        deadline = None if duration_s is None else self.clock() + int(duration_s * 1e9)
        ue, edge = self.ue_sock, self.edge_sock
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM)
        if in_main_thread:
            signal.signal(signal.SIGTERM, _raise_terminate)
        try:
            while not self._stopping:
                timeout = self._timeout()
                if deadline is not None:
                    left = max(0.0, (deadline - self.clock()) / 1e9)
                    if left == 0.0:
                        break
                    timeout = left if timeout is None else min(timeout, left)
                if timeout == 0.0:
                    readable, _, _ = select.select(rlist, [], [], 0.0)
                    woke = self.clock()
                else:
                    before = self.clock()
                    readable, _, _ = select.select(rlist, [], [], timeout)
                    woke = self.clock()
                    self.spin.slept(woke - before)
                    if not readable and timeout is not None:  # timed out: how late did select return?
                        self.oversleep.record_ns(woke - before - int(timeout * 1e9))
                self.wakeups += 1
                for sock in readable:
                    if sock is ue:
                        self._receive(ue, edge, self.uplink)
                    elif sock is edge:
                        self._receive(edge, ue, self.downlink)
                    elif not self._serve_control(sock, buffer):
                        self._stopping = True
                self._send_due()
                self.busy.record_ns(self.clock() - woke)
        except _Terminate:
            self._stopping = True
        finally:
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous)
        return self.stats()


def close_log(forwarder: Forwarder) -> None:
    """Flush and close the per-packet log, if any (the link process does this on every way out)."""
    if forwarder.log is not None:
        forwarder.log.close()


def _raise_terminate(signum: int, frame: object) -> None:
    raise _Terminate()

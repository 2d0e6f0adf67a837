"""One inference on the local node, step by step: preprocess, head, encode and send (the local half), then the
replies up to the RESULT, the timing figures derived from both nodes' stamps and the record filled from them
(the remote half). The protocol decisions are the session machine's (ue_session), the arithmetic timing's,
the record's layout record's; this module runs the models, reads the clocks and drives the transport.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np

from splitbed.devices.figures import complete as complete_devices
from splitbed.devices.figures import with_run
from splitbed.nodes import formatio, record, rxstamp
from splitbed.nodes import messages as m
from splitbed.nodes.clock import now_ns
from splitbed.nodes.errors import ConfigurationError, NodeTimeout, PeerClosed, ProtocolError, RemoteError
from splitbed.nodes.images import resolve_image
from splitbed.nodes.jobs import Job
from splitbed.nodes.metrics import ErrorInfo, InferenceRecord
from splitbed.nodes.runner import ModelRunner, PartPlan
from splitbed.nodes.timing import LocalSegments, Transfer

if TYPE_CHECKING:
    from splitbed.nodes.local import LocalNode, Session


class Inference:
    """The steps of one inference on a LocalNode's session and the figures they produce."""

    def __init__(self, node: LocalNode, session: Session, job: Job, plan: PartPlan, repetition: int) -> None:
        self.node, self.s, self.job, self.plan = node, session, job, plan
        self.stamps: dict[str, int | None] = {}
        self.arrays: list[np.ndarray] = []
        self.data_pieces: list[Any] = []
        self.transport_before: dict[str, Any] = {}
        self._local: tuple[Any, list[Any], int] | None = None  # (the prepared input, the pieces sent, AIPS bytes)
        self._local_done = False
        self._marked = False  # the transport took the TCP state before the first send (uplink_tcp)
        self.record = record.blank(session.machine, job=job, plan=plan, repetition=repetition, clock=session.clock,
                                   link=job.link if job.link is not None else node.config.link,
                                   local_weights=node.runner.weights_info(job.model),
                                   local_runtime=node.runner.runtime_info(job.model), local_gpu=node.gpu(),
                                   local_host=node._host, stamps=self.stamps)

    def run(self) -> InferenceRecord:
        s, rec = self.s, self.record
        s.machine.inferences += 1
        try:
            self._local_part()
            result, earlier = self._await_result()
            self._remote_part(result, earlier)
        except RemoteError as exc:
            self._fail(exc.code, exc.message, exc.fatal, "remote")
            rec["aips_events"].extend(exc.aips_events)
            s.machine.track_events(exc.aips_events)
        except ProtocolError as exc:
            note = self.node.deadline_note() if isinstance(exc, NodeTimeout) else ""
            self._fail(exc.code, exc.message + note, True, "local")
        except (PeerClosed, OSError) as exc:
            self._fail("connection_lost", str(exc), True, "local")
        self._local_figures()  # after a failure (an inference that completed filled them at local_end)
        if self.data_pieces:  # after every measured window: reading sizes back costs a copy of the unit
            for figures, size in zip(rec["tensors"], formatio.payload_sizes(self.data_pieces), strict=True):
                figures["serialized_bytes"] = size
        if not s.alive and self.node.session is s:
            self.node.session = None
        return rec

    def _fail(self, code: str, message: str, fatal: bool, where: str) -> None:
        self.record["status"] = "error"
        self.record["error"] = ErrorInfo(code=code, message=message, fatal=fatal, where=where)
        if fatal:
            self.s.close()

    # local half: preprocess, head, encode, send --------------------------------------------------------

    def _local_part(self) -> None:
        from splitbed.models import preprocess
        from splitbed.models.camera import is_camera
        from splitbed.models.errors import ModelError

        rec, job, node, s, stamps = self.record, self.job, self.node, self.s, self.stamps
        path = resolve_image(job.image)
        spec = node.runner.spec(job.model, job.input_size)
        window = node.meter.start()
        try:
            stamps["local_start"] = now_ns()
            try:  # the camera pseudo-partition sends the captured uint8 image; the edge preprocesses it
                prepared = (preprocess.capture_image(path, spec) if is_camera(self.plan.partition_id)
                            else preprocess.load_image(path, spec))
            except ModelError as exc:
                raise ConfigurationError(str(exc)) from exc
            stamps["local_preprocessed"] = now_ns()
            arrays = self.arrays = ModelRunner.run_head(self.plan, prepared.array)
            stamps["local_head_done"] = now_ns()
            pieces, aips, aips_bytes = self._encode(arrays)
            stamps["local_encoded"] = now_ns()
            self._local = (prepared, pieces, aips_bytes)  # the record's figures of them: _local_figures()
            s.machine.sent(units=2 if aips_bytes else 1, aips=aips if aips_bytes else None)
            # before the first byte: the window this transfer starts with (decoded into uplink_tcp after the
            # windows, _local_figures), and the RESULT's out-of-order packets are counted from here
            s.transport.mark()
            self._marked = True
            self.transport_before = s.transport.counters()
            stamps["local_first_send"] = now_ns()
            s.transport.send(pieces, node.timeout(node.config.send_timeout_s))
            stamps["local_send_done"] = now_ns()
        finally:
            rec["local_resources"] = node.meter.stop(window)

    def _local_figures(self) -> None:
        """The record's figures of the local half (sizes, the tensors, the device's head run, the local segments):
        bookkeeping, filled once the inference's windows are over (at local_end, or after a failure) so that none
        of it sits between the head and the first send, or in the result decode (docs/METRICS.md, "The testbed's
        own share"). Nothing is filled before the head has run."""
        if self._local_done or not self.arrays:
            return
        self._local_done = True
        rec, arrays = self.record, self.arrays
        if self._marked:
            rec["uplink_tcp"] = self.s.transport.marked_state()
        cut = self.plan.cut
        rec["tensors"] = [record.tensor_figures(cut, i, a, None) for i, a in enumerate(arrays)]  # sizes: run()
        self._ue_device()
        rec["raw_intermediate_bytes"] = sum(a.nbytes for a in arrays)
        if self._local is not None:
            prepared, pieces, aips_bytes = self._local
            rec["input_shape"] = list(prepared.array.shape)
            rec["input_data_bytes"] = prepared.input_bytes
            rec["preprocessed_input_bytes"] = prepared.preprocessed_bytes
            rec["aips_bytes"] = aips_bytes
            rec["uplink_bytes"] = sum(len(memoryview(p).cast("B")) for p in pieces)
            rec["serialized_intermediate_bytes"] = rec["uplink_bytes"] - aips_bytes
            rec["compression_ratio"] = rec["raw_intermediate_bytes"] / max(rec["serialized_intermediate_bytes"], 1)
            seg = LocalSegments.derive(self.stamps)
            rec["preprocess_ms"], rec["local_inference_ms"], rec["encode_ms"] = \
                seg.preprocess_ms, seg.local_inference_ms, seg.encode_ms
            rec["send_ms"] = seg.send_ms or 0.0

    def _ue_device(self) -> None:
        """The UE device's figures for this head run (splitbed.devices; docs/METRICS.md "Devices")."""
        rec, plan = self.record, self.plan
        device = rec["ue_device"] = self.node.runner.device_figures(plan)
        outcome = plan.last_outcome if plan.device is not None else None
        preprocessed, head_done = self.stamps["local_preprocessed"], self.stamps["local_head_done"]
        assert preprocessed is not None and head_done is not None  # the head ran: _local_figures()
        rec["local_inference_measured_ms"] = (outcome.measured_ms if outcome is not None else
                                              (head_done - preprocessed) / 1e6)
        rec["local_inference_modelled_ms"] = None if device is None else device["device_ms"]

    def _encode(self, arrays: list[np.ndarray]) -> tuple[list[Any], Any, int]:
        """(pieces to send, the AIPS sent or None, bytes of that AIPS unit). Changes no session state, so an
        encoding error leaves the session as it was."""
        rec, job, machine, pid = self.record, self.job, self.s.machine, self.plan.partition_id
        if job.encoding == "json-baseline":
            rec["aips_reason"] = "none: the json-baseline carriage has no AIPS"
            return [formatio.json_baseline_unit(arrays, pid)], None, 0
        profile_id, profile_name = formatio.profile_id(job.compression)
        rec["compression_profile"], rec["compression_profile_id"] = profile_name, profile_id
        plan = machine.reused_plan(pid, arrays, profile_id, job.aips)
        if plan is not None and machine.aips is not None:
            aips = machine.aips
        else:
            wanted = formatio.build_aips(machine.next_aips_id, pid, arrays, profile_id)
            plan = machine.aips_plan(wanted, job.aips)
            if plan.rebuild:
                aips = formatio.build_aips(plan.aips_id, pid, arrays, profile_id)
            else:
                aips = machine.aips if not plan.send and machine.aips is not None else wanted
        head = [formatio.aips_unit(aips)] if plan.send else []
        self.data_pieces = formatio.data_unit(aips, arrays)
        rec["aips_sent"], rec["aips_reason"], rec["aips_id"] = plan.send, plan.reason, aips.aips_id
        return head + self.data_pieces, aips if plan.send else None, len(head[0]) if head else 0

    # remote half: wait, map timestamps, decode predictions ---------------------------------------------

    def _await_result(self) -> tuple[m.Result, list[m.Message]]:
        """Replies up to the one answering our last unit; earlier ones (errors on the AIPS) are kept."""
        s, node, rec = self.s, self.node, self.record
        earlier: list[m.Message] = []
        while True:
            message, size, t_read = s.transport.receive(node.timeout(node.config.result_timeout_s))
            rec["downlink_bytes"] += size
            if isinstance(message, (m.Result, m.Error)):
                rec["aips_events"].extend(message.aips_events)
            reply = s.machine.reply(message)
            if reply.final is None:
                earlier.append(message)
                continue
            self.stamps["local_result_received"] = t_read
            return reply.final, earlier

    def _retransmissions(self) -> None:
        """TCP_INFO's connection-wide total_retrans, read after local_end (outside every figure): the RESULT is in,
        so every retransmission that delivered an uplink byte has happened, and the local node sends nothing
        before this read. None where either reading is missing. The transport's own figures (QUIC losses and CPU
        time, or the TCP binding's) are read at the same moment."""
        rec = self.record
        before, after = rec["uplink_tcp"], self.s.transport.tcp_state()
        rec["uplink_retransmitted_segments"] = None if before is None or after is None else \
            max(0, int(after["total_retrans"]) - int(before["total_retrans"]))
        rec["transport"] = transport_figures(self.s.transport, self.transport_before, self.s.transport.counters(),
                                             self.stamps, rec["uplink_retransmitted_segments"])

    def _remote_part(self, result: m.Result, earlier: list[m.Message]) -> None:
        rec, s, stamps = self.record, self.s, self.stamps
        rec["predictions"] = record.predictions(result.predictions(s.choices.result_mode, s.choices.top_k))
        stamps["local_end"] = now_ns()
        # The rest is bookkeeping on figures already taken: after local_end, outside every figure. The RESULT's
        # arrival comes first: its kernel stamp is the read's (kept by the transport), and its out-of-order count
        # is the socket's now; only the RESULT_REST (split) and a CHECKSUM (verify) can have come since, and packets
        # of them out of order could only drop the stamp, never keep a wrong one.
        kernel_ns, rec["downlink_out_of_order_packets"], rec["downlink_end_reason"] = s.transport.arrival()
        stamps["local_result_received_kernel"] = kernel_ns
        if s.machine.result_split:  # the rest of the RESULT (its figures), read after every figure was taken
            message, size, _ = s.transport.receive(self.node.timeout(self.node.config.result_timeout_s))
            rec["result_rest_bytes"] = size
            result = s.machine.rest(message, result)
        self._local_figures()
        first_send, result_in = stamps["local_first_send"], stamps["local_result_received"]
        assert first_send is not None and result_in is not None
        figures = result.figures  # the RESULT's own checks (ProtocolError: an error record, as before local_end)
        transfer = Transfer.derive(first_send=first_send, result_read=result_in,
                                   result_kernel=stamps.get("local_result_received_kernel"),
                                   last_byte_read=figures.stamps["remote_last_byte"],
                                   last_byte_kernel=figures.last_byte_kernel,
                                   result_send=figures.stamps["remote_result_send"],
                                   offset_ns=s.clock["offset_ns"], uncertainty_ns=s.clock["offset_uncertainty_ns"],
                                   result_bounded=rec["downlink_end_reason"] == rxstamp.BOUNDED_BY_REST)
        record.add_result(rec, result, transfer, earlier)
        seg = LocalSegments.derive(stamps)
        rec["result_decode_ms"], rec["e2e_latency_ms"] = seg.result_decode_ms, seg.e2e_latency_ms
        self._retransmissions()
        rec["delivery_check"] = self._delivery_check()  # after local_end: not part of any figure
        try:
            rec["edge_device"] = with_run(s.edge_devices.get((self.plan.partition_id, self.plan.input_size)),
                                          result.body.get("edge_run"), figures.remote_inference_ms)
        except ValueError as exc:
            raise ProtocolError("bad_control_message", f"edge device (PREPARED, RESULT edge_run): {exc}") from None
        runner_device = self.node.runner.device
        complete_devices(cast(dict[str, Any], rec), None if runner_device is None else runner_device.profile)
        if result.partition_id != self.plan.partition_id:
            raise ProtocolError("bad_control_message", f"RESULT is for partition {result.partition_id}, "
                                f"we sent {self.plan.partition_id}")

    def _delivery_check(self) -> dict[str, Any] | None:
        """With verify on, the remote sends a CHECKSUM right after the RESULT; read it now, after every measured
        window, and compare with the tensors the head produced."""
        if not self.node.config.verify_delivery:
            return None
        checksum = self.s.machine.checksum(self.s.transport.receive(self.node.config.result_timeout_s)[0])
        lossless = self.job.encoding == "json-baseline" or bool(formatio.profile_lossless(self.job.compression))
        sent = [formatio.tensor_crc32(a) for a in self.arrays]
        return {"method": "CRC-32 of each tensor as sent by the head vs as decoded by the remote node",
                "sent_crc32": sent, "received_crc32": checksum.tensor_crc32, "match": checksum.tensor_crc32 == sent,
                "expected_match": lossless}


# The transport's own CPU time over at least this share of a transfer's wall time means the binding, not the
# link, set the pace (the record's transport.cpu_bound; docs/METRICS.md, "transport").
CPU_BOUND_SHARE = 0.8


def transport_figures(transport: Any, before: dict[str, Any], after: dict[str, Any], stamps: dict[str, int | None],
                      retransmitted: int | None) -> dict[str, Any]:
    """The record's `transport` block: what the binding is, and what it did from the first byte sent to the
    result read (losses, retransmissions, CPU time of a userspace stack)."""
    figures = dict(transport.describe())
    start, end = stamps.get("local_first_send"), stamps.get("local_result_received")
    wall_ms = None if start is None or end is None else (end - start) / 1e6

    def delta(key: str) -> int | None:
        a, b = before.get(key), after.get(key)
        return None if a is None or b is None else max(0, int(b) - int(a))

    cpu_ns = delta("cpu_ns")
    cpu_ms = None if cpu_ns is None else round(cpu_ns / 1e6, 3)
    figures.update({
        "retransmitted_segments": retransmitted,  # TCP: TCP_INFO total_retrans over the inference
        "packets_sent": delta("packets_sent"),     # QUIC: packets sent by the UE over the inference
        "lost_packets": delta("packets_lost"),     # QUIC: packets the UE declared lost (their frames resent)
        "cwnd_bytes": after.get("cwnd_bytes"),
        "cpu_ms": cpu_ms,                          # QUIC: CPU time of the UE's QUIC thread over the inference
        "cpu_bound": None if cpu_ms is None or not wall_ms else cpu_ms >= CPU_BOUND_SHARE * wall_ms,
    })
    return figures

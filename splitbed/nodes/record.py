"""Filling one inference's metrics record (splitbed.nodes.metrics, docs/METRICS.md) on the local node: the blank
record of an inference about to run, and what a checked RESULT and the derived timing add to it. Pure: the
local node (local.py) measures, the session machine (ue_session) checks the protocol, this writes the record.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np

from splitbed.models import labels
from splitbed.nodes import messages as m
from splitbed.nodes.metrics import SCHEMA_VERSION, InferenceRecord, Prediction, software_versions
from splitbed.nodes.timing import KERNEL_RX_BOUND, Transfer
from splitbed.nodes.ue_session import UeSession


def default_link(config_link: dict[str, Any] | None) -> dict[str, Any]:
    if config_link:
        return dict(config_link)
    return {"profile": None, "backend": None,
            "note": "not given: pass --link-info (or the job's link) to record the emulated link"}


def blank(session: UeSession, *, job: Any, plan: Any, repetition: int, clock: Any, link: dict[str, Any] | None,
          local_weights: dict[str, Any] | None, local_runtime: dict[str, Any], local_gpu: Any, local_host: Any,
          stamps: dict[str, int | None]) -> InferenceRecord:
    """The record of an inference about to run: identity, what runs, how it is measured; figures empty."""
    offer = session.offer or m.Offer()
    # The remote's host, versions and GPU come in ACCEPT (protocol 1 remotes before 2026 sent them in OFFER).
    server = (session.accept.server if session.accept is not None else {}) or offer.server
    model = offer.model(job.model)
    return InferenceRecord(
        schema_version=SCHEMA_VERSION, record_type="inference", status="ok", error=None,
        session_id=session.choices.session_id, session_inference_index=session.inferences, job_id=job.job_id,
        repetition=repetition, tags=dict(job.tags), started_at_utc=datetime.now(timezone.utc).isoformat(),
        model=job.model, partition_name=plan.name, partition_id=plan.partition_id, encoding=job.encoding,
        compression_profile=None, compression_profile_id=None, image=job.image, input_shape=[],
        input_data_bytes=0, preprocessed_input_bytes=0, raw_intermediate_bytes=0,
        serialized_intermediate_bytes=0, aips_sent=False, aips_reason="", aips_id=None, aips_bytes=0,
        uplink_bytes=0, compression_ratio=None, tensors=[], downlink_bytes=0, result_rest_bytes=None,
        preprocess_ms=0.0, local_inference_ms=0.0, encode_ms=0.0, send_ms=0.0, delivery_ms=None,
        delivery_end=None, delivery_end_reason=None, delivery_read_ms=None, remote_read_lag_ms=None,
        delivery_uncertainty_ms=None, remote_decode_ms=None, remote_queue_wait_ms=None, remote_tail_build_ms=None,
        remote_inference_ms=None, total_inference_ms=None, remote_processing_ms=None, downlink_ms=None,
        downlink_end=None, downlink_end_reason=None, downlink_rest_gap_ms=None,
        local_read_lag_ms=None, uplink_out_of_order_packets=None,
        downlink_out_of_order_packets=None, uplink_retransmitted_segments=None, transport=None,
        round_trip_ms=None, result_decode_ms=None, e2e_latency_ms=None, timestamps_ns=stamps,
        uplink_tcp=None, downlink_tcp=None,
        result_mode=job.result_mode, predictions=[], delivery_check=None, aips_events=[], adaptive=None,
        local_resources=None, remote_resources=None, local_gpu=local_gpu, remote_gpu=server.get("gpu"),
        remote_concurrent_sessions=None,
        ue_device=None, edge_device=None, local_inference_measured_ms=None, local_inference_modelled_ms=None,
        remote_inference_modelled_ms=None, e2e_latency_modelled_ms=None, ue_energy=None, edge_energy=None,
        local_head_memory=plan.head_memory, inference_call=str(local_runtime["call"]), weights=local_weights,
        ue_runtime=local_runtime, edge_runtime=None if model is None else model.runtime,
        remote_weights=None if model is None else model.weights, link=default_link(link), clock=clock,
        versions={"local": software_versions(), "remote": server.get("versions")},
        host={"local": local_host, "remote": server.get("host")},
    )


def tensor_figures(cut: list[Any], index: int, array: np.ndarray, payload: int | None) -> Any:
    name = cut[index].name
    return {"tensor_id": index, "name": name, "dtype": array.dtype.name, "shape": list(array.shape),
            "raw_bytes": int(array.nbytes), "serialized_bytes": payload}


def add_result(rec: InferenceRecord, result: m.Result, transfer: Transfer, earlier: list[m.Message]) -> None:
    """What the RESULT (and the replies before it in this inference) put into the record."""
    for reply in earlier:
        rec["aips_events"].append({"event": "remote_error", "code": getattr(reply, "code", None),
                                   "message": getattr(reply, "message", None)})
    figures = result.figures
    rec["timestamps_ns"].update(figures.stamps)
    rec["timestamps_ns"]["remote_last_byte_kernel"] = figures.last_byte_kernel
    rec.update(transfer.figures())  # type: ignore[typeddict-item]
    rest_send = figures.rest_send
    if transfer.downlink_end == KERNEL_RX_BOUND and rest_send is not None:  # how far apart the two units left
        rec["downlink_rest_gap_ms"] = (rest_send - figures.stamps["remote_result_send"]) / 1e6
    rec["delivery_end_reason"] = figures.uplink_end_reason
    rec["uplink_out_of_order_packets"] = figures.uplink_out_of_order_packets
    rec["remote_decode_ms"] = figures.remote_decode_ms
    rec["remote_queue_wait_ms"] = figures.remote_queue_wait_ms
    rec["remote_tail_build_ms"] = figures.remote_tail_build_ms
    rec["remote_inference_ms"] = figures.remote_inference_ms
    rec["total_inference_ms"] = rec["local_inference_ms"] + figures.remote_inference_ms
    rec["remote_resources"] = result.body.get("remote_resources")
    rec["remote_concurrent_sessions"] = result.body.get("concurrent_sessions")
    rec["downlink_tcp"] = figures.downlink_tcp


def predictions(pairs: list[tuple[int, float]]) -> list[Prediction]:
    """(class, score) pairs as labelled predictions, decoded on the local side as the testbed contribution does
    (decode_predictions)."""
    index = labels.class_index()
    return [Prediction(rank=r + 1, class_index=i, wnid=index[i][0], label=index[i][1], score=score)
            for r, (i, score) in enumerate(pairs)]

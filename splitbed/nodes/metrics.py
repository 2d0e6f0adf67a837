"""The metrics record: one JSON object per inference, every field documented in docs/METRICS.md.

Field names carry their units (`_ms`, `_bytes`, `_pct`, `_mj`, `_ns`). `SCHEMA_VERSION` changes whenever a field
is renamed, removed or changes meaning; adding a field bumps the minor part. A test keeps this TypedDict and
docs/METRICS.md in lockstep: every key here is documented there and nothing else is.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import Any, TypedDict

from splitbed import envlock
from splitbed.devices.figures import DeviceFigures, EdgeEnergy, HeadMemory, UeEnergy
from splitbed.nodes.clock import ClockRecord
from splitbed.nodes.resources import GpuInfo, HostInfo, ResourceFigures

SCHEMA_VERSION = "2.10"


class TensorFigures(TypedDict):
    tensor_id: int
    name: str
    dtype: str
    shape: list[int]
    raw_bytes: int
    serialized_bytes: int


class Prediction(TypedDict):
    rank: int
    class_index: int
    wnid: str
    label: str
    score: float


class ErrorInfo(TypedDict):
    code: str
    message: str
    fatal: bool
    where: str


class InferenceRecord(TypedDict):
    # identity
    schema_version: str
    record_type: str
    status: str
    error: ErrorInfo | None
    session_id: str
    session_inference_index: int
    job_id: str | None
    repetition: int
    tags: dict[str, Any]
    started_at_utc: str
    # what ran
    model: str
    partition_name: str
    partition_id: int
    encoding: str
    compression_profile: str | None
    compression_profile_id: int | None
    image: str
    input_shape: list[int]
    # sizes
    input_data_bytes: int
    preprocessed_input_bytes: int
    raw_intermediate_bytes: int
    serialized_intermediate_bytes: int
    aips_sent: bool
    aips_reason: str
    aips_id: int | None
    aips_bytes: int
    uplink_bytes: int
    compression_ratio: float | None
    tensors: list[TensorFigures]
    downlink_bytes: int
    result_rest_bytes: int | None
    # times
    preprocess_ms: float
    local_inference_ms: float
    encode_ms: float
    send_ms: float
    delivery_ms: float | None
    delivery_end: str | None
    delivery_end_reason: str | None
    delivery_read_ms: float | None
    remote_read_lag_ms: float | None
    delivery_uncertainty_ms: float | None
    remote_decode_ms: float | None
    remote_queue_wait_ms: float | None
    remote_tail_build_ms: float | None
    remote_inference_ms: float | None
    total_inference_ms: float | None
    remote_processing_ms: float | None
    downlink_ms: float | None
    downlink_end: str | None
    downlink_end_reason: str | None
    downlink_rest_gap_ms: float | None
    local_read_lag_ms: float | None
    round_trip_ms: float | None
    result_decode_ms: float | None
    e2e_latency_ms: float | None
    timestamps_ns: dict[str, int | None]
    # the transport's state when each direction's transfer began
    uplink_tcp: dict[str, Any] | None
    downlink_tcp: dict[str, Any] | None
    uplink_out_of_order_packets: int | None
    downlink_out_of_order_packets: int | None
    uplink_retransmitted_segments: int | None
    transport: dict[str, Any] | None  # the binding (tcp/quic), its handshake, controller, losses, CPU time
    # results
    result_mode: str
    predictions: list[Prediction]
    delivery_check: dict[str, Any] | None
    aips_events: list[dict[str, Any]]
    adaptive: dict[str, Any] | None
    # resources (the testbed contribution's "not yet implemented" figures)
    local_resources: ResourceFigures | None
    remote_resources: ResourceFigures | None
    local_gpu: GpuInfo | None
    remote_gpu: GpuInfo | None
    remote_concurrent_sessions: int | None
    # devices (docs/METRICS.md, "Devices"): what each node emulated and how; modelled times and energy
    ue_device: DeviceFigures | None
    edge_device: DeviceFigures | None
    local_inference_measured_ms: float | None
    local_inference_modelled_ms: float | None
    remote_inference_modelled_ms: float | None
    e2e_latency_modelled_ms: float | None
    ue_energy: UeEnergy | None
    edge_energy: EdgeEnergy | None
    local_head_memory: HeadMemory | None
    # how it was measured
    inference_call: str
    ue_runtime: dict[str, Any] | None
    edge_runtime: dict[str, Any] | None
    weights: dict[str, Any] | None
    remote_weights: dict[str, Any] | None
    link: dict[str, Any]
    clock: ClockRecord | None
    versions: dict[str, Any]
    host: dict[str, HostInfo | None]


RECORD_FIELDS: tuple[str, ...] = tuple(InferenceRecord.__annotations__)
# Added to a record after the node wrote it, by the orchestrator that has the figures (docs/METRICS.md, "Added by
# the sweep"): `traffic`, the packet-level figures of the sweep's captures (splitbed.traffic); `workload`, the
# frame's capture time, wait and latency from capture under a paced workload (splitbed.sweep.pacing); `cell`, which UE of how many
# sharing one emulated cell (splitbed.cellbed); `host_speed`, the host-speed reference run right before the inference
# (splitbed.sweep.hostspeed). Optional.
ORCHESTRATOR_FIELDS: tuple[str, ...] = ("traffic", "workload", "cell", "host_speed")


def ns_to_ms(ns: int | None) -> float | None:
    return None if ns is None else ns / 1e6


def software_versions() -> dict[str, str]:
    """Versions of everything that can change a figure, and whether the whole environment is the locked one
    (constraints.txt); TensorFlow/Keras only if this process loaded them."""
    versions = {
        "python": platform.python_version(),
        "numpy": _dist_version("numpy"),
        "splitbed": _dist_version("splitbed"),
        "tensorflow": _dist_version("tensorflow-cpu") or _dist_version("tensorflow"),
        "keras": _dist_version("keras"),
        "zstandard": _dist_version("zstandard"),
        "lz4": _dist_version("lz4"),
        "onnx": _dist_version("onnx"),
        "onnxruntime": _dist_version("onnxruntime"),
        "tf2onnx": _dist_version("tf2onnx"),
        "platform": platform.platform(),
    }
    from splitbed.nodes import protocol

    versions.update(envlock.status())  # lock_sha256, lock_match: was this the locked environment (docs/INSTALL.md)
    versions["protocol_version"] = str(protocol.PROTOCOL_VERSION)
    versions["format_version"] = str(protocol.format_version())
    if "keras" in sys.modules:
        versions["keras_backend"] = str(sys.modules["keras"].backend.backend())
    return versions


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ""


# A frame a paced workload dropped never reached a node: the sweep writes a record of these fields only
# (splitbed.sweep.pacing; docs/METRICS.md, "Added by the sweep: workload").
DROPPED_STATUS = "dropped"
DROPPED_RECORD_FIELDS: tuple[str, ...] = ("schema_version", "record_type", "status", "error", "tags", "started_at_utc",
                                          "model", "partition_name", "encoding", "compression_profile", "image",
                                          "host", "workload")


def check_record(record: dict[str, Any]) -> None:
    """Raise ValueError unless `record` has exactly the schema's fields, plus optionally ORCHESTRATOR_FIELDS (used
    by tests and the driven mode); a dropped frame's record exactly DROPPED_RECORD_FIELDS."""
    keys = set(record)
    if record.get("status") == DROPPED_STATUS:
        if keys != set(DROPPED_RECORD_FIELDS):
            raise ValueError(f"dropped-frame record does not match schema {SCHEMA_VERSION}: missing "
                             f"{sorted(set(DROPPED_RECORD_FIELDS) - keys)}, extra {sorted(keys - set(DROPPED_RECORD_FIELDS))}")
        return
    missing = [f for f in RECORD_FIELDS if f not in keys]
    extra = sorted(keys - set(RECORD_FIELDS) - set(ORCHESTRATOR_FIELDS))
    if missing or extra:
        raise ValueError(f"metrics record does not match schema {SCHEMA_VERSION}: missing {missing}, extra {extra}")

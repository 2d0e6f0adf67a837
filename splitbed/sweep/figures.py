"""The figures a sweep summarises and a report shows: where each lives in a metrics record, its unit, and which
of the testbed contribution's metrics it is. One list, read by the CSV summary, the report tables and docs/SWEEP.md."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One number per inference record. `path` is a dotted path into the record."""

    key: str      # column name in summary.csv (unit in the name, like the record's)
    path: str
    label: str    # what a report calls it
    unit: str     # ms, bytes, ratio, %, mJ, packets, Mbit/s
    group: str    # sizes, times, transport, traffic, devices, resources
    testbed_metric: str = ""  # the metric of the testbed contribution it answers, if any (docs/REFERENCES.md)

    def value(self, record: Mapping[str, Any]) -> float | None:
        current: Any = record
        for part in self.path.split("."):
            if not isinstance(current, Mapping):
                return None
            current = current.get(part)
        if isinstance(current, bool) or not isinstance(current, (int, float)):
            return None
        return float(current)


FIGURES: tuple[Figure, ...] = (
    # sizes
    Figure("input_data_bytes", "input_data_bytes", "Input data size", "bytes", "sizes", "Input data size"),
    Figure("preprocessed_input_bytes", "preprocessed_input_bytes", "Preprocessed input size", "bytes", "sizes",
           "preprocessed input data size"),
    Figure("raw_intermediate_bytes", "raw_intermediate_bytes", "Intermediate data size (raw)", "bytes", "sizes",
           "intermediate data size (Raw)"),
    Figure("serialized_intermediate_bytes", "serialized_intermediate_bytes",
           "Intermediate data size delivered (serialized/compressed)", "bytes", "sizes",
           "intermediate data delivery size after serialization/compression"),
    Figure("uplink_bytes", "uplink_bytes", "Uplink bytes (incl. AIPS when sent)", "bytes", "sizes"),
    Figure("aips_bytes", "aips_bytes", "AIPS unit bytes", "bytes", "sizes"),
    Figure("downlink_bytes", "downlink_bytes", "Downlink bytes (result)", "bytes", "sizes"),
    Figure("compression_ratio", "compression_ratio", "Compression ratio (raw / serialized)", "ratio", "sizes"),
    # times
    Figure("preprocess_ms", "preprocess_ms", "Preprocessing", "ms", "times"),
    Figure("local_inference_ms", "local_inference_ms", "Local model inference time", "ms", "times",
           "local model inference time"),
    Figure("encode_ms", "encode_ms", "Encoding (AIPS/TLV or JSON)", "ms", "times"),
    Figure("delivery_ms", "delivery_ms", "Intermediate data delivery time", "ms", "times",
           "intermediate data delivery time"),
    Figure("remote_inference_ms", "remote_inference_ms", "Remote model inference time", "ms", "times",
           "remote model inference time"),
    Figure("remote_processing_ms", "remote_processing_ms", "Remote processing (decode + inference + reply)", "ms",
           "times"),
    Figure("total_inference_ms", "total_inference_ms", "Total local and remote inference time", "ms", "times",
           "Total local and inference time"),
    Figure("downlink_ms", "downlink_ms", "Result downlink time", "ms", "times"),
    Figure("local_read_lag_ms", "local_read_lag_ms", "Result waiting in the local socket (read lag)", "ms", "times"),
    Figure("result_decode_ms", "result_decode_ms", "Result decoding (local)", "ms", "times"),
    Figure("round_trip_ms", "round_trip_ms", "First send to result received", "ms", "times"),
    Figure("e2e_latency_ms", "e2e_latency_ms", "End-to-end latency", "ms", "times",
           "End to end latency regarding different split points selection"),
    # devices (docs/DEVICES.md): the host's own head compute, and each device's time by its profile
    Figure("local_inference_measured_ms", "local_inference_measured_ms", "Local head compute on this host", "ms",
           "devices"),
    Figure("local_inference_modelled_ms", "local_inference_modelled_ms", "Local inference, UE device (profile)",
           "ms", "devices"),
    Figure("remote_inference_modelled_ms", "remote_inference_modelled_ms", "Remote inference, edge device (profile)",
           "ms", "devices"),
    Figure("e2e_latency_modelled_ms", "e2e_latency_modelled_ms",
           "End-to-end latency, modelled (faster-than-host devices at their modelled times)", "ms", "devices"),
    Figure("ue_late_ms", "ue_device.late_ms", "UE stretch ended late by", "ms", "devices"),
    Figure("ue_energy_compute_mj", "ue_energy.compute_mj", "UE energy, compute (model)", "mJ", "devices",
           "Energy consumption (local)"),
    Figure("ue_energy_radio_mj", "ue_energy.radio_mj", "UE energy, uplink radio (model)", "mJ", "devices",
           "Energy consumption (local)"),
    Figure("ue_energy_total_mj", "ue_energy.total_mj", "UE energy, compute + radio (model)", "mJ", "devices",
           "Energy consumption (local)"),
    Figure("edge_energy_compute_mj", "edge_energy.compute_mj", "Edge energy, compute (model)", "mJ", "devices",
           "Energy consumption (remote)"),
    Figure("local_head_weights_bytes", "local_head_memory.weights_bytes", "Head weights (model tensors)", "bytes",
           "devices", "Memory usage (local)"),
    Figure("local_head_largest_activation_bytes", "local_head_memory.largest_activation_bytes",
           "Head's largest activation (model tensors)", "bytes", "devices", "Memory usage (local)"),
    # workloads that pace frames (periodic, Poisson; docs/METRICS.md "Added by the sweep: workload"): empty for
    # back-to-back points
    Figure("frame_queue_ms", "workload.queue_ms", "Frame queueing (capture to the job's hand-over)", "ms", "times"),
    Figure("frame_wait_ms", "workload.wait_ms", "Frame wait before its inference started (queueing + hand-over)",
           "ms", "times"),
    Figure("frame_latency_ms", "workload.frame_latency_ms", "Frame capture to predictions (wait included)", "ms",
           "times"),
    # transport: the window each transfer started with (docs/METRICS.md, section "tcp")
    Figure("uplink_start_cwnd_segments", "uplink_tcp.cwnd_segments", "Uplink congestion window at send",
           "segments", "transport"),
    Figure("downlink_start_cwnd_segments", "downlink_tcp.cwnd_segments", "Downlink congestion window at send",
           "segments", "transport"),
    Figure("uplink_retransmitted_segments", "uplink_retransmitted_segments",
           "Uplink segments retransmitted for this inference", "segments", "transport"),
    # traffic: measured from the point's packet captures (docs/METRICS.md, "Added by the sweep: traffic")
    Figure("uplink_packets", "traffic.uplink.packets", "Uplink packets on the wire (UE side)", "packets",
           "traffic"),
    Figure("uplink_wire_bytes", "traffic.uplink.wire_bytes", "Uplink bytes on the wire (UE side)", "bytes",
           "traffic"),
    Figure("uplink_header_overhead_pct", "traffic.uplink.header_overhead_pct",
           "Uplink header overhead (share of wire bytes)", "%", "traffic"),
    Figure("uplink_retransmitted_bytes", "traffic.uplink.retransmitted_bytes", "Uplink bytes retransmitted",
           "bytes", "traffic"),
    Figure("downlink_packets", "traffic.downlink.packets", "Downlink packets on the wire (edge side)", "packets",
           "traffic"),
    Figure("downlink_wire_bytes", "traffic.downlink.wire_bytes", "Downlink bytes on the wire (edge side)", "bytes",
           "traffic"),
    Figure("downlink_retransmitted_bytes", "traffic.downlink.retransmitted_bytes", "Downlink bytes retransmitted",
           "bytes", "traffic"),
    Figure("burst_wire_bytes", "traffic.burst.wire_bytes", "Uplink burst size on the wire", "bytes", "traffic"),
    Figure("burst_duration_ms", "traffic.burst.duration_ms", "Uplink burst duration (UE side)", "ms", "traffic"),
    Figure("burst_gap_ms", "traffic.burst.gap_ms", "Idle gap before the uplink burst", "ms", "traffic"),
    Figure("burst_interval_ms", "traffic.burst.interval_ms", "Inter-burst time (start to start)", "ms",
           "traffic"),
    Figure("burst_peak_mbit_1ms", "traffic.burst.peak_mbit_1ms", "Uplink peak bitrate, 1 ms bins (UE side)",
           "Mbit/s", "traffic"),
    Figure("burst_peak_mbit_10ms", "traffic.burst.peak_mbit_10ms", "Uplink peak bitrate, 10 ms bins (UE side)",
           "Mbit/s", "traffic"),
    Figure("burst_peak_mbit_100ms", "traffic.burst.peak_mbit_100ms", "Uplink peak bitrate, 100 ms bins (UE side)",
           "Mbit/s", "traffic"),
    Figure("edge_burst_duration_ms", "traffic.burst_at_edge.duration_ms", "Uplink burst duration (edge side)",
           "ms", "traffic"),
    Figure("edge_burst_peak_mbit_1ms", "traffic.burst_at_edge.peak_mbit_1ms",
           "Uplink peak bitrate, 1 ms bins (edge side)", "Mbit/s", "traffic"),
    # resources (the testbed contribution's "not yet implemented" computing power, memory, energy)
    Figure("local_cpu_time_ms", "local_resources.cpu_time_ms", "Local CPU time", "ms", "resources",
           "Computing power consumption (local)"),
    Figure("local_cpu_utilisation_pct", "local_resources.cpu_utilisation_pct", "Local CPU utilisation", "%",
           "resources", "CPU estimation (local)"),
    Figure("remote_cpu_time_ms", "remote_resources.cpu_time_ms", "Remote CPU time", "ms", "resources",
           "Computing power consumption (remote)"),
    Figure("remote_cpu_utilisation_pct", "remote_resources.cpu_utilisation_pct", "Remote CPU utilisation", "%",
           "resources", "CPU estimation (remote)"),
    Figure("local_cpu_throttled_ms", "local_resources.cpu_throttled_ms", "Local CPU time throttled by its quota",
           "ms", "resources"),
    Figure("local_peak_rss_bytes", "local_resources.peak_rss_bytes", "Local peak memory (RSS)", "bytes",
           "resources", "Memory usage (local)"),
    Figure("remote_peak_rss_bytes", "remote_resources.peak_rss_bytes", "Remote peak memory (RSS)", "bytes",
           "resources", "Memory usage (remote)"),
    Figure("local_energy_rapl_mj", "local_resources.energy_rapl_mj", "Local energy (RAPL, package)", "mJ",
           "resources", "Energy consumption (local)"),
    Figure("local_energy_estimate_mj", "local_resources.energy_estimate_mj", "Local energy (estimate)", "mJ",
           "resources", "Energy consumption (local)"),
    Figure("remote_energy_rapl_mj", "remote_resources.energy_rapl_mj", "Remote energy (RAPL, package)", "mJ",
           "resources", "Energy consumption (remote)"),
    Figure("remote_energy_estimate_mj", "remote_resources.energy_estimate_mj", "Remote energy (estimate)", "mJ",
           "resources", "Energy consumption (remote)"),
)
BY_KEY: dict[str, Figure] = {f.key: f for f in FIGURES}

# The stacked latency bar: consecutive windows of one inference (docs/METRICS.md), in order. "remote other" is
# remote processing minus the tail's inference (decode, lock wait, reply encoding).
LATENCY_SEGMENTS: tuple[tuple[str, str], ...] = (
    ("preprocess_ms", "preprocessing"),
    ("local_inference_ms", "local inference"),
    ("encode_ms", "encode"),
    ("delivery_ms", "uplink delivery"),
    ("remote_inference_ms", "remote inference"),
    ("remote_other_ms", "remote decode/reply"),
    ("downlink_ms", "downlink"),
    ("local_read_lag_ms", "result read lag"),
    ("result_decode_ms", "result decode"),
)


def segment_value(record: Mapping[str, Any], key: str) -> float | None:
    """A stacked-bar segment of one record (derived for remote_other_ms)."""
    if key == "remote_other_ms":
        processing, inference = BY_KEY["remote_processing_ms"].value(record), BY_KEY["remote_inference_ms"].value(
            record)
        if processing is None or inference is None:
            return None
        return max(processing - inference, 0.0)
    return BY_KEY[key].value(record)

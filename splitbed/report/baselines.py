"""The report's baseline table: full local inference (no network) and the full offload of the camera image (as a
JPEG, and raw) next to the best split and, where it was measured, the full offload of the preprocessed input, per
(profile, model).

Full local inference is measured by the sweep's local-baseline point (splitbed.sweep.plan: the model's
`predictions` partition, whose head is the whole model) on the UE node, the same process, limits and input as
every split: its figure is the record's preprocessing plus the whole model's call (`preprocess_ms +
local_inference_ms`). The node protocol has no local-only mode, so that point's records also send the 4,000
bytes of scores uplink and get a RESULT back; those are left out of this figure (they are in its end-to-end
latency in the per-partition tables).

The full offload of the camera image is measured by the sweep's `camera` points (splitbed.models.camera): the UE
sends the uint8 RGB image at the model's input size, as a JPEG (compression profile jpeg-qNN, quality in the name)
or raw (profile none), and the edge decodes, preprocesses and runs the whole model. Their figure is the
end-to-end latency, as for every split: the JPEG encoding on the UE is in it (measured on this host, not scaled
by the UE's device profile; docs/SWEEP.md, "Baselines").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from splitbed.report.tables import Table, _anchor, fmt_ms
from splitbed.stats import median_ci
from splitbed.sweep.distribution import percentiles
from splitbed.sweep.plan import CAMERA_PARTITION, LOCAL_BASELINE_PARTITION
from splitbed.sweep.store import is_measurement
from splitbed.sweep.summary import PointSummary, record_key

OFFLOAD_PARTITION = "input_layer"  # the head is empty: the preprocessed input tensor goes uplink
BASELINE_PARTITIONS = (LOCAL_BASELINE_PARTITION, OFFLOAD_PARTITION, CAMERA_PARTITION)
HEADERS = ["Baseline", "Latency (ms) median [95% CI]", "p90", "p99", "max", "n", "Uplink (bytes)", "What it counts"]


def local_latency_ms(record: dict[str, Any]) -> float | None:
    """Full local inference of one local-baseline record: preprocessing + the whole model on the UE."""
    pre, model = record.get("preprocess_ms"), record.get("local_inference_ms")
    if not isinstance(pre, (int, float)) or not isinstance(model, (int, float)):
        return None
    return float(pre) + float(model)


def _row(label: str, values: Sequence[float], uplink: float | None, what: str) -> list[str]:
    stats, tail = median_ci(values), percentiles(values)
    return [label, fmt_ms(stats), _ms(tail.p90), _ms(tail.p99), _ms(tail.maximum), str(stats.n),
            "-" if uplink is None else f"{uplink:,.0f}", what]


def _e2e(records: Iterable[dict[str, Any]]) -> list[float]:
    return [float(v) for r in records if isinstance(v := r.get("e2e_latency_ms"), (int, float))]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def baseline_tables(records: Iterable[dict[str, Any]], summaries: Sequence[PointSummary]) -> list[Table]:
    good: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if is_measurement(record) and record.get("status") == "ok":
            good.setdefault(record_key(record), []).append(record)
    tables = []
    for profile, ue, edge, model in dict.fromkeys((s.profile, s.ue_device, s.edge_device, s.model)
                                                  for s in summaries):
        mine = [s for s in summaries if (s.profile, s.ue_device, s.edge_device, s.model) == (profile, ue, edge, model)]
        local = [s for s in mine if s.partition == LOCAL_BASELINE_PARTITION]
        camera = sorted((s for s in mine if s.partition == CAMERA_PARTITION), key=lambda s: s.compression == "none")
        if not local and not camera:
            continue
        rows = []
        for s in local:
            values = [v for r in good.get(s.key, []) if (v := local_latency_ms(r)) is not None]
            rows.append(_row("Full local inference (no network)", values, None,
                             f"preprocessing + the whole model on the UE (the '{LOCAL_BASELINE_PARTITION}' point's "
                             "records; its 4,000-byte score upload and RESULT are not counted)"))
        for s in camera:
            values = _e2e(good.get(s.key, []))
            if s.compression == "none":
                label, what = "Full offload of the camera image, raw", "the uint8 RGB image, uncompressed"
            else:
                label, what = f"Full offload of the camera image as a JPEG ({s.compression})", \
                    "a JPEG of the uint8 RGB image, coded on the UE (its encoding time included)"
            rows.append(_row(f"{label} ({s.carriage})", values, s.median("uplink_bytes"),
                             f"end-to-end latency; {what}, at the model's input size, goes uplink; the edge "
                             "decodes, preprocesses and runs the whole model"))
        splits = [s for s in mine if s.partition not in BASELINE_PARTITIONS and s.median("e2e_latency_ms") is not None]
        if splits:
            best = min(splits, key=lambda s: (s.median("e2e_latency_ms") or 0.0, s.partition_id))
            values = _e2e(good.get(best.key, []))
            rows.append(_row(f"Best split: {best.partition} ({best.carriage})", values, best.median("uplink_bytes"),
                             "end-to-end latency: preprocessing to predictions decoded on the UE"))
        for s in (s for s in mine if s.partition == OFFLOAD_PARTITION):
            values = _e2e(good.get(s.key, []))
            rows.append(_row(f"Full offload of the preprocessed input ({s.carriage})", values,
                             s.median("uplink_bytes"), "end-to-end latency; the float32 input tensor goes uplink"))
        tables.append(Table(title=f"{model} on {profile}; UE {ue}, edge {edge}: baselines", headers=list(HEADERS),
                            rows=rows, anchor=_anchor("baseline", profile, ue, edge, model),
                            notes=["Measured on the testbed, the UE node in each case. Uplink bytes: the median of "
                                   "the records' uplink_bytes (AIPS when sent + data unit; TCP/IP headers not "
                                   "counted). A JPEG's predictions may differ from the unsplit model's (lossy)."]))
    return tables

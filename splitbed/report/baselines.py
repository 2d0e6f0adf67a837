"""The report's baseline table: full local inference (no network) next to the best split and, where it was
measured, the full offload of the preprocessed input, per (profile, model).

Full local inference is measured by the sweep's local-baseline point (splitbed.sweep.plan: the model's
`predictions` partition, whose head is the whole model) on the UE node, the same process, limits and input as
every split: its figure is the record's preprocessing plus the whole model's call (`preprocess_ms +
local_inference_ms`). The node protocol has no local-only mode, so that point's records also send the 4,000
bytes of scores uplink and get a RESULT back; those are left out of this figure (they are in its end-to-end
latency in the per-partition tables). The full offload of the camera image as a JPEG is not measured yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from splitbed.report.tables import Table, _anchor, fmt_ms
from splitbed.stats import median_ci
from splitbed.sweep.distribution import percentiles
from splitbed.sweep.plan import LOCAL_BASELINE_PARTITION
from splitbed.sweep.store import is_measurement
from splitbed.sweep.summary import PointSummary, record_key

OFFLOAD_PARTITION = "input_layer"  # the head is empty: the preprocessed input tensor goes uplink
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
        if not local:
            continue
        rows = []
        for s in local:
            values = [v for r in good.get(s.key, []) if (v := local_latency_ms(r)) is not None]
            rows.append(_row("Full local inference (no network)", values, None,
                             f"preprocessing + the whole model on the UE (the '{LOCAL_BASELINE_PARTITION}' point's "
                             "records; its 4,000-byte score upload and RESULT are not counted)"))
        splits = [s for s in mine if s.partition not in (LOCAL_BASELINE_PARTITION, OFFLOAD_PARTITION)
                  and s.median("e2e_latency_ms") is not None]
        if splits:
            best = min(splits, key=lambda s: (s.median("e2e_latency_ms") or 0.0, s.partition_id))
            values = [float(v) for r in good.get(best.key, []) if isinstance(v := r.get("e2e_latency_ms"),
                                                                             (int, float))]
            rows.append(_row(f"Best split: {best.partition} ({best.carriage})", values, best.median("uplink_bytes"),
                             "end-to-end latency: preprocessing to predictions decoded on the UE"))
        for s in (s for s in mine if s.partition == OFFLOAD_PARTITION):
            values = [float(v) for r in good.get(s.key, []) if isinstance(v := r.get("e2e_latency_ms"),
                                                                          (int, float))]
            rows.append(_row(f"Full offload of the preprocessed input ({s.carriage})", values,
                             s.median("uplink_bytes"), "end-to-end latency; the float32 input tensor goes uplink"))
        tables.append(Table(title=f"{model} on {profile}; UE {ue}, edge {edge}: baselines", headers=list(HEADERS),
                            rows=rows, anchor=_anchor("baseline", profile, ue, edge, model),
                            notes=["Measured on the testbed, the UE node in each case. Full offload of the camera "
                                   "image as a JPEG is not measured yet (the UE node sends tensors only)."]))
    return tables

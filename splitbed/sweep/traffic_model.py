"""The traffic-model table of a sweep: per point, the uplink traffic the split inference offered, in the terms
traffic models are written in (3GPP TR 38.838's XR models: a burst size and an inter-arrival time, each by its
mean, standard deviation, range and distribution; a mean and a peak data rate).

Everything comes from the records' `traffic` sections, measured from the point's captures on the UE side (what
the UE offered the link; docs/METRICS.md, "Added by the sweep"): burst sizes in application bytes (the units:
AIPS + data unit, or the JSON-baseline unit) and in bytes on the wire (Ethernet frames, retransmissions
included), the inter-burst time (first frame to first frame), the burst duration, the mean data rate (every
burst's wire bits over the sum of the inter-burst times: the long-run rate at this workload) and the peak data
rate (the most bits any 1, 10 or 100 ms bin of any burst held). Distributions: splitbed.traffic.fit.

The workload matters: the sweep runs its inferences back to back (each starts when the previous one's record is
written), so the inter-burst time is the end-to-end latency plus the orchestration between jobs, not a camera's
frame period. `WORKLOAD` says so in every table.

Written as `traffic_model.csv` (one row per point, every parameter a column) and `traffic_model.md` (one
parameter/value table per point, the layout of a 3GPP traffic-model table), and shown in the report.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splitbed.sweep.figures import BY_KEY
from splitbed.sweep.store import is_measurement
from splitbed.sweep.summary import PointSummary, record_key
from splitbed.traffic.fit import Fit, fit
from splitbed.traffic.inference import PEAK_BINS_MS

CSV_NAME = "traffic_model.csv"
MARKDOWN_NAME = "traffic_model.md"
WORKLOAD = ("back-to-back single inferences (each starts when the previous one's record is written): the "
            "inter-burst time is the end-to-end latency plus the orchestration between jobs")
SAMPLES: tuple[tuple[str, str, str, str], ...] = (
    # (name, record path, label, unit)
    ("burst_app_bytes", "traffic.burst.app_bytes", "Burst size (application bytes: AIPS + data unit, or the "
     "JSON-baseline unit)", "bytes"),
    ("burst_wire_bytes", "traffic.burst.wire_bytes", "Burst size on the wire (Ethernet frames)", "bytes"),
    ("interval_ms", "traffic.burst.interval_ms", "Inter-burst time (first frame to first frame)", "ms"),
    ("duration_ms", "traffic.burst.duration_ms", "Burst duration (first to last frame)", "ms"),
)


@dataclass
class TrafficModel:
    """The traffic-model parameters of one point."""

    summary: PointSummary
    fits: dict[str, Fit] = field(default_factory=dict)
    mean_rate_mbit: float | None = None
    peak_mbit: dict[int, float | None] = field(default_factory=dict)
    edge_peak_mbit_1ms: float | None = None   # (kept for the CSV column) = edge_peak_mbit[1]
    edge_peak_mbit: dict[int, float | None] = field(default_factory=dict)
    bursts: int = 0
    workload: str = WORKLOAD

    @property
    def measured(self) -> bool:
        return self.bursts > 0


def _value(record: dict[str, Any], path: str) -> float | None:
    current: Any = record
    for part in path.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    if isinstance(current, bool) or not isinstance(current, (int, float)):
        return None
    return float(current)


def workload_text(records: Iterable[dict[str, Any]]) -> str:
    """What paced the inferences: the records' `workload.description` where they carry one, else WORKLOAD."""
    for record in records:
        workload = record.get("workload")
        if isinstance(workload, dict) and isinstance(workload.get("description"), str):
            return str(workload["description"])
    return WORKLOAD


def traffic_models(records: Iterable[dict[str, Any]], summaries: Iterable[PointSummary]) -> list[TrafficModel]:
    """One TrafficModel per summary (same order); `measured` is False where no record had traffic figures."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if is_measurement(record) and record.get("status") == "ok":
            section = record.get("traffic")
            if isinstance(section, dict) and section.get("burst"):
                groups[record_key(record)].append(record)
    models = []
    for summary in summaries:
        group = groups.get(summary.key, [])
        model = TrafficModel(summary, bursts=len(group), workload=workload_text(group))
        model.fits = {name: fit(_value(r, path) for r in group) for name, path, _, _ in SAMPLES}
        paired = [(w, i) for r in group if (w := _value(r, "traffic.burst.wire_bytes")) is not None
                  and (i := _value(r, "traffic.burst.interval_ms")) is not None and i > 0]
        if paired:
            model.mean_rate_mbit = sum(w for w, _ in paired) * 8 / (sum(i for _, i in paired) * 1e3)
        for width in PEAK_BINS_MS:
            peaks = [v for r in group if (v := BY_KEY[f"burst_peak_mbit_{width}ms"].value(r)) is not None]
            model.peak_mbit[width] = max(peaks) if peaks else None
        for width in PEAK_BINS_MS:
            edge = [v for r in group if (v := _value(r, f"traffic.burst_at_edge.peak_mbit_{width}ms")) is not None]
            model.edge_peak_mbit[width] = max(edge) if edge else None
        model.edge_peak_mbit_1ms = model.edge_peak_mbit.get(1)
        models.append(model)
    return models


def _num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def csv_columns() -> list[str]:
    columns = ["profile", "uplink_rate_mbit", "model", "partition", "partition_id", "carriage", "bursts"]
    for name, _, _, _ in SAMPLES:
        columns += [f"{name}_{part}" for part in ("mean", "sd", "min", "max", "distribution", "params", "ks_d")]
    columns += ["mean_rate_mbit"] + [f"peak_mbit_{w}ms" for w in PEAK_BINS_MS] + ["edge_peak_mbit_1ms", "workload",
                                                                                  "source"]
    return columns


SOURCE = "measured from the point's packet captures, UE side (splitbed.traffic)"


def write_csv(models: Iterable[TrafficModel], path: str | Path) -> Path:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_columns())
        for m in models:
            if not m.measured:
                continue
            s = m.summary
            row: list[Any] = [s.profile, "" if s.uplink_rate_mbit is None else s.uplink_rate_mbit, s.model,
                              s.partition, s.partition_id, s.carriage, m.bursts]
            for name, _, _, _ in SAMPLES:
                f = m.fits[name]
                row += [_cell(f.mean), _cell(f.sd), _cell(f.minimum), _cell(f.maximum), f.distribution or "",
                        " ".join(f"{k}={v:.6g}" for k, v in f.params.items()), _cell(f.ks_d)]
            row += [_cell(m.mean_rate_mbit)] + [_cell(m.peak_mbit.get(w)) for w in PEAK_BINS_MS]
            row += [_cell(m.edge_peak_mbit_1ms), m.workload, SOURCE]
            writer.writerow(row)
    tmp.replace(path)
    return path


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.10g}"


def rows(model: TrafficModel) -> list[list[str]]:
    """Parameter / value rows of one point's table (what a 3GPP traffic-model table lists)."""
    out = []
    for name, _, label, unit in SAMPLES:
        f = model.fits[name]
        moments = (f"mean {_num(f.mean)}, SD {_num(f.sd)}, min {_num(f.minimum)}, max {_num(f.maximum)}"
                   if f.n else "-")
        out.append([f"{label} ({unit})", moments, f.describe(), f.goodness()])
    peaks = ", ".join(f"{_num(model.peak_mbit.get(w))} ({w} ms bins)" for w in PEAK_BINS_MS)
    out.append(["Mean data rate (Mbit/s, on the wire)", _num(model.mean_rate_mbit), "-",
                "burst wire bits / inter-burst time"])
    out.append(["Peak data rate (Mbit/s, on the wire, UE side)", peaks, "-",
                f"most bits in one bin of any of {model.bursts} bursts"])
    rate = model.summary.uplink_rate_mbit
    edge = ", ".join(f"{_num(model.edge_peak_mbit.get(w))} ({w} ms bins)" for w in PEAK_BINS_MS)
    over = rate is not None and (model.edge_peak_mbit.get(1) or 0.0) > 1.2 * rate
    out.append(["Peak data rate delivered by the link (Mbit/s, edge side)", edge, "-",
                (f"above the configured {rate:g} Mbit/s: the userspace link delivered a backlog at once after its "
                 "process waited for a CPU (see the report's Host CPU line)") if over else "-"])
    return out


HEADERS = ["Parameter", "Statistics", "Distribution (fitted)", "Fit"]


def title(model: TrafficModel) -> str:
    s = model.summary
    return f"{s.model} @ {s.partition} ({s.carriage}) on {s.profile}"


def markdown(models: Iterable[TrafficModel]) -> str:
    lines = ["# Uplink traffic model per point", "",
             f"Measured from packet captures (UE side: what the UE offered the link). Workload: {WORKLOAD}. "
             "Distributions: splitbed/traffic/fit.py (truncated normal with the sample's mean, SD and range, as "
             "3GPP TR 38.838's XR models state it, or a log-normal, whichever has the lower AIC).", ""]
    for m in models:
        if not m.measured:
            continue
        lines += [f"## {title(m)}", "", f"{m.bursts} bursts (good measured inferences)."
                  + ("" if m.workload == WORKLOAD else f" Workload: {m.workload}."), "",
                  "| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows(m)]
        lines.append("")
    return "\n".join(lines) + "\n"


def write_markdown(models: Iterable[TrafficModel], path: str | Path) -> Path:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(markdown(models), encoding="utf-8")
    tmp.replace(path)
    return path

"""The report's tables as plain data (headers, rows of cells, which row is best), rendered by both the Markdown
and the HTML writer. The per-partition table has every metric of the testbed contribution's list, with units."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from splitbed.report.budgets import Budget
from splitbed.stats import MedianCI
from splitbed.sweep.summary import PointSummary, best_per_group

MB = 1e6


@dataclass
class Table:
    """One table: `best_row` is the index of the highlighted row (lowest median end-to-end latency)."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    best_row: int | None = None
    notes: list[str] = field(default_factory=list)
    anchor: str = ""


def fmt_bytes(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_ms(stats: MedianCI | None, digits: int = 1) -> str:
    """`median [low, high]`; the interval is omitted (and says why) when n < 6."""
    if stats is None or stats.median is None:
        return "-"
    text = f"{stats.median:.{digits}f}"
    if stats.has_ci:
        assert stats.low is not None and stats.high is not None
        text += f" [{stats.low:.{digits}f}, {stats.high:.{digits}f}]"
    return text


def fmt_plain(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _energy(summary: PointSummary, side: str) -> str:
    rapl = summary.median(f"{side}_energy_rapl_mj")
    if rapl is not None:
        return f"{rapl:.0f}"
    estimate = summary.median(f"{side}_energy_estimate_mj")
    return "-" if estimate is None else f"{estimate:.0f} (est.)"


def _memory(summary: PointSummary, side: str) -> str:
    value = summary.median(f"{side}_peak_rss_bytes")
    return "-" if value is None else f"{value / MB:,.0f}"


def _head_memory(summary: PointSummary) -> str:
    weights, activation = summary.median("local_head_weights_bytes"), summary.median(
        "local_head_largest_activation_bytes")
    if weights is None or activation is None:
        return "-"
    return f"{weights / MB:,.1f} / {activation / MB:,.1f}"


def _ue_energy(summary: PointSummary) -> str:
    """`compute + radio = total` (model-based) for an emulated UE, else the host's own figure."""
    compute = summary.median("ue_energy_compute_mj")
    if compute is None:
        return _energy(summary, "local") + " (host)"
    radio = summary.median("ue_energy_radio_mj")
    total = summary.median("ue_energy_total_mj")
    return (f"{compute:,.0f} + {radio:,.0f} = {total:,.0f}" if radio is not None and total is not None
            else f"{compute:,.0f} + n/a radio")


def _edge_energy(summary: PointSummary) -> str:
    compute = summary.median("edge_energy_compute_mj")
    return _energy(summary, "remote") + " (host)" if compute is None else f"{compute:,.3g}"


METRIC_HEADERS = [
    "Partition (id)", "Input data size (B)", "Preprocessed input size (B)", "Intermediate data size, raw (B)",
    "Delivered size, serialized/compressed (B)", "Local inference (ms)", "Remote inference (ms)",
    "Total inference (ms)", "Delivery time (ms)", "End-to-end latency (ms)", "End-to-end, modelled (ms)",
    "CPU time local / remote (ms)", "Head weights / largest activation (MB)", "Peak RSS local / remote (MB)",
    "UE energy compute + radio = total (mJ, model)", "Edge energy (mJ, model)", "n",
]
DEVICE_NOTE = ("Devices (docs/DEVICES.md): {devices}. Local inference is the emulated (stretched) head time when the "
               "UE device is slower than this host; a device faster than the host is modelled, and the modelled "
               "end-to-end latency (measured minus its measured sub-model plus the modelled one) decides the best "
               "partition. Energies are MODEL-BASED (device power x compute time; uplink radio model on the bytes "
               "and airtime), never measured; '(host)' marks the host's own figure where no device was emulated. "
               "Head memory: model tensors; RSS: the TensorFlow process.")


def group_key(summary: PointSummary) -> tuple[str, str, str, str, str]:
    return (summary.profile, summary.ue_device, summary.edge_device, summary.model, summary.carriage)


def metric_tables(summaries: Iterable[PointSummary]) -> list[Table]:
    """One table per (profile, UE device, edge device, model, carriage), a row per partition (partition id order)."""
    groups: dict[tuple[str, str, str, str, str], list[PointSummary]] = {}
    for summary in summaries:
        groups.setdefault(group_key(summary), []).append(summary)
    best = best_per_group([s for group in groups.values() for s in group])
    tables = []
    for (profile, ue, edge, model, carriage), members in groups.items():
        members.sort(key=lambda s: s.partition_id)
        rows = []
        best_row = None
        for index, s in enumerate(members):
            if best.get((profile, ue, edge, model, carriage)) is s:
                best_row = index
            rows.append([
                f"{s.partition} ({s.partition_id})", fmt_bytes(s.median("input_data_bytes")),
                fmt_bytes(s.median("preprocessed_input_bytes")), fmt_bytes(s.median("raw_intermediate_bytes")),
                fmt_bytes(s.median("serialized_intermediate_bytes")), fmt_ms(s.figures["local_inference_ms"]),
                fmt_ms(s.figures["remote_inference_ms"]), fmt_ms(s.figures["total_inference_ms"]),
                fmt_ms(s.figures["delivery_ms"]), fmt_ms(s.figures["e2e_latency_ms"]),
                fmt_ms(s.figures["e2e_latency_modelled_ms"]) if s.modelled else "-",
                f"{fmt_plain(s.median('local_cpu_time_ms'))} / {fmt_plain(s.median('remote_cpu_time_ms'))}",
                _head_memory(s), f"{_memory(s, 'local')} / {_memory(s, 'remote')}", _ue_energy(s), _edge_energy(s),
                f"{s.n}" + (f" (+{s.n_errors} failed)" if s.n_errors else "")
                + (f", {s.ue_late_records} late stretch" if s.ue_late_records else ""),
            ])
        notes = [DEVICE_NOTE.format(devices=members[0].devices)]
        if any(s.random_weights for s in members):
            notes.append("RANDOM WEIGHTS: sizes and times are valid; predictions are meaningless.")
        tables.append(Table(title=f"{model} on {profile}, {carriage}; UE {ue}, edge {edge}",
                            headers=list(METRIC_HEADERS), rows=rows, best_row=best_row, notes=notes,
                            anchor=_anchor(profile, ue, edge, model, carriage)))
    return tables


def best_table(summaries: Iterable[PointSummary], budget: Budget) -> Table:
    """The best partition per (profile, model, carriage) and how it stands against the budget."""
    best = best_per_group(summaries)
    latency = f"{budget.uplink_latency_ms:g}" if budget.uplink_latency_ms is not None else "-"
    headers = ["Profile", "Uplink rate (Mbit/s)", "UE device", "Edge device", "Model", "Carriage",
               "Best partition (id)", "End-to-end latency (ms) [95% CI]", "Uplink delivery (ms) [95% CI]",
               f"Delivery within the {latency} ms UL latency?", "Uplink payload (B)",
               f"Within {budget.payload_bytes:,} B?" if budget.payload_bytes else "Payload"]
    rows = []
    for (profile, ue, edge, model, carriage), s in sorted(best.items()):
        e2e, delivery = s.figures["e2e_latency_ms"], s.figures["delivery_ms"]
        payload = s.median("serialized_intermediate_bytes")
        within_latency = _within(delivery, budget.uplink_latency_ms)
        within_payload = ("yes" if payload <= budget.payload_bytes else "no") \
            if budget.payload_bytes and payload is not None else "-"
        rate = "unshaped" if s.uplink_rate_mbit is None else f"{s.uplink_rate_mbit:g}"
        e2e_cell = fmt_ms(e2e) + (f"; modelled {fmt_ms(s.figures['e2e_latency_modelled_ms'])}" if s.modelled else "")
        rows.append([profile, rate, f"{ue} ({s.ue_mechanism})", f"{edge} ({s.edge_mechanism})", model, carriage,
                     f"{s.partition} ({s.partition_id})", e2e_cell, fmt_ms(delivery), within_latency,
                     fmt_bytes(payload), within_payload])
    return Table(title="Best partition per profile", headers=headers, rows=rows, anchor="best",
                 notes=[f"Budget: {budget.title}: {budget.source}",
                        "The budget's latency is the UL end-to-end latency of TS 22.261 (source to destination "
                        "transfer), so it is held against the uplink delivery of the intermediate data "
                        "(delivery_ms), not against the inference's end-to-end latency, which adds both sides' "
                        "compute and the downlink."])


def _within(stats: MedianCI, bound: float | None) -> str:
    """yes / no by the median; `uncertain` when the 95% CI straddles the bound."""
    if bound is None or stats.median is None:
        return "-"
    if stats.has_ci and stats.low is not None and stats.high is not None and stats.low <= bound < stats.high:
        return "uncertain (CI straddles)"
    return "yes" if stats.median <= bound else "no"


def _anchor(*parts: str) -> str:
    return "t-" + "-".join("".join(c if c.isalnum() else "-" for c in p) for p in parts)

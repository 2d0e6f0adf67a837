"""The report's tail and traffic tables: percentiles and budget shares per partition (splitbed.sweep.distribution),
and the uplink traffic model per point (splitbed.sweep.traffic_model), as plain Table data for both writers."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from splitbed.report.budgets import Budget
from splitbed.report.tables import Table, _anchor, group_key
from splitbed.sweep.distribution import PERCENTILES
from splitbed.sweep.plan import SINGLE_WORKLOAD
from splitbed.sweep.summary import PointSummary
from splitbed.sweep.traffic_model import HEADERS as TRAFFIC_HEADERS
from splitbed.sweep.traffic_model import TrafficModel, rows, title

TAIL_FIGURES = (("e2e_latency_ms", "End-to-end latency (ms)"), ("delivery_ms", "Uplink delivery (ms)"))
# paced workloads (splitbed.workload): the latency from the frame's capture, its wait included, goes first
PACED_TAIL = ("frame_latency_ms", "Latency from capture (ms)")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def tail_tables(summaries: Iterable[PointSummary], budget: Budget) -> list[Table]:
    """One table per (profile, UE device, edge device, model, carriage): per partition the median, p90, p95, p99 and
    max of the end-to-end latency and the uplink delivery, and the share of inferences within each bound of
    `budget`."""
    groups: dict[tuple[str, str, str, str, str], list[PointSummary]] = {}
    for summary in summaries:
        groups.setdefault(group_key(summary), []).append(summary)
    parts = ["median", *(f"p{p}" for p in PERCENTILES), "max"]
    tables = []
    for (profile, ue, edge, model, carriage), members in groups.items():
        members.sort(key=lambda s: s.partition_id)
        bounds = [b for b in members[0].budget_shares if b.budget == budget.name]
        paced = any(s.workload != SINGLE_WORKLOAD for s in members)
        figures = (PACED_TAIL, *TAIL_FIGURES) if paced else TAIL_FIGURES
        headers = ["Partition (id)", "n"]
        for _, label in figures:
            headers += [f"{label} {part}" for part in parts]
        headers += [f"Share: {b.what}" for b in bounds]
        table_rows = []
        for s in members:
            row = [f"{s.partition} ({s.partition_id})",
                   str(s.n) + (f" (+{s.frames_dropped} dropped)" if s.frames_dropped else "")]
            for key, _ in figures:
                tail = s.percentiles.get(key)
                row.append(_ms(s.median(key)))
                row += [_ms(tail.get(p) if tail else None) for p in PERCENTILES]
                row.append(_ms(tail.maximum if tail else None))
            shares = {(b.budget, b.kind): b for b in s.budget_shares}
            for bound in bounds:
                share = shares.get((bound.budget, bound.kind))
                if share is None or not share.n:
                    row.append("-")
                    continue
                low, high = share.interval or (0.0, 0.0)
                row.append(f"{share.met}/{share.n} = {100 * (share.share or 0):.0f} % "
                           f"[{100 * low:.0f}, {100 * high:.0f}]")
            table_rows.append(row)
        n = min(s.n for s in members)
        at_max = [f"p{p}" for p in PERCENTILES if n and math.ceil(p / 100 * n - 1e-9) >= n]
        notes = [f"Percentiles are nearest-rank (always a measured value): with n = {n} "
                 + (f"the {_and(at_max)} {'is' if len(at_max) == 1 else 'are'} the maximum; " if at_max else "")
                 + "a p99 below the maximum needs more than 100 inferences. "
                 "Shares: inferences within the bound of the budget "
                 f"'{budget.title}' ({budget.source.split(':')[0]}), with the 95 % Clopper-Pearson interval in "
                 "brackets: a KPI such as '99 % of deliveries within 15 ms' is met with confidence only when "
                 "the interval's lower end reaches 99 %. Every budget's shares are in summary.csv (kpi_*)."]
        if paced:
            notes.append(f"Workload {members[0].workload}: frames captured at their arrival times; the latency from "
                         "capture includes each frame's wait for the UE. A frame the overload policy dropped "
                         "(n: '+k dropped') was never delivered: every latency share counts it as a miss. "
                         "docs/SWEEP.md, 'Workloads'.")
        tables.append(Table(title=f"{model} on {profile}, {carriage}; UE {ue}, edge {edge}: tails and budget shares",
                            headers=headers, rows=table_rows, notes=notes,
                            anchor=_anchor("tail", profile, ue, edge, model, carriage)))
    return tables


def traffic_tables(models: Iterable[TrafficModel]) -> list[Table]:
    """One parameter/value table per captured point."""
    tables = []
    for model in models:
        if not model.measured:
            continue
        s = model.summary
        tables.append(Table(title=f"Uplink traffic model: {title(model)}", headers=list(TRAFFIC_HEADERS),
                            rows=rows(model), anchor=_anchor("traffic", s.profile, s.model, s.partition, s.carriage),
                            notes=[f"{model.bursts} bursts; measured from the point's captures (UE side)."]))
    return tables


def traffic_line(records: Iterable[dict[str, Any]]) -> str:
    """How many measured records carry traffic figures from the captures, and why the others do not."""
    from splitbed.sweep.capture import traffic_counts
    from splitbed.sweep.store import is_measurement

    counts = traffic_counts([r for r in records if is_measurement(r) and r.get("status") == "ok"])
    if not counts:
        return "-"
    text = (f"{counts.get('measured', 0)} of {sum(counts.values())} measured inferences carry traffic figures "
            "(packets, bytes, retransmissions, bursts) measured from the UE-side and edge-side packet captures of "
            "their point (docs/METRICS.md, \"Added by the sweep\")")
    others = [f"{n} {what}" for what, n in sorted(counts.items()) if what != "measured"]
    return text + ("; " + "; ".join(others) if others else "")

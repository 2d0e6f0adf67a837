"""Per-point summaries of a sweep's records: median and 95% CI (splitbed.sweep.stats) of every figure, the tails
(p90/p95/p99/max) of every time, size and traffic figure and the share of inferences within each budget
(splitbed.sweep.distribution), written as summary.csv; and the best partition per (profile, model, carriage).

Records are grouped by the point key the sweep writes into their tags; records from elsewhere (a local node run
by hand) are grouped by what they say about themselves (profile, model, partition, carriage, image, weights).
Only measurements count: warm-up inferences and error records are left out of the statistics (errors are
counted per point).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splitbed.sweep.distribution import (
    PERCENTILE_GROUPS,
    PERCENTILES,
    BudgetShare,
    Percentiles,
    budget_shares,
    percentiles,
)
from splitbed.sweep.figures import FIGURES, LATENCY_SEGMENTS, segment_value
from splitbed.sweep.stats import MedianCI, median_ci
from splitbed.sweep.store import is_measurement, point_key

SUMMARY_NAME = "summary.csv"
IDENTITY_COLUMNS = ("profile", "uplink_rate_mbit", "uplink_delay_ms", "backend", "model", "partition",
                    "partition_id", "encoding", "compression", "image", "weights", "random_weights", "n", "n_errors",
                    "ci_coverage", "host_cpu_stolen_pct")


@dataclass
class PointSummary:
    """Statistics of one point (one configuration measured `n` times)."""

    key: str
    profile: str
    backend: str
    model: str
    partition: str
    partition_id: int
    encoding: str
    compression: str
    image: str
    weights: str
    random_weights: bool
    uplink_rate_mbit: float | None
    uplink_delay_ms: float | None
    n: int = 0
    n_errors: int = 0
    figures: dict[str, MedianCI] = field(default_factory=dict)
    segments: dict[str, MedianCI] = field(default_factory=dict)
    weights_warning: str | None = None
    host_cpu_stolen_pct: float | None = None
    percentiles: dict[str, Percentiles] = field(default_factory=dict)  # times, sizes, traffic (distribution.py)
    budget_shares: list[BudgetShare] = field(default_factory=list)

    @property
    def carriage(self) -> str:
        """The encoding with its compression profile, e.g. `tlv/zstd` or `json-baseline`."""
        return self.encoding if self.encoding != "tlv" else f"tlv/{self.compression}"

    def median(self, key: str) -> float | None:
        stats = self.figures.get(key)
        return stats.median if stats is not None else None

    @property
    def ci_coverage(self) -> float | None:
        stats = self.figures.get("e2e_latency_ms")
        return stats.coverage if stats is not None else None


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _identity(record: dict[str, Any]) -> dict[str, Any]:
    link = _table(record.get("link"))
    profile = _table(link.get("profile"))
    uplink = _table(profile.get("uplink"))
    weights = _table(record.get("weights"))
    source = weights.get("source")
    weights_text = f"{source}:{weights.get('seed')}" if source == "random" else str(source or "unknown")
    return {
        "profile": str(profile.get("name") or link.get("profile") or "unknown"),
        "backend": str(link.get("backend") or "unknown"),
        "model": str(record.get("model")),
        "partition": str(record.get("partition_name")),
        "partition_id": int(record.get("partition_id") or 0),
        "encoding": str(record.get("encoding")),
        "compression": str(record.get("compression_profile") or "none"),
        "image": str(record.get("image")),
        "weights": weights_text,
        "random_weights": source == "random",
        "weights_warning": weights.get("warning"),
        "uplink_rate_mbit": uplink.get("rate_mbit"),
        "uplink_delay_ms": uplink.get("delay_ms"),
    }


def host_cpu_stolen_pct(records: Iterable[dict[str, Any]]) -> float | None:
    """Share (%) of the host's CPU time the hypervisor stole during the nodes' measured windows, over all records
    (each window counts 10 ms ticks, so only the sum is precise); None where no record knows."""
    stolen = every = 0.0
    for record in records:
        for side in ("local_resources", "remote_resources"):
            window = _table(record.get(side))
            steal, total = window.get("host_cpu_stolen_ms"), window.get("host_cpu_ms")
            if isinstance(steal, (int, float)) and isinstance(total, (int, float)):
                stolen, every = stolen + steal, every + total
    return 100.0 * stolen / every if every > 0 else None


def record_key(record: dict[str, Any]) -> str:
    """The point a record belongs to: its tags.point, else what it says about itself."""
    key = point_key(record)
    if key is not None:
        return key
    ident = _identity(record)
    return "|".join(str(ident[k]) for k in ("profile", "model", "partition", "encoding", "compression", "image",
                                             "weights", "backend"))


def summarise(records: Iterable[dict[str, Any]]) -> list[PointSummary]:
    """One PointSummary per point, in the order points first appear."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if not is_measurement(record):
            continue
        groups[record_key(record)].append(record)
    summaries = []
    for key, group in groups.items():
        good = [r for r in group if r.get("status") == "ok"]
        ident = _identity((good or group)[0])
        summary = PointSummary(key=key, n=len(good), n_errors=len(group) - len(good), **ident)
        summary.figures = {f.key: median_ci(f.value(r) for r in good) for f in FIGURES}
        summary.segments = {k: median_ci(segment_value(r, k) for r in good) for k, _ in LATENCY_SEGMENTS}
        summary.host_cpu_stolen_pct = host_cpu_stolen_pct(good)
        summary.percentiles = {f.key: percentiles(f.value(r) for r in good) for f in FIGURES
                               if f.group in PERCENTILE_GROUPS}
        summary.budget_shares = budget_shares(good, _budgets())
        summaries.append(summary)
    return summaries


def _budgets() -> list[Any]:
    from splitbed.report.budgets import load_budgets

    return list(load_budgets().values())


def best_per_group(summaries: Iterable[PointSummary],
                   by: tuple[str, ...] = ("profile", "model", "carriage")) -> dict[tuple[str, ...], PointSummary]:
    """The point with the lowest median end-to-end latency in each group (ties: lower partition id)."""
    best: dict[tuple[str, ...], PointSummary] = {}
    for summary in summaries:
        value = summary.median("e2e_latency_ms")
        if value is None:
            continue
        group = tuple(str(getattr(summary, k)) for k in by)
        current = best.get(group)
        if current is None or (value, summary.partition_id) < (current.median("e2e_latency_ms") or 0.0,
                                                               current.partition_id):
            best[group] = summary
    return best


def csv_columns() -> list[str]:
    columns = list(IDENTITY_COLUMNS)
    for figure in FIGURES:
        columns += [f"{figure.key}_median", f"{figure.key}_ci_low", f"{figure.key}_ci_high"]
        if figure.group in PERCENTILE_GROUPS:
            columns += [f"{figure.key}_p{p}" for p in PERCENTILES] + [f"{figure.key}_max"]
    columns += budget_columns()
    return columns


def budget_columns() -> list[str]:
    """kpi_<budget>_<kind>_{met,n,share,ci_low,ci_high} for every bound of every budget in budgets.toml."""
    from splitbed.sweep.distribution import BOUNDS

    columns = []
    for budget in _budgets():
        for kind, attribute, _, _ in BOUNDS:
            if getattr(budget, attribute, None) is not None:
                columns += [f"kpi_{budget.name}_{kind}_{part}" for part in ("met", "n", "share", "ci_low", "ci_high")]
    return columns


def write_csv(summaries: Iterable[PointSummary], path: str | Path) -> Path:
    """summary.csv: one row per point; empty cells where a figure is missing or n is too small for a CI."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_columns())
        for s in summaries:
            row: list[Any] = [s.profile, _cell(s.uplink_rate_mbit), _cell(s.uplink_delay_ms), s.backend, s.model,
                              s.partition, s.partition_id, s.encoding, s.compression, s.image, s.weights,
                              s.random_weights, s.n, s.n_errors, _cell(s.ci_coverage), _cell(s.host_cpu_stolen_pct)]
            for figure in FIGURES:
                stats = s.figures[figure.key]
                row += [_cell(stats.median), _cell(stats.low), _cell(stats.high)]
                if figure.group in PERCENTILE_GROUPS:
                    tail = s.percentiles.get(figure.key) or percentiles(())
                    row += [_cell(tail.get(p)) for p in PERCENTILES] + [_cell(tail.maximum)]
            shares = {(b.budget, b.kind): b for b in s.budget_shares}
            for column in budget_columns()[::5]:
                name, kind = column[len("kpi_"):].rsplit("_", 2)[:2]
                share = shares.get((name, kind))
                interval = share.interval if share is not None else None
                row += [share.met if share else "", share.n if share else "",
                        _cell(share.share) if share else "", _cell(interval[0]) if interval else "",
                        _cell(interval[1]) if interval else ""]
            writer.writerow(row)
    tmp.replace(path)
    return path


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.10g}"
    return value

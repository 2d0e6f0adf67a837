"""Per-point summaries of a sweep's records: median and 95% CI (splitbed.stats) of every figure, the tails
(p90/p95/p99/max) of every time, size and traffic figure and the share of inferences within each budget
(splitbed.sweep.distribution), written as summary.csv; and the best partition per (profile, devices, model,
carriage).

Records are grouped by the point key the sweep writes into their tags; records from elsewhere (a local node run
by hand) are grouped by what they say about themselves (profile, model, partition, carriage, image, weights).
Only measurements count: warm-up inferences and error records are left out of the statistics (errors are
counted per point). Under a paced workload (splitbed.workload) frames its overload policy dropped are counted per
point (`frames_dropped`, not errors) and miss every latency budget; `frames_late` counts good frames whose latency
from capture exceeded the frame deadline. A point measured on hosts of different CPU models (a distributed sweep, or results moved
between machines) gets one summary per CPU model: compute times of different CPUs are different quantities, and
pooling them would give a median of neither. `pool_hosts=True` pools them anyway (the row then names them all).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splitbed.nodes.metrics import DROPPED_STATUS
from splitbed.stats import MedianCI, coefficient_of_variation_pct, median_ci
from splitbed.sweep.distribution import (
    PERCENTILE_GROUPS,
    PERCENTILES,
    BudgetShare,
    Percentiles,
    budget_shares,
    percentiles,
)
from splitbed.sweep.figures import BY_KEY, FIGURES, LATENCY_SEGMENTS, segment_value
from splitbed.sweep.hosts import cpu_model, machine
from splitbed.sweep.hostspeed import CV_TARGET_PCT, HostSpeed, host_speed, is_burst
from splitbed.sweep.outliers import Outlier, find_outliers
from splitbed.sweep.plan import SINGLE_WORKLOAD
from splitbed.sweep.realisations import independent_draws
from splitbed.sweep.store import is_measurement, point_key

SUMMARY_NAME = "summary.csv"
IDENTITY_COLUMNS = ("profile", "uplink_rate_mbit", "uplink_delay_ms", "backend", "ue_device", "ue_mechanism",
                    "edge_device", "edge_mechanism", "model", "partition", "partition_id", "encoding", "compression",
                    "image", "weights", "random_weights", "runtimes", "transport", "cpu_model", "hosts", "n", "n_errors",
                    "ci_coverage", "host_cpu_stolen_pct", "ue_late_records", "independent_draws", "e2e_cv_pct",
                    "outliers",
                    "outlier_causes", "workload", "frames_dropped", "frames_late", "host_speed_n",
                    "host_speed_between_n", "host_speed_burst_n", "host_speed_edge_cv_pct", "host_speed_ue_cv_pct", "host_speed_edge_ms", "host_speed_ue_ms",
                    "host_speed_note")


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
    ue_device: str = "host"
    ue_mechanism: str = "none"
    edge_device: str = "host"
    edge_mechanism: str = "none"
    runtimes: str = "tensorflow/tensorflow"  # inference runtimes of the UE and the edge (records' ue/edge_runtime)
    transport: str = "tcp"  # the session's binding (records' transport.binding; docs/PROTOCOL.md section 8)
    n: int = 0
    n_errors: int = 0
    figures: dict[str, MedianCI] = field(default_factory=dict)
    segments: dict[str, MedianCI] = field(default_factory=dict)
    weights_warning: str | None = None
    host_cpu_stolen_pct: float | None = None
    ue_late_records: int = 0  # records whose UE stretch ended late (docs/DEVICES.md): the cause is in each record
    independent_draws: int | None = None  # distinct channel realisations among the n (None: deterministic link)
    e2e_cv_pct: float | None = None  # coefficient of variation of e2e over the n good records
    outliers: list[Outlier] = field(default_factory=list)  # slow single inferences, with their causes
    cpu_model: str = "unknown"  # the CPU model that measured the n ("; "-joined when pooled across models)
    hosts: list[str] = field(default_factory=list)  # machines the n were measured on (splitbed.sweep.hosts)
    pooled_hosts: bool = False  # summarised with pool_hosts=True: CPU models were not kept apart
    percentiles: dict[str, Percentiles] = field(default_factory=dict)  # times, sizes, traffic (distribution.py)
    budget_shares: list[BudgetShare] = field(default_factory=list)
    workload: str = SINGLE_WORKLOAD  # the records' workload.spec (splitbed.workload)
    frames_dropped: int = 0   # frames the workload's overload policy dropped (records with status dropped)
    frames_late: int = 0      # good frames whose latency from capture exceeded the frame deadline (workload.late)
    host_speed: HostSpeed | None = None  # the reference workload's runs: between the inferences, bursts (sweep.hostspeed)

    @property
    def host_speed_note(self) -> str | None:
        """A sentence when e2e's CV is above the target and the host's speed varied comparably."""
        return self.host_speed.note(self.e2e_cv_pct, CV_TARGET_PCT) if self.host_speed is not None else None

    @property
    def carriage(self) -> str:
        """The encoding with its compression profile, e.g. `tlv/zstd` or `json-baseline`, the binding when it is not
        TCP (`tlv/zstd over quic`) and the workload when it is paced (`tlv/none, periodic:1/queue:1`): every table
        and plot keeps the bindings and the workloads apart."""
        base = self.encoding if self.encoding != "tlv" else f"tlv/{self.compression}"
        base = base if self.transport == "tcp" else f"{base} over {self.transport}"
        return base if self.workload == SINGLE_WORKLOAD else f"{base}, {self.workload}"  # paced frames: apart, too

    def median(self, key: str) -> float | None:
        stats = self.figures.get(key)
        return stats.median if stats is not None else None

    @property
    def modelled(self) -> bool:
        """Whether a side's device was modelled (faster than the host): its e2e is given measured and modelled."""
        return "model" in (self.ue_mechanism, self.edge_mechanism)

    def deciding_e2e(self) -> float | None:
        """The end-to-end latency that ranks this point: modelled where a side is modelled, else measured."""
        return self.median("e2e_latency_modelled_ms") if self.modelled else self.median("e2e_latency_ms")

    @property
    def devices(self) -> str:
        """`UE phone-midrange (stretch), edge host (none)`."""
        return f"UE {self.ue_device} ({self.ue_mechanism}), edge {self.edge_device} ({self.edge_mechanism})"

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
    ue, edge = _table(record.get("ue_device")), _table(record.get("edge_device"))
    return {
        "ue_device": str(ue.get("name") or "host"), "ue_mechanism": str(ue.get("mechanism") or "none"),
        "edge_device": str(edge.get("name") or "host"), "edge_mechanism": str(edge.get("mechanism") or "none"),
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
        "runtimes": "/".join(str(_table(record.get(side)).get("name") or "tensorflow")
                             for side in ("ue_runtime", "edge_runtime")),
        "transport": str(_table(record.get("transport")).get("binding") or "tcp"),
        "workload": str(_table(record.get("workload")).get("spec") or SINGLE_WORKLOAD),
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
                                             "weights", "backend", "ue_device", "edge_device"))


def summarise(records: Iterable[dict[str, Any]], *, pool_hosts: bool = False,
              budgets: list[Any] | None = None) -> list[PointSummary]:
    """One PointSummary per point, in the order points first appear; per point and CPU model when the point was
    measured on hosts of different CPU models, unless `pool_hosts`. `budgets`: the budgets (report.budgets.Budget)
    whose shares each summary counts (the sweep and the report pass budgets.toml's or the user's; None: none)."""
    budgets = list(budgets or [])
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    bursts: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)  # host-speed runs around a paced stream
    for record in records:
        where = (record_key(record), "" if pool_hosts else cpu_model(record))
        if is_burst(record):
            bursts[where].append(record)
        elif is_measurement(record):
            groups[where].append(record)
    summaries = []
    for (key, model), group in groups.items():
        good = [r for r in group if r.get("status") == "ok"]
        dropped = sum(1 for r in group if r.get("status") == DROPPED_STATUS)
        ident = _identity((good or group)[0])
        summary = PointSummary(key=key, n=len(good), n_errors=len(group) - len(good) - dropped, **ident)
        summary.frames_dropped = dropped
        summary.frames_late = sum(1 for r in good if _table(r.get("workload")).get("late") is True)
        summary.cpu_model = "; ".join(dict.fromkeys(cpu_model(r) for r in group))
        summary.hosts = list(dict.fromkeys(machine(r) for r in group))
        summary.pooled_hosts = pool_hosts
        summary.figures = {f.key: median_ci(f.value(r) for r in good) for f in FIGURES}
        summary.segments = {k: median_ci(segment_value(r, k) for r in good) for k, _ in LATENCY_SEGMENTS}
        summary.host_cpu_stolen_pct = host_cpu_stolen_pct(good)
        summary.ue_late_records = sum(1 for r in good if _table(r.get("ue_device")).get("late_cause"))
        summary.independent_draws = independent_draws(good)
        summary.e2e_cv_pct = coefficient_of_variation_pct(BY_KEY["e2e_latency_ms"].value(r) for r in good)
        summary.outliers = find_outliers(good)
        summary.host_speed = host_speed(good, _bursts_of(bursts, groups, key, model))
        summary.percentiles = {f.key: percentiles(f.value(r) for r in good) for f in FIGURES
                               if f.group in PERCENTILE_GROUPS}
        summary.budget_shares = budget_shares(good, budgets, dropped=dropped)
        summaries.append(summary)
    return summaries


def _bursts_of(bursts: dict[tuple[str, str], list[dict[str, Any]]], groups: dict[tuple[str, str], Any], key: str,
               model: str) -> list[dict[str, Any]]:
    """A point's host-speed bursts on its machine; a burst whose machine no record of the point names (none known)
    goes with every summary of the point."""
    orphans = [b for (k, m), found in bursts.items() if k == key and (k, m) not in groups for b in found]
    return bursts.get((key, model), []) + orphans


def by_cpu_model(summaries: Iterable[PointSummary]) -> dict[str, list[PointSummary]]:
    """Summaries per CPU model, in order of appearance (one group when every point ran on one model or when they
    were pooled)."""
    items = list(summaries)
    if any(s.pooled_hosts for s in items):
        return {"; ".join(dict.fromkeys(s.cpu_model for s in items)): items} if items else {}
    groups: dict[str, list[PointSummary]] = {}
    for summary in items:
        groups.setdefault(summary.cpu_model, []).append(summary)
    return groups


def split_by_host(summaries: Iterable[PointSummary]) -> list[str]:
    """Keys of points that have more than one summary (measured on hosts of different CPU models, not pooled)."""
    seen: dict[str, int] = defaultdict(int)
    for summary in summaries:
        seen[summary.key] += 1
    return [key for key, count in seen.items() if count > 1]


BEST_GROUP = ("profile", "ue_device", "edge_device", "model", "carriage")


def best_per_group(summaries: Iterable[PointSummary],
                   by: tuple[str, ...] = BEST_GROUP) -> dict[tuple[str, ...], PointSummary]:
    """The point with the lowest median end-to-end latency in each group (ties: lower partition id). Where a side
    is modelled (a device faster than the host), its modelled end-to-end latency decides. Summaries of several CPU
    models are compared per model (`by_cpu_model`), never against each other."""
    best: dict[tuple[str, ...], PointSummary] = {}
    for summary in summaries:
        value = summary.deciding_e2e()
        if value is None:
            continue
        group = tuple(str(getattr(summary, k)) for k in by)
        current = best.get(group)
        if current is None or (value, summary.partition_id) < (current.deciding_e2e() or 0.0, current.partition_id):
            best[group] = summary
    return best


def csv_columns(summaries: Iterable[PointSummary] = ()) -> list[str]:
    columns = list(IDENTITY_COLUMNS)
    for figure in FIGURES:
        columns += [f"{figure.key}_median", f"{figure.key}_ci_low", f"{figure.key}_ci_high"]
        if figure.group in PERCENTILE_GROUPS:
            columns += [f"{figure.key}_p{p}" for p in PERCENTILES] + [f"{figure.key}_max"]
    columns += budget_columns(summaries)
    return columns


def budget_bounds(summaries: Iterable[PointSummary]) -> list[tuple[str, str]]:
    """(budget, kind) of every bound the summaries counted shares for, in order of appearance."""
    return list(dict.fromkeys((b.budget, b.kind) for s in summaries for b in s.budget_shares))


def budget_columns(summaries: Iterable[PointSummary]) -> list[str]:
    """kpi_<budget>_<kind>_{met,n,share,ci_low,ci_high} for every bound of every budget the summaries counted."""
    return [f"kpi_{name}_{kind}_{part}" for name, kind in budget_bounds(summaries)
            for part in ("met", "n", "share", "ci_low", "ci_high")]


def write_csv(summaries: Iterable[PointSummary], path: str | Path) -> Path:
    """summary.csv: one row per point; empty cells where a figure is missing or n is too small for a CI."""
    path = Path(path)
    summaries = list(summaries)
    bounds = budget_bounds(summaries)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_columns(summaries))
        for s in summaries:
            row: list[Any] = [s.profile, _cell(s.uplink_rate_mbit), _cell(s.uplink_delay_ms), s.backend, s.ue_device,
                              s.ue_mechanism, s.edge_device, s.edge_mechanism, s.model, s.partition, s.partition_id,
                              s.encoding, s.compression, s.image, s.weights, s.random_weights, s.runtimes, s.transport,
                              s.cpu_model, "; ".join(s.hosts), s.n, s.n_errors, _cell(s.ci_coverage),
                              _cell(s.host_cpu_stolen_pct), s.ue_late_records,
                              _cell(s.independent_draws), _cell(s.e2e_cv_pct), len(s.outliers),
                              " | ".join(o.describe() for o in s.outliers), s.workload, s.frames_dropped,
                              s.frames_late, *_host_speed_cells(s)]
            for figure in FIGURES:
                stats = s.figures[figure.key]
                row += [_cell(stats.median), _cell(stats.low), _cell(stats.high)]
                if figure.group in PERCENTILE_GROUPS:
                    tail = s.percentiles.get(figure.key) or percentiles(())
                    row += [_cell(tail.get(p)) for p in PERCENTILES] + [_cell(tail.maximum)]
            shares = {(b.budget, b.kind): b for b in s.budget_shares}
            for name, kind in bounds:
                share = shares.get((name, kind))
                interval = share.interval if share is not None else None
                row += [share.met if share else "", share.n if share else "",
                        _cell(share.share) if share else "", _cell(interval[0]) if interval else "",
                        _cell(interval[1]) if interval else ""]
            writer.writerow(row)
    tmp.replace(path)
    return path


def _host_speed_cells(summary: PointSummary) -> list[Any]:
    speed = summary.host_speed
    if speed is None or not speed.n:
        return [0, 0, 0, "", "", "", "", ""]
    return [speed.n, speed.between, speed.burst_runs, _cell(speed.cv_pct["edge"]), _cell(speed.cv_pct["ue"]), _cell(speed.median_ms["edge"]),
            _cell(speed.median_ms["ue"]), summary.host_speed_note or ""]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.10g}"
    return value

"""The report's repeatability tables: per point the spread of e2e (CV, outliers) beside the host's own speed in
the same minutes (the reference workload's CV per node CPU, and where its runs came from: right before the
inferences or in bursts around a paced stream; splitbed.sweep.hostspeed), and the spread note where e2e's CV is
above the target while the host varied comparably. Records made before the reference existed, or with
`--no-host-speed-probe`, show their e2e CV and `-` for the host."""

from __future__ import annotations

from collections.abc import Iterable

from splitbed.report.tables import Table, _anchor, group_key
from splitbed.sweep.hostspeed import CV_TARGET_PCT, HostSpeed
from splitbed.sweep.summary import PointSummary

HEADERS = ["Partition (id)", "n", "e2e CV", "Outliers", "Host-speed runs (source)", "Reference CV, edge's CPU (median)",
           "Reference CV, UE's CPU (median)"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} %"


def _reference(speed: HostSpeed | None, role: str) -> str:
    if speed is None or not speed.n or speed.cv_pct.get(role) is None:
        return "-"
    median = speed.median_ms.get(role)
    return _pct(speed.cv_pct[role]) + ("" if median is None else f" ({median:.1f} ms)")


def _runs(speed: HostSpeed | None) -> str:
    if speed is None or not speed.n:
        return "none"
    return f"{speed.n}: {speed.source}"


def _outliers(summary: PointSummary) -> str:
    if not summary.outliers:
        return "0"
    causes = sorted({c.split(":")[0] for o in summary.outliers for c in o.causes})
    return f"{len(summary.outliers)} ({', '.join(causes) if causes else 'no cause in the record'})"


def repeatability_tables(summaries: Iterable[PointSummary]) -> list[Table]:
    """One table per (profile, UE device, edge device, model, carriage), a row per partition."""
    groups: dict[tuple[str, str, str, str, str], list[PointSummary]] = {}
    for summary in summaries:
        groups.setdefault(group_key(summary), []).append(summary)
    tables = []
    for (profile, ue, edge, model, carriage), members in groups.items():
        members.sort(key=lambda s: s.partition_id)
        rows = [[f"{s.partition} ({s.partition_id})", str(s.n), _pct(s.e2e_cv_pct), _outliers(s),
                 _runs(s.host_speed), _reference(s.host_speed, "edge"), _reference(s.host_speed, "ue")]
                for s in members]
        notes = [f"Spread {s.partition}: {s.host_speed_note}." for s in members if s.host_speed_note]
        notes.append(f"e2e CV: sample standard deviation / mean of the n good inferences (target < {CV_TARGET_PCT:g} "
                     "%). Reference: a fixed numpy matrix product run on each node's CPUs, its CPU time's CV over "
                     "the point's runs (median in brackets), measured between the inferences (right before one) or, "
                     "where a paced stream left no room between its frames, in bursts right before and after the "
                     "stream; a CV comparable to e2e's means the host's own speed, not the testbed, set the spread. "
                     "Outliers: slow single inferences and the cause their record shows (summary.csv). "
                     "docs/SWEEP.md, 'Host speed'.")
        if not any(s.host_speed is not None and s.host_speed.n for s in members):
            notes.append("No host-speed runs in these records (measured with --no-host-speed-probe, or before the "
                         "sweep ran the reference).")
        tables.append(Table(title=f"{model} on {profile}, {carriage}; UE {ue}, edge {edge}: repeatability and host "
                                  "speed", headers=list(HEADERS), rows=rows, notes=notes,
                            anchor=_anchor("repeat", profile, ue, edge, model, carriage)))
    return tables

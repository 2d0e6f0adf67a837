"""Slow single inferences of a point, with their cause when the record shows one.

An outlier is a good record whose end-to-end latency lies above the point's median by more than
max(3 x the scaled median absolute deviation, 5 % of the median): robust to the outliers themselves and, on a
point whose values are nearly equal, not triggered by a few tenths of a millisecond. Its excess over the median
is then compared with what the record says happened in its windows (both nodes' resources, docs/METRICS.md),
each taken relative to the point's own median of that figure, so that what every inference pays is no cause:

- `steal`: CPU time the hypervisor took from the VM (host_cpu_stolen_ms) beyond the point's usual;
- `CPU wait`: time runnable tasks waited for a CPU (host_cpu_wait_ms, PSI), beyond the usual;
- `GC pause`: the nodes' Python garbage collections (gc_ms), beyond the usual;
- `page-fault storm`: the nodes' page faults, several times the usual;
- `host speed`: the reference workload run on a node's CPUs right before this inference (`host_speed`,
  splitbed.sweep.hostspeed) took more CPU time than the point's usual, by at least 10 % and beyond the scatter of
  the point's runs (3 scaled MADs): the host itself computed slower then. Its share of the excess is, per role
  whose run stood out, the point's median of that role's own host compute scaled by how much slower the reference
  was: the edge's tail call (`remote_inference_ms`), the UE's head call as the host computed it
  (`local_inference_measured_ms`, without the wait of a UE stretched to a phone's time), never the whole e2e,
  whose delivery, waits and stretch a slower CPU does not lengthen (splitbed.sweep.hostspeed.host_compute_ms).
  Only a record with a run right before it can have this cause: the bursts of runs before and after a paced
  point's stream (docs/SWEEP.md, "Host speed") say how the host varied over the point, not before which frame.

A cause is named when it accounts for at least a quarter of the excess (a storm: at least 4x the usual faults
and 1000 more); none found says so ("no cause in the record"): compute that was simply slower, or something the
record does not see.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from splitbed.sweep.hostspeed import host_compute_ms, slower_references, usual_runs

MAD_SCALE = 1.4826  # makes the MAD estimate the standard deviation of normal data
MAD_FACTOR = 3.0
MIN_EXCESS_SHARE = 0.05
CAUSE_SHARE = 0.25
STORM_FACTOR = 4.0
STORM_MIN_FAULTS = 1000
SIDES = ("local_resources", "remote_resources")


@dataclass
class Outlier:
    """One slow record of a point: which (repetition / draw), how slow, and why where the record says."""

    repetition: Any
    e2e_ms: float
    excess_ms: float
    causes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        causes = "; ".join(self.causes) if self.causes else "no cause in the record"
        return f"rep {self.repetition}: {self.e2e_ms:.1f} ms (+{self.excess_ms:.1f}): {causes}"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _sum(record: Mapping[str, Any], key: str) -> float | None:
    """`key` summed over both nodes' resource windows; None when neither has it."""
    values = [_number(record.get(side, {}).get(key)) if isinstance(record.get(side), Mapping) else None
              for side in SIDES]
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _faults(record: Mapping[str, Any]) -> float | None:
    minor, major = _sum(record, "minor_faults"), _sum(record, "major_faults")
    return None if minor is None and major is None else (minor or 0.0) + (major or 0.0)


def _median(values: list[float | None]) -> float:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else 0.0


def find_outliers(records: list[dict[str, Any]]) -> list[Outlier]:
    """The outliers among a point's good records (see the module docstring), slowest first."""
    e2e = [_number(r.get("e2e_latency_ms")) for r in records]
    values = [v for v in e2e if v is not None]
    if len(values) < 3:
        return []
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    threshold = max(MAD_FACTOR * MAD_SCALE * mad, MIN_EXCESS_SHARE * median)
    usual = {
        "steal": _median([_sum(r, "host_cpu_stolen_ms") for r in records]),
        "wait": _median([_sum(r, "host_cpu_wait_ms") for r in records]),
        "gc": _median([_sum(r, "gc_ms") for r in records]),
        "faults": _median([_faults(r) for r in records]),
    }
    usual_reference = usual_runs(records)
    usual_compute = {role: _median([host_compute_ms(r, role) for r in records]) for role in usual_reference}
    found = []
    for record, value in zip(records, e2e, strict=True):
        if value is None or value - median <= threshold:
            continue
        excess = value - median
        outlier = Outlier(_repetition(record), value, excess)
        for label, key, figure in (("steal", "steal", _sum(record, "host_cpu_stolen_ms")),
                                   ("CPU wait", "wait", _sum(record, "host_cpu_wait_ms")),
                                   ("GC pause", "gc", _sum(record, "gc_ms"))):
            if figure is not None and figure - usual[key] >= CAUSE_SHARE * excess:
                outlier.causes.append(f"{label} {figure - usual[key]:.1f} ms over the usual")
        faults = _faults(record)
        if faults is not None and faults >= STORM_FACTOR * usual["faults"] and \
                faults - usual["faults"] >= STORM_MIN_FAULTS:
            outlier.causes.append(f"page-fault storm ({faults:.0f} faults, usually {usual['faults']:.0f})")
        cause = _host_speed_cause(slower_references(record, usual_reference), usual_compute, excess)
        if cause is not None:
            outlier.causes.append(cause)
        found.append(outlier)
    return sorted(found, key=lambda o: -o.excess_ms)


def _host_speed_cause(slower: Mapping[str, float], usual_compute: Mapping[str, float], excess: float) -> str | None:
    """The `host speed` cause when the roles whose reference stood out, each at its usual host compute, account for
    a quarter of the excess (the module docstring)."""
    lost = {role: fraction * usual_compute.get(role, 0.0) for role, fraction in slower.items()}
    if not lost or sum(lost.values()) < CAUSE_SHARE * excess:
        return None
    parts = [f"{100 * slower[role]:.0f} % more CPU time than usual on the {_who(role)} CPU right before it "
             f"(~{lost[role]:.1f} ms of its usual {usual_compute[role]:.1f} ms {_work(role)})"
             for role in sorted(lost, key=lambda r: -lost[r])]
    return "host speed: the reference workload took " + "; ".join(parts)


def _who(role: str) -> str:
    return "edge's" if role == "edge" else "UE's"


def _work(role: str) -> str:
    return "tail" if role == "edge" else "head"


def _repetition(record: Mapping[str, Any]) -> Any:
    tags = record.get("tags")
    if isinstance(tags, Mapping):
        for key in ("rep", "draw"):
            if key in tags:
                return tags[key]
    return record.get("repetition", "?")

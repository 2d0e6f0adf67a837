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
  the point's runs (3 scaled MADs): the host itself computed slower then. Its
  share of the excess is the inference's median e2e scaled by how much slower the reference was (what the whole
  inference would have lost at that speed).

A cause is named when it accounts for at least a quarter of the excess (a storm: at least 4x the usual faults
and 1000 more); none found says so ("no cause in the record"): compute that was simply slower, or something the
record does not see.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from splitbed.sweep.hostspeed import slower_reference, usual_runs

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
        slower = slower_reference(record, usual_reference)
        if slower is not None and slower[1] * median >= CAUSE_SHARE * excess:
            where = "edge's" if slower[0] == "edge" else "UE's"
            outlier.causes.append(f"host speed: the reference workload took {100 * slower[1]:.0f} % more CPU time "
                                  f"than usual on the {where} CPU right before it")
        found.append(outlier)
    return sorted(found, key=lambda o: -o.excess_ms)


def _repetition(record: Mapping[str, Any]) -> Any:
    tags = record.get("tags")
    if isinstance(tags, Mapping):
        for key in ("rep", "draw"):
            if key in tags:
                return tags[key]
    return record.get("repetition", "?")

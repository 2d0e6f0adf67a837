"""The partition advisor, in the spirit of Neurosurgeon (Kang et al., ASPLOS 2017): predict each partition's
end-to-end latency (or the UE's energy) from the devices' profiles (splitbed.devices), the partition's share of
the model measured on this machine (splitbed.measure), the intermediate data size, and the link profile
(splitbed.latency, splitbed.linkmodel), then rank the partitions.

`compare` puts the prediction next to a measurement (e.g. a sweep on the real testbed): Spearman rank correlation
and which pairs of partitions are ranked in the wrong order although their measured 95% CIs do not overlap;
`measure_on_testbed` makes that measurement.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from netem.profile import LinkProfile
from splitbed.latency import (
    OBJECTIVES,
    AdviseError,
    ModelTiming,
    PartitionTiming,
    Prediction,
    device_ms,
    predict,
)
from splitbed.linkmodel import (
    FRAME_OVERHEAD_BYTES,
    INITIAL_WINDOW_SEGMENTS,
    MSS_BYTES,
    DirectionModel,
    LinkModel,
    SendWindow,
    wire_bytes,
)
from splitbed.measure import measure_carriages, measure_model

__all__ = [  # the advisor's API; the model and the timing live below it and are re-exported here
    "FRAME_OVERHEAD_BYTES", "INITIAL_WINDOW_SEGMENTS", "MSS_BYTES", "AdviseError", "Comparison", "DirectionModel",
    "LinkModel", "Measured", "ModelTiming", "OBJECTIVES", "PartitionTiming", "Prediction", "SendWindow", "compare",
    "device_ms", "measure_carriages", "measure_model", "measure_on_testbed", "predict", "ranks", "record_figure",
    "spearman", "wire_bytes",
]


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties get their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return result


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (Pearson correlation of the ranks; ties averaged)."""
    if len(a) != len(b) or len(a) < 2:
        raise AdviseError("spearman needs two equally long sequences of at least 2 values")
    ra, rb = ranks(a), ranks(b)
    mean_a, mean_b = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(ra, rb, strict=True))
    var_a = sum((x - mean_a) ** 2 for x in ra)
    var_b = sum((y - mean_b) ** 2 for y in rb)
    if var_a == 0 or var_b == 0:
        return 1.0 if var_a == var_b else 0.0
    return cov / math.sqrt(var_a * var_b)


@dataclass(frozen=True)
class Measured:
    """A measured median end-to-end latency with its 95% CI (None: n too small for one)."""

    median_ms: float
    low_ms: float | None = None
    high_ms: float | None = None
    n: int = 0


@dataclass
class Comparison:
    """Predicted next to measured, over the partitions both have."""

    rows: list[tuple[Prediction, Measured]]
    spearman: float
    predicted_best: str
    measured_best: str
    contradictions: list[tuple[str, str]] = field(default_factory=list)

    @property
    def best_matches(self) -> bool:
        return self.predicted_best == self.measured_best

    @property
    def best_indistinguishable(self) -> bool:
        """The predicted best is the measured best, or the measurement cannot tell the two apart: their 95% CIs
        overlap (or one has none), so picking either is right within what was measured."""
        if self.best_matches:
            return True
        measured = {p.partition: m for p, m in self.rows}
        a, b = measured[self.predicted_best], measured[self.measured_best]
        if None in (a.low_ms, a.high_ms, b.low_ms, b.high_ms):
            return True
        assert a.low_ms is not None and b.high_ms is not None
        return a.low_ms <= b.high_ms  # the measured best lies below the predicted best: overlap iff a.low <= b.high


def compare(predictions: Sequence[Prediction], measured: dict[str, Measured],
            objective: str = "latency") -> Comparison:
    """Spearman over the common partitions, best of each, and the `contradictions`: pairs the prediction orders
    one way while the measurement clearly (non-overlapping 95% CIs) orders them the other way. `objective`:
    what both rank by (the measured values are then energies, in mJ, in the `_ms` fields)."""
    rows = [(p, measured[p.partition]) for p in predictions if p.partition in measured]
    if len(rows) < 2:
        raise AdviseError("need measurements of at least two predicted partitions to compare rankings")

    def value(p: Prediction) -> float:
        return (p.ue_energy_mj or 0.0) if objective == "energy" else p.e2e_ms

    rho = spearman([value(p) for p, _ in rows], [m.median_ms for _, m in rows])
    contradictions = []
    for i, (p_a, m_a) in enumerate(rows):
        for p_b, m_b in rows[i + 1:]:
            predicted_a_first = value(p_a) <= value(p_b)
            if m_a.high_ms is not None and m_b.low_ms is not None and m_a.high_ms < m_b.low_ms:
                measured_a_first: bool | None = True
            elif m_b.high_ms is not None and m_a.low_ms is not None and m_b.high_ms < m_a.low_ms:
                measured_a_first = False
            else:
                measured_a_first = None  # not clearly separated by the measurement
            if measured_a_first is not None and measured_a_first != predicted_a_first:
                contradictions.append((p_a.partition, p_b.partition))
    best_predicted = min(rows, key=lambda r: value(r[0]))[0].partition
    best_measured = min(rows, key=lambda r: r[1].median_ms)[0].partition
    return Comparison(rows, rho, best_predicted, best_measured, contradictions)


def record_figure(record: dict[str, Any], objective: str) -> float | None:
    """What a measured record says for `objective`: the end-to-end latency (the modelled one where a device
    faster than the host was modelled), or the UE's model-based energy (compute + radio)."""
    if objective == "energy":
        energy = record.get("ue_energy") or {}
        value = energy.get("total_mj")
    else:
        modelled = record.get("e2e_latency_modelled_ms")
        value = modelled if modelled is not None else record.get("e2e_latency_ms")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def measure_on_testbed(bed: Any, model: str, partitions: Sequence[str], *, encoding: str = "tlv",
                       compression: str = "none", image: str = "builtin:chelsea", repetitions: int = 6,
                       warmup: int = 1, objective: str = "latency") -> dict[str, Measured]:
    """Median end-to-end latency (or UE energy, by `objective`) and 95% CI per partition, measured on a running
    Testbed (its devices emulated by its nodes).

    On a trace-driven link, round k of the round-robin starts every partition's inference k/n of the trace's
    period in (splitbed.trace_phases), so partitions meet the same capacities, spread over the whole
    trace, as the prediction (the median over start phases) assumes."""
    from splitbed.stats import median_ci
    from splitbed.trace_phases import at_repetition, is_trace_driven

    base = getattr(bed, "profile", None)
    trace_profile = base if isinstance(base, LinkProfile) and is_trace_driven(base) else None

    def run(job: dict[str, Any], round_index: int, tags: dict[str, Any]) -> list[dict[str, Any]]:
        if trace_profile is not None:
            bed.update_link(at_repetition(trace_profile, round_index, repetitions))
        return list(bed.run(dict(job, tags=tags)))

    jobs = {name: {"model": model, "partition": name, "encoding": encoding, "compression": compression,
                   "image": image, "repetitions": 1} for name in partitions}
    for job in jobs.values():
        for _ in range(warmup):
            run(job, 0, {"advise": True, "warmup": True})
    samples: dict[str, list[float]] = {name: [] for name in partitions}
    for round_index in range(repetitions):  # round-robin, like the compute timings: load drifts hit all alike
        for name, job in jobs.items():
            samples[name] += [value for r in run(job, round_index, {"advise": True})
                              if r.get("status") == "ok" and (value := record_figure(r, objective)) is not None]
    if trace_profile is not None:
        bed.update_link(trace_profile)
    result = {}
    for name, values in samples.items():
        stats = median_ci(values)
        if stats.median is None:
            raise AdviseError(f"no successful inference at {name} on the testbed")
        result[name] = Measured(stats.median, stats.low, stats.high, stats.n)
    return result

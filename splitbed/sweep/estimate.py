"""How long a sweep will take, before running it: the advisor's per-partition prediction (splitbed.advise: compute
timed here, real data-unit sizes, the link model) for every point, times its inferences, plus the orchestration
costs measured on the main job. An estimate, not a measurement: it ignores loss and retransmissions (a lower
bound on lossy profiles such as cell-edge) and takes each transfer on a trace-driven link at its median time over
the trace's start phases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from splitbed.sweep.plan import SweepSpec, link_profile, points

# Orchestration costs beyond the inferences' own end-to-end latency, fitted to two real sweeps on this machine
# (docs/SWEEP.md "Wall time"): the main job (VGG16, 6 points x 11 inferences: 8.4 s beyond testbed start and the
# records' e2e sum) and the 5g-split-ai slice of --full (VGG16 + ResNet50, 100 points x 4 inferences: 205 s).
# Per point: building the partition's head and tail on both nodes. Per inference: job round trip, record, fsync.
OVERHEAD_PER_POINT_S = 2.0
OVERHEAD_PER_INFERENCE_MS = 20.0
# Testbed start (topology, both nodes, one warm-up per model), per profile: measured 32 s (VGG16) and 25 s (both).
TESTBED_START_S = 30.0


@dataclass
class Estimate:
    points: int
    inferences: int
    total_s: float
    by_profile_s: dict[str, float] = field(default_factory=dict)
    slowest: list[tuple[float, str]] = field(default_factory=list)  # (seconds, point key), longest first
    notes: list[str] = field(default_factory=list)


def estimate(spec: SweepSpec, *, repeats: int = 3, on_model: Callable[[str], None] | None = None,
             timings: dict[str, dict[tuple[str, str], Any]] | None = None) -> Estimate:
    """Predict the wall time of `spec` on this machine. Each model's partitions are timed first (minutes), unless
    `timings` (model -> {(encoding, compression): advise.ModelTiming}) are given."""
    from splitbed.advise import LinkModel, measure_carriages, predict
    from splitbed.devices import load as load_device

    matrix = points(spec)
    devices = {name: load_device(name) for p in matrix for name in (p.ue_device, p.edge_device)}
    shares = any(not d.is_host for d in devices.values())
    per_inference: dict[str, float] = {}
    for model in dict.fromkeys(p.model for p in matrix):
        mine = [p for p in matrix if p.model == model]
        carriages = list(dict.fromkeys((p.encoding, p.compression) for p in mine))
        if on_model is not None:
            on_model(model)
        if timings is not None and model in timings:
            measured = timings[model]
        else:
            measured = measure_carriages(model, carriages, partitions=list(dict.fromkeys(p.partition for p in mine)),
                                         weights=spec.weights, image=spec.image, repeats=repeats, shares=shares)
        for profile, ue, edge in dict.fromkeys((p.profile, p.ue_device, p.edge_device) for p in mine):
            link = LinkModel.from_profile(link_profile(profile))
            for (encoding, compression), timing in measured.items():
                for prediction in predict(timing, link, ue_device=devices[ue], edge_device=devices[edge]):
                    key = (profile, model, prediction.partition, encoding, compression, ue, edge)
                    per_inference["|".join(key)] = prediction.e2e_ms
    result = Estimate(points=len(matrix), inferences=len(matrix) * (spec.repetitions + spec.warmup), total_s=0.0)
    costs: list[tuple[float, str]] = []
    for point in matrix:
        e2e = per_inference["|".join((point.profile, point.model, point.partition, point.encoding,
                                      point.compression, point.ue_device, point.edge_device))]
        seconds = OVERHEAD_PER_POINT_S + (spec.repetitions + spec.warmup) * (e2e + OVERHEAD_PER_INFERENCE_MS) / 1000
        costs.append((seconds, point.key))
        result.by_profile_s[point.profile] = result.by_profile_s.get(point.profile, 0.0) + seconds
    for profile in result.by_profile_s:
        result.by_profile_s[profile] += TESTBED_START_S
    result.total_s = sum(result.by_profile_s.values())
    result.slowest = sorted(costs, reverse=True)[:5]
    result.notes = ["estimate from the advisor's model (docs/SWEEP.md): no loss or retransmissions, traces at "
                    "the median start phase; compute timed now on this machine"]
    return result


def describe(result: Estimate) -> list[str]:
    """Human lines for the CLI."""
    lines = [f"{result.points} points, {result.inferences} inferences: estimated {_hms(result.total_s)}"]
    lines += [f"  {profile}: {_hms(seconds)}" for profile, seconds in sorted(result.by_profile_s.items())]
    lines.append("  longest points:")
    lines += [f"    {_hms(seconds)}  {key}" for seconds, key in result.slowest]
    lines += [f"  note: {note}" for note in result.notes]
    return lines


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min" if seconds >= 3600 else \
        f"{seconds // 60} min {seconds % 60:02d} s"


def to_dict(result: Estimate) -> dict[str, Any]:
    return {"points": result.points, "inferences": result.inferences, "total_s": result.total_s,
            "by_profile_s": result.by_profile_s, "slowest": result.slowest, "notes": result.notes}

"""How long a sweep will take, before running it: the advisor's per-partition prediction (splitbed.latency:
compute timed here by splitbed.measure, real data-unit sizes, the link model of splitbed.linkmodel) for every
point, times its inferences, plus the orchestration costs measured on the main job. An estimate, not a measurement: it ignores loss and retransmissions (a lower
bound on lossy profiles such as cell-edge) and takes each transfer on a trace-driven link at its median time over
the trace's start phases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from splitbed.sweep.hostspeed import BURST_COST_MS, predicted_bursts
from splitbed.sweep.hostspeed import COST_PER_INFERENCE_MS as HOST_SPEED_COST_MS
from splitbed.sweep.plan import SINGLE_WORKLOAD, Point, SweepSpec, link_profile, points

# Orchestration costs beyond the inferences' own end-to-end latency, fitted to two real sweeps on this machine
# (docs/SWEEP.md "Wall time"): the main job (VGG16, 6 points x 11 inferences: 8.4 s beyond testbed start and the
# records' e2e sum) and the 5g-split-ai slice of --full (VGG16 + ResNet50, 100 points x 4 inferences: 205 s).
# Per point: building the partition's head and tail on both nodes. Per inference: job round trip, record, fsync.
OVERHEAD_PER_POINT_S = 2.0
OVERHEAD_PER_INFERENCE_MS = 20.0
# Testbed start (topology, both nodes, one warm-up per model), per profile: measured 32 s (VGG16) and 25 s (both).
TESTBED_START_S = 30.0
# What Dask adds on top of the run loop (docs/DISTRIBUTED.md "Overhead", scripts/measure_dask_overhead.py on this
# machine with a LocalCluster): per point (submit, schedule on a testbed worker, the JSON result back, the client's
# checks) 0.011 s measured, taken as 0.02 s; per sweep (the workers' check before, the testbeds' release after)
# 2.5 s measured.
DASK_OVERHEAD_PER_POINT_S = 0.02
DASK_OVERHEAD_PER_SWEEP_S = 2.5


@dataclass
class Estimate:
    points: int
    inferences: int
    total_s: float
    by_profile_s: dict[str, float] = field(default_factory=dict)
    slowest: list[tuple[float, str]] = field(default_factory=list)  # (seconds, point key), longest first
    notes: list[str] = field(default_factory=list)
    workers: int = 1
    machine_s: float = 0.0  # the sum of every worker's busy time (= total_s on one machine without Dask)


def estimate(spec: SweepSpec, *, repeats: int = 3, on_model: Callable[[str], None] | None = None,
             timings: dict[str, dict[tuple[str, str], Any]] | None = None, workers: int = 1,
             distributed: bool = False) -> Estimate:
    """Predict the wall time of `spec` on this machine, or on `workers` testbed workers of a Dask cluster
    (`distributed`, or `workers` > 1). Each model's partitions are timed first (minutes), unless `timings`
    (model -> {(encoding, compression): latency.ModelTiming}) are given."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    from splitbed.devices import load as load_device
    from splitbed.latency import predict
    from splitbed.linkmodel import LinkModel
    from splitbed.measure import measure_carriages

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
        per_frame_s = (e2e + OVERHEAD_PER_INFERENCE_MS) / 1000
        seconds = OVERHEAD_PER_POINT_S + spec.warmup * per_frame_s + paced_s(point, spec.repetitions, per_frame_s)
        if spec.host_speed_probe and point.workload == SINGLE_WORKLOAD:  # the reference before each measured one
            seconds += spec.repetitions * HOST_SPEED_COST_MS / 1000
        elif spec.host_speed_probe:  # paced: bursts before and after a stream that leaves no room between frames
            from splitbed.workload import parse

            interval = parse(point.workload).deadline_s
            if interval is not None:
                seconds += predicted_bursts(interval, per_frame_s) * BURST_COST_MS / 1000
        costs.append((seconds, point.key))
        result.by_profile_s[point.profile] = result.by_profile_s.get(point.profile, 0.0) + seconds
    for profile in result.by_profile_s:
        result.by_profile_s[profile] += TESTBED_START_S
    result.machine_s = result.total_s = sum(result.by_profile_s.values())
    result.slowest = sorted(costs, reverse=True)[:5]
    result.notes = ["estimate from the advisor's model (docs/SWEEP.md): no loss or retransmissions, traces at "
                    "the median start phase; compute timed now on this machine"]
    if spec.host_speed_probe and any(p.workload == SINGLE_WORKLOAD for p in matrix):
        result.notes.append(f"the host-speed reference: {HOST_SPEED_COST_MS:g} ms before each measured inference of "
                            "a back-to-back point (--no-host-speed-probe: none)")
    if spec.host_speed_probe and any(p.workload != SINGLE_WORKLOAD for p in matrix):
        result.notes.append(f"the host-speed reference under a paced workload: in the idle time between frames, "
                            f"or {BURST_COST_MS:g} ms before and after a stream that leaves none")
    if any(p.workload != SINGLE_WORKLOAD for p in matrix):
        result.notes.append("paced workloads: each point's frames at their capture times, each run frame taking "
                            "the predicted e2e plus orchestration, dropped frames none (splitbed.workload)")
    if distributed or workers > 1:
        result.workers = workers
        result.total_s, result.machine_s = deal(costs, ["|".join(p.bed) for p in matrix], workers)
        result.notes.append(f"on {workers} testbed worker(s), each as fast as this machine: points dealt in order to "
                            f"the worker free first, a testbed start per profile per worker, "
                            f"Dask's {DASK_OVERHEAD_PER_POINT_S:g} s per point and {DASK_OVERHEAD_PER_SWEEP_S:g} s per "
                            "sweep (docs/DISTRIBUTED.md)")
    return result


def paced_s(point: Point, repetitions: int, per_frame_s: float) -> float:
    """Seconds from a point's first measured frame to its last result: back to back, `repetitions` frames; under a
    paced workload the frames wait for their capture times (R frames at F frames/s take at least (R - 1) / F s
    before the last one starts), with the frames the overload policy drops taking no time (splitbed.workload)."""
    from splitbed.sweep.pacing import stream_seed
    from splitbed.workload import parse, simulate

    count = point.wanted(repetitions)
    workload = parse(point.workload)
    if not workload.paced:
        return count * per_frame_s
    arrivals = workload.arrivals(count, stream_seed(point.key, 0))
    fates = simulate(workload, arrivals, [per_frame_s] * count)
    return max((f.end for f in fates if f.end is not None), default=0.0)


def deal(costs: list[tuple[float, str]], profiles: list[str], workers: int) -> tuple[float, float]:
    """(wall time, summed busy time) of points of `costs` (seconds, key) in order on `workers` workers: each
    point goes to the worker free first; a worker pays TESTBED_START_S when its profile changes; the sweep pays
    DASK_OVERHEAD_PER_SWEEP_S once."""
    free = [0.0] * workers
    last: list[str | None] = [None] * workers
    for (seconds, _), profile in zip(costs, profiles, strict=True):
        index = min(range(workers), key=lambda w: free[w])
        free[index] += seconds + DASK_OVERHEAD_PER_POINT_S + (TESTBED_START_S if last[index] != profile else 0.0)
        last[index] = profile
    return max(free) + DASK_OVERHEAD_PER_SWEEP_S, sum(free) + DASK_OVERHEAD_PER_SWEEP_S


def describe(result: Estimate) -> list[str]:
    """Human lines for the CLI."""
    lines = [f"{result.points} points, {result.inferences} inferences: estimated {_hms(result.total_s)}"
             + (f" on {result.workers} testbed worker(s) ({_hms(result.machine_s)} of machine time)"
                if result.workers > 1 or result.machine_s != result.total_s else "")]
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
            "by_profile_s": result.by_profile_s, "slowest": result.slowest, "notes": result.notes,
            "workers": result.workers, "machine_s": result.machine_s}

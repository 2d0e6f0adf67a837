"""Emulating a device's compute on this host: calibration, then stretching (device slower) or modelling (faster).

Calibration (once per model, when a node first loads it): the host's own full-model time and its per-call
overhead (an identity model called the same way), each the minimum of CALIBRATION_RUNS calls after a warm-up (CPU
steal and preemption only ever add time, so the minimum is the least disturbed run). When a partition's plan is
built, its sub-model (the head on a UE, the tail on an edge) and the full model are timed in alternation,
SHARE_ROUNDS rounds, by the process's CPU time (every thread, CLOCK_PROCESS_CPUTIME_ID): the work each call
did, which CPU steal and preemption by other processes do not inflate. The share is the median of the rounds'
ratios, without the per-call overhead (the identity model's CPU time) that the device does not share:

    share = median over rounds of (part_cpu - overhead_cpu) / (full_cpu - overhead_cpu), within [0, 1]
    device_ms = device full-model latency (profile) x share

On ONNX Runtime the share is taken by wall time instead (WALL_MIN_SHARE: the ratio of the fastest calls over
WALL_ROUNDS rounds): its thread pools spin after a call returns, so a call's process CPU time carries the previous
call's spin.

Why CPU time: on this shared 2-vCPU host, whose speed drifts by 3-5x within minutes, wall-clock shares were off
by up to 30 % even as medians of back-to-back rounds (the whole model as a "head" came out at 0.77 of itself),
where CPU-time ratios of the same rounds stayed within 3 % (0.997).

- Device slower than the host (device full-model latency >= the host's fastest full-model call seen at
  calibration or in any plan's rounds): mechanism `stretch`, measured
  time dilation. The sub-model runs at host speed, then the node waits until start + device_ms (sleep, then a
  short spin for the last SPIN_NS), so whatever follows (the send) happens when the device's would have. No CPU
  quota is used: a quota would stretch every thread of the process, including the network I/O, and its period
  quantises short heads. The wait can only end late, never early: late when the host's own compute this time
  already took longer than device_ms (steal, a loaded host), or when the wake-up itself came late; the record
  says which (`late_cause`) and by how much, rather than failing.
- Device faster than the host: mechanism `model`. A node cannot be sped up: the sub-model runs at host speed,
  the record keeps that measured time and adds device_ms as a modelled figure.
- `host`: mechanism `none`, nothing is timed or changed.

The share is the host's, not the device's: a phone's caches, vector units or NPU may weigh the layers
differently (docs/DEVICES.md, "Limits").
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from splitbed.devices.errors import DeviceError
from splitbed.devices.profile import DeviceProfile

T = TypeVar("T")

NONE, STRETCH, MODEL = "none", "stretch", "model"
MECHANISMS = (NONE, STRETCH, MODEL)
CALIBRATION_RUNS = 5
SHARE_ROUNDS = 7             # alternating (sub-model, full model) rounds per partition
SPIN_NS = 1_500_000          # the last 1.5 ms of a stretch are waited by spinning: sleep wakes up too coarsely
ON_TIME_TOLERANCE = 0.02     # a stretch ending within 2 % (or ON_TIME_FLOOR_MS) of its target is on time
ON_TIME_FLOOR_MS = 0.05
WALL_ROUNDS = 15             # rounds of a wall-time share: its minima need more rounds than a CPU-time median
CPU_CLOCK, WALL_CLOCK = "cpu", "wall"
CPU_SHARE = (f"process CPU time: median over {SHARE_ROUNDS} alternating rounds of (sub-model - call overhead) / "
             "(full model - call overhead)")
WALL_MIN_SHARE = (f"wall time: (fastest sub-model call - call overhead) / (fastest full-model call - call overhead) "
                  f"over {WALL_ROUNDS} alternating rounds; for ONNX Runtime, whose thread pools spin after a call and "
                  "so charge one call's CPU time to the next")
SHARE_METHODS = {CPU_CLOCK: CPU_SHARE, WALL_CLOCK: WALL_MIN_SHARE}
CALIBRATION_METHOD = (f"minimum of {CALIBRATION_RUNS} predict_on_batch calls (batch 1) after one warm-up call, "
                      "on this host, when the node first loaded the model; the call overhead likewise (wall and "
                      "process CPU time), with an identity model of the same input")
STRETCH_METHOD = ("measured time dilation: the sub-model runs at host speed, then the node waits (sleep, then "
                  "spin) until start + device latency x the partition's share of the host's full-model time; "
                  "no CPU quota")
MODEL_METHOD = ("modelled: the device is faster than this host, which cannot be sped up; the sub-model ran at host "
                "speed (measured) and the device's time is device latency x the partition's share of the host's "
                "full-model time")
NONE_METHOD = "no emulation: the node computes at this host's speed"


def time_calls(call: Callable[[], Any], runs: int = CALIBRATION_RUNS, warmup: int = 1) -> tuple[float, list[float]]:
    """(minimum ms, every sample ms) of `runs` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(runs):
        start = time.monotonic_ns()
        call()
        samples.append((time.monotonic_ns() - start) / 1e6)
    return min(samples), samples


def cpu_call(call: Callable[[], Any]) -> tuple[float, float]:
    """(wall ms, process CPU ms) of one call."""
    wall, cpu = time.monotonic_ns(), time.process_time_ns()
    call()
    return (time.monotonic_ns() - wall) / 1e6, (time.process_time_ns() - cpu) / 1e6


@dataclass(frozen=True)
class Share:
    """A sub-model's share of its model's host time (measure_share; clamped to [0, 1])."""

    share: float
    raw: float
    rounds: tuple[float, ...]
    part_ms: float   # wall, median of the rounds
    full_ms: float
    full_min_ms: float  # wall, the fastest full-model call of the rounds


def call_overhead_cpu_ms(call: Callable[[], Any]) -> float:
    """The process CPU time of one call that does nothing but the call (an identity model): minimum of runs."""
    call()
    return min(cpu_call(call)[1] for _ in range(CALIBRATION_RUNS))


def measure_share(part_call: Callable[[], Any], full_call: Callable[[], Any], overhead_cpu_ms: float, *,
                  clock: str = CPU_CLOCK, overhead_ms: float = 0.0) -> Share:
    """The share of `part_call` in `full_call`, from back-to-back rounds after one warm-up of each: by CPU time
    (SHARE_ROUNDS rounds, median of the ratios), or by wall time (WALL_ROUNDS rounds, ratio of the fastest calls,
    for a runtime whose CPU time is not the call's own: see WALL_MIN_SHARE)."""
    part_call()
    full_call()
    parts, fulls, part_cpus, full_cpus = [], [], [], []
    for _ in range(SHARE_ROUNDS if clock == CPU_CLOCK else WALL_ROUNDS):
        part, part_cpu = cpu_call(part_call)
        full, full_cpu = cpu_call(full_call)
        parts.append(part)
        fulls.append(full)
        part_cpus.append(part_cpu)
        full_cpus.append(full_cpu)
    if clock == CPU_CLOCK:
        ratios = [max(p - overhead_cpu_ms, 0.0) / (f - overhead_cpu_ms) if f > overhead_cpu_ms else 1.0
                  for p, f in zip(part_cpus, full_cpus, strict=True)]
        raw = statistics.median(ratios)
    else:
        ratios = [max(p - overhead_ms, 0.0) / (f - overhead_ms) if f > overhead_ms else 1.0
                  for p, f in zip(parts, fulls, strict=True)]
        fastest = min(fulls) - overhead_ms
        raw = max(min(parts) - overhead_ms, 0.0) / fastest if fastest > 0 else 1.0
    return Share(min(max(raw, 0.0), 1.0), raw, tuple(ratios), statistics.median(parts), statistics.median(fulls),
                 min(fulls))


@dataclass(frozen=True)
class Calibration:
    """The host's own full-model time and per-call overhead for one model, at node start."""

    model: str
    host_full_ms: float
    samples_ms: tuple[float, ...]
    overhead_ms: float         # wall
    overhead_cpu_ms: float     # process CPU time
    measured_at_utc: str

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "host_full_model_ms": self.host_full_ms,
                "samples_ms": [round(s, 3) for s in self.samples_ms], "call_overhead_ms": self.overhead_ms,
                "call_overhead_cpu_ms": self.overhead_cpu_ms, "method": CALIBRATION_METHOD,
                "measured_at_utc": self.measured_at_utc}


@dataclass(frozen=True)
class Plan:
    """What one partition's sub-model becomes on the device."""

    mechanism: str
    model: str
    device_full_ms: float | None = None
    calibration: Calibration | None = None
    host_part_ms: float | None = None       # the sub-model's median over the rounds alternating with the full model
    host_full_ms: float | None = None       # the full model's median over the same rounds
    share: float | None = None
    device_ms: float | None = None   # the stretch target, or the modelled time
    raw_share: float | None = None   # the share before clamping to [0, 1]
    round_shares: tuple[float, ...] = ()  # each round's ratio
    host_best_full_ms: float | None = None  # the fastest full-model call seen on this node: decides the mechanism
    share_method: str | None = None  # how the share was measured (SHARE_METHODS)


@dataclass(frozen=True)
class Outcome:
    """One run of a sub-model under its plan. Times in ms from the call's start."""

    measured_ms: float                 # the host's own compute
    emulated_ms: float | None = None   # stretch: until the wait ended
    late_ms: float | None = None       # stretch: emulated - target (>= 0)
    late_cause: str | None = None      # stretch: None on time, host_compute_slower_than_device, wakeup_late

    @property
    def on_time(self) -> bool:
        return self.late_cause is None


class DeviceEmulator:
    """One node's device: calibrates models, plans partitions, runs sub-models under their plan."""

    def __init__(self, profile: DeviceProfile, side: str) -> None:
        if side not in ("ue", "edge"):
            raise ValueError(f"side must be 'ue' or 'edge', not {side!r}")
        profile.check_role(side)
        self.profile = profile
        self.side = side
        self.calibrations: dict[str, Calibration] = {}
        self.best_full_ms: dict[str, float] = {}  # fastest full-model call seen per model (calibration, plans)

    @property
    def active(self) -> bool:
        """Whether this node times and emulates anything (False for `host`)."""
        return not self.profile.is_host

    def check_model(self, model: str) -> None:
        """Raise a DeviceError now (at load) if the device has no latency for `model`."""
        if self.active:
            self.profile.full_model_ms(model)

    def calibrate(self, model: str, full_call: Callable[[], Any],
                  overhead_call: Callable[[], Any] | None = None) -> Calibration | None:
        """Time the host's full model (and the per-call overhead) once per model (no-op for `host`)."""
        if not self.active:
            return None
        if model not in self.calibrations:
            overhead = overhead_cpu = 0.0
            if overhead_call is not None:
                overhead_cpu = call_overhead_cpu_ms(overhead_call)
                overhead = time_calls(overhead_call, warmup=0)[0]
            best, samples = time_calls(full_call)
            self.calibrations[model] = Calibration(model, best, tuple(samples), min(overhead, best), overhead_cpu,
                                                   datetime.now(timezone.utc).isoformat())
            self.best_full_ms[model] = best
        return self.calibrations[model]

    def plan(self, model: str, part_call: Callable[[], Any], full_call: Callable[[], Any],
             clock: str = CPU_CLOCK) -> Plan:
        """The plan for a partition whose sub-model `part_call` runs: it and the full model are timed here in
        alternation (calibrate() the model first). The mechanism compares the device with the fastest full-model
        call this node has seen (at calibration and in every plan's rounds): a host that has shown it can compute
        faster than the device is stretched even if a burst of steal slowed its calibration, and its records say
        when a stretch still ended late."""
        if not self.active:
            return Plan(NONE, model)
        calibration = self.calibrations.get(model)
        if calibration is None:
            raise DeviceError(f"model {model!r} was not calibrated on this node before planning a partition")
        device_full = self.profile.full_model_ms(model)
        share = measure_share(part_call, full_call, calibration.overhead_cpu_ms, clock=clock,
                              overhead_ms=calibration.overhead_ms)
        best = self.best_full_ms[model] = min(self.best_full_ms.get(model, share.full_min_ms), share.full_min_ms)
        mechanism = STRETCH if device_full >= best else MODEL
        return Plan(mechanism, model, device_full, calibration, share.part_ms, share.full_ms, share.share,
                    device_full * share.share, share.raw, share.rounds, best, SHARE_METHODS[clock])

    @staticmethod
    def run(plan: Plan, call: Callable[[], T]) -> tuple[T, Outcome]:
        """Run `call` under `plan`: stretched to the device's time, or measured (and modelled by the plan)."""
        start = time.monotonic_ns()
        result = call()
        done = time.monotonic_ns()
        measured = (done - start) / 1e6
        if plan.mechanism != STRETCH or plan.device_ms is None:
            return result, Outcome(measured)
        target_ns = start + int(plan.device_ms * 1e6)
        end = wait_until(target_ns)
        late = max(end - target_ns, 0) / 1e6
        tolerance = max(ON_TIME_FLOOR_MS, ON_TIME_TOLERANCE * plan.device_ms)
        cause = None
        if measured > plan.device_ms + tolerance:
            cause = "host_compute_slower_than_device"
        elif late > tolerance:
            cause = "wakeup_late"
        return result, Outcome(measured, (end - start) / 1e6, late, cause)

    def describe(self) -> dict[str, Any]:
        """The device as records and the OFFER name it (without per-partition figures)."""
        p = self.profile
        return {"name": p.name, "side": self.side, "role": p.role, "description": p.description,
                "source": p.source, "precision": p.precision, "path": p.path,
                "calibrations": {m: c.to_dict() for m, c in self.calibrations.items()}}


def wait_until(target_ns: int) -> int:
    """Block until CLOCK_MONOTONIC reaches `target_ns` (sleep, then spin the last SPIN_NS); the time it ended."""
    while True:
        now = time.monotonic_ns()
        left = target_ns - now
        if left <= 0:
            return now
        if left > SPIN_NS:
            time.sleep((left - SPIN_NS) / 1e9)

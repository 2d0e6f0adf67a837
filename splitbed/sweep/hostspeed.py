"""The host's speed during a point (docs/SWEEP.md, "Host speed"): the reference workload of splitbed.host.speed run
on the edge's and on the UE's CPUs (the CPU plan, splitbed.runtime.cpus) between the point's inferences, never
during one, and its spread per point.

Back to back (`single`), the reference runs once per role (one role after the other) right before each measured inference (after the
previous one's record came back, so no inference runs meanwhile); under a paced workload it runs only in the idle
time before a frame's arrival, when that time is long enough for it with a margin (`fits`), so the pacing is not
disturbed: a point whose frames arrive while the UE is still busy gets no run. Each run goes into the following
inference's record (`host_speed`, docs/METRICS.md); the summary takes the CV and median of the reference's CPU
time over a point's records, per role, and the outlier lines say when the host's speed varied as much as e2e.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from splitbed.host.speed import REFERENCE, HostSpeedError, HostSpeedProbe
from splitbed.stats import coefficient_of_variation_pct

log = logging.getLogger(__name__)

HOST_SPEED_VERSION = "1.0"
ROLES = ("edge", "ue")
# a run in a paced point's idle time needs this many times the last run's wall time, plus the margin, left
FIT_FACTOR = 1.5
FIT_MARGIN_S = 0.03
FIRST_GUESS_S = 0.1
# what the runs add to a back-to-back inference: two runs of ~30 ms, one after the other, and their hand-over
# (measured here, 2026-12-06: 29-33 ms per run at the median; docs/SWEEP.md, "Host speed"); paced points use idle time
COST_PER_INFERENCE_MS = 65.0
# the CV of e2e per point a quiet host should reach (the sweep's repeatability target, docs/SWEEP.md)
CV_TARGET_PCT = 3.0
# the outlier lines name the host's speed when its CV is at least this share of e2e's
COMPARABLE_SHARE = 0.5
# an outlier's run counts as slower only beyond this (and beyond the point's own scatter of runs): on a quiet host
# single 30 ms runs scatter by a few percent (docs/SWEEP.md, "Host speed")
MIN_SLOWDOWN = 0.10


class SweepSpeedProbe:
    """The reference's children for one testbed (started with it, closed with it); `block()` runs it once per role
    and gives the record's `host_speed` block."""

    def __init__(self, cpus: Mapping[str, Iterable[int]]) -> None:
        self.cpus = {role: tuple(cpus.get(role, ())) for role in ROLES}
        self.probe = HostSpeedProbe(self.cpus)
        self.last_wall_s = FIRST_GUESS_S

    @classmethod
    def for_plan(cls, plan_text: str) -> SweepSpeedProbe | None:
        """The probe on the plan's UE and edge CPUs; None (with a warning) when its children cannot start."""
        from splitbed.runtime.cpus import plan_from

        plan = plan_from(plan_text)
        try:
            return cls({"edge": plan.edge, "ue": plan.ue})
        except (HostSpeedError, OSError) as exc:
            log.warning("host-speed reference not started (%s); records of this testbed have no host_speed", exc)
            return None

    def fits(self, idle_s: float) -> bool:
        """Whether a run fits in `idle_s` seconds before the next frame arrives."""
        return idle_s >= FIT_FACTOR * self.last_wall_s + FIT_MARGIN_S

    def block(self, when: str) -> dict[str, Any] | None:
        """One run per role: the record's `host_speed` block; None when the children failed (then closed)."""
        begin = time.monotonic()
        try:
            samples = self.probe.sample(1)
        except HostSpeedError as exc:
            log.warning("host-speed reference failed (%s); no more host_speed in this testbed's records", exc)
            self.close()
            return None
        self.last_wall_s = time.monotonic() - begin
        block: dict[str, Any] = {"version": HOST_SPEED_VERSION, "source": "measured", "reference": REFERENCE,
                                 "when": when}
        for role in ROLES:
            [sample] = samples[role]
            block[role] = {**sample.to_dict(), "asked_cpus": list(self.cpus[role])}
        return block

    @property
    def alive(self) -> bool:
        return bool(self.probe.children)

    def close(self) -> None:
        self.probe.close()


def reference_cpu_ms(record: Mapping[str, Any], role: str) -> float | None:
    block = record.get("host_speed")
    side = block.get(role) if isinstance(block, Mapping) else None
    value = side.get("cpu_ms") if isinstance(side, Mapping) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class HostSpeed:
    """A point's host speed per role: the reference's runs (n), the CV and median of their CPU time."""

    n: int
    cv_pct: dict[str, float | None]
    median_ms: dict[str, float | None]

    def note(self, e2e_cv_pct: float | None, target_pct: float) -> str | None:
        """The sentence for a point whose e2e CV is above the target and whose host speed varied comparably."""
        if e2e_cv_pct is None or e2e_cv_pct < target_pct:
            return None
        role = max(ROLES, key=lambda r: self.cv_pct.get(r) or 0.0)
        value = self.cv_pct.get(role)
        if value is None or value < COMPARABLE_SHARE * e2e_cv_pct:
            return None
        return (f"host speed varied {value:.1f} % (reference workload on the {_who(role)} CPU, {self.n} runs "
                f"between the inferences) against e2e CV {e2e_cv_pct:.1f} %")


def _who(role: str) -> str:
    return "edge's" if role == "edge" else "UE's"


def host_speed(records: Iterable[Mapping[str, Any]]) -> HostSpeed:
    """The host speed over a point's good records (those that carry `host_speed`)."""
    items = list(records)
    cv: dict[str, float | None] = {}
    median: dict[str, float | None] = {}
    n = 0
    for role in ROLES:
        values = [v for v in (reference_cpu_ms(r, role) for r in items) if v is not None]
        n = max(n, len(values))
        cv[role] = coefficient_of_variation_pct(values)
        median[role] = statistics.median(values) if values else None
    return HostSpeed(n, cv, median)


def usual_runs(records: Iterable[Mapping[str, Any]]) -> dict[str, tuple[float, float]]:
    """Per role, the point's usual reference CPU time (median) and the slowdown beyond which a run stands out: at
    least MIN_SLOWDOWN and 3 scaled MADs of the point's runs (the reference's own scatter on a quiet host)."""
    items = list(records)
    usual: dict[str, tuple[float, float]] = {}
    for role in ROLES:
        values = [v for v in (reference_cpu_ms(r, role) for r in items) if v is not None]
        if len(values) < 3:
            continue
        median = statistics.median(values)
        mad = statistics.median(abs(v - median) for v in values)
        if median > 0:
            usual[role] = (median, max(MIN_SLOWDOWN, 3 * 1.4826 * mad / median))
    return usual


def slower_references(record: Mapping[str, Any], usual: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Per role whose reference run before this record stood out (beyond `usual_runs`' bound), by how much (a
    fraction: 0.2 = 20 % more CPU time than the point's median); empty when none stood out."""
    found: dict[str, float] = {}
    for role, (base, bound) in usual.items():
        value = reference_cpu_ms(record, role)
        if value is None:
            continue
        slower = value / base - 1.0
        if slower > bound:
            found[role] = slower
    return found


def host_compute_ms(record: Mapping[str, Any], role: str) -> float | None:
    """The role's own compute on the host's CPU in this inference, what a slower host stretches: the edge's tail
    call (`remote_inference_ms`) and the UE's head call before any device stretch (`local_inference_measured_ms`;
    `local_inference_ms` holds the stretched, device's time when the UE emulates a phone). Where a device block
    says what the host measured (`measured_ms`), that is it."""
    device = record.get("edge_device" if role == "edge" else "ue_device")
    measured = device.get("measured_ms") if isinstance(device, Mapping) else None
    keys = ("remote_inference_ms",) if role == "edge" else ("local_inference_measured_ms", "local_inference_ms")
    for value in (measured, *(record.get(k) for k in keys)):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None

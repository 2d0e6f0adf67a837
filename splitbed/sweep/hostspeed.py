"""The host's speed during a point (docs/SWEEP.md, "Host speed"): the reference workload of splitbed.host.speed run
on the edge's and on the UE's CPUs (the CPU plan, splitbed.runtime.cpus) between the point's inferences, never
during one, and its spread per point.

Back to back (`single`), the reference runs once per role (one role after the other) right before each measured
inference (after the previous one's record came back, so no inference runs meanwhile); under a paced workload it
runs in the idle time before a frame's arrival, when that time is long enough for it with a margin (`fits`), so
the pacing is not disturbed. Each such run goes into the following inference's record (`host_speed`,
docs/METRICS.md). A paced point whose frames arrive while the UE is still busy gets few such runs or none, so its
stream gets a burst of BURST_RUNS runs per role right after it ends when fewer than MIN_BETWEEN frames had a run
(`needs_burst_after`), and one right before it starts when its warm-ups leave no room between frames
(`needs_burst_before`): every paced point gets figures, at most 2 x BURST_RUNS runs per role per stream, none
while a frame is due. A burst is a line of its own in the results (`record_type` = `host_speed`, `burst_record`),
since it precedes no single inference: it counts in the point's figures (`host_speed`, with where each run came
from) and never as the cause of one record's slowness. The summary takes the CV and median of the reference's CPU
time over a point's runs, per role, and the outlier lines say when the host's speed varied as much as e2e.
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

HOST_SPEED_VERSION = "1.1"  # 1.1: the bursts before and after a paced stream (`burst_record`)
BURST_RECORD = "host_speed"  # the results line of a burst: its record_type
ROLES = ("edge", "ue")
# a run in a paced point's idle time needs this many times the last run's wall time, plus the margin, left
FIT_FACTOR = 1.5
FIT_MARGIN_S = 0.03
FIRST_GUESS_S = 0.1
# what the runs add to a back-to-back inference: two runs of ~30 ms, one after the other, and their hand-over
# (measured here, 2026-12-06: 29-33 ms per run at the median; docs/SWEEP.md, "Host speed"); paced points use idle time
COST_PER_INFERENCE_MS = 65.0
# a burst: this many runs per role, back to back (about 0.2 s for both roles here); a paced stream with fewer runs
# between its frames than MIN_BETWEEN gets one after it (MIN_BETWEEN: what `usual_runs` needs for a point's spread)
BURST_RUNS = 3
MIN_BETWEEN = 3
BURST_COST_MS = BURST_RUNS * COST_PER_INFERENCE_MS  # one burst: BURST_RUNS pairs of runs
BEFORE_STREAM = "a burst right before the paced stream's first frame was due, after the warm-ups (none ran meanwhile)"
AFTER_STREAM = "a burst right after the paced stream's last frame was done (none ran meanwhile)"
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
        samples = self._sample(1)
        if samples is None:
            return None
        block = self._head(when)
        for role in ROLES:
            [sample] = samples[role]
            block[role] = {**sample.to_dict(), "asked_cpus": list(self.cpus[role])}
        return block

    def burst(self, when: str, runs: int = BURST_RUNS) -> dict[str, Any] | None:
        """`runs` runs per role back to back (the edge's, then the UE's): a burst record's `host_speed` block, each
        role's runs under `runs`; None when the children failed (then closed)."""
        samples = self._sample(runs)
        if samples is None:
            return None
        block = self._head(when)
        for role in ROLES:
            block[role] = {"asked_cpus": list(self.cpus[role]), "runs": [s.to_dict() for s in samples[role]]}
        return block

    def _head(self, when: str) -> dict[str, Any]:
        return {"version": HOST_SPEED_VERSION, "source": "measured", "reference": REFERENCE, "when": when}

    def _sample(self, runs: int) -> dict[str, list[Any]] | None:
        begin = time.monotonic()
        try:
            samples = self.probe.sample(runs)
        except HostSpeedError as exc:
            log.warning("host-speed reference failed (%s); no more host_speed in this testbed's records", exc)
            self.close()
            return None
        self.last_wall_s = (time.monotonic() - begin) / runs
        return samples

    def needs_burst_before(self, interval_s: float, service_s: float | None) -> bool:
        """Whether a paced stream should get a burst before it: the frames' mean interval leaves no room for a run
        after an inference as long as the last warm-up (`service_s`; None, no warm-up: no room assumed)."""
        return service_s is None or not self.fits(interval_s - service_s)

    @property
    def alive(self) -> bool:
        return bool(self.probe.children)

    def close(self) -> None:
        self.probe.close()


class StreamBursts:
    """The bursts around one paced point's streams (splitbed.sweep.pacing.AroundStream): each written to `store`
    (the results file itself, not a capture's held records: a burst is no inference) as a `burst_record`.
    `interval_s`: the workload's mean time between frames; `service_s`: the last warm-up's job (None: none ran);
    `host`: the machine the warm-ups named, until a stream's records name one."""

    def __init__(self, probe: SweepSpeedProbe, store: Any, point_key: str, interval_s: float,
                 service_s: float | None, host: Any) -> None:
        self.probe, self.store, self.point_key = probe, store, point_key
        self.interval_s, self.service_s, self.host = interval_s, service_s, host

    def before(self, stream: int) -> None:
        if self.probe.alive and self.probe.needs_burst_before(self.interval_s, self.service_s):
            self._write(stream, BEFORE_STREAM)

    def after(self, stream: int, runs_between: int, host: dict[str, Any] | None) -> None:
        self.host = host or self.host
        if self.probe.alive and needs_burst_after(runs_between):
            self._write(stream, AFTER_STREAM)

    def _write(self, stream: int, when: str) -> None:
        block = self.probe.burst(when)
        if block is not None:
            self.store.append(burst_record(self.point_key, stream, block, self.host))


def predicted_bursts(interval_s: float, service_s: float) -> int:
    """Bursts a paced stream is expected to get (`--estimate`): both when a frame's service leaves no room for a
    pair of runs (at COST_PER_INFERENCE_MS) before the next is due, else none."""
    return 0 if interval_s - service_s >= FIT_FACTOR * COST_PER_INFERENCE_MS / 1000 + FIT_MARGIN_S else 2


def needs_burst_after(runs_between: int) -> bool:
    """Whether a paced stream whose frames got `runs_between` runs needs a burst after it."""
    return runs_between < MIN_BETWEEN


def burst_record(point_key: str, stream: int, block: Mapping[str, Any], host: Any) -> dict[str, Any]:
    """The results line of a burst: which point and stream it belongs to, the machine (`host`, as the point's
    records have it, so the summary keeps it with that machine's records) and the runs."""
    from datetime import datetime, timezone

    from splitbed.nodes.metrics import SCHEMA_VERSION

    return {"schema_version": SCHEMA_VERSION, "record_type": BURST_RECORD, "tags": {"point": point_key,
                                                                                   "stream": stream},
            "started_at_utc": datetime.now(timezone.utc).isoformat(), "host": host, "host_speed": dict(block)}


def is_burst(record: Mapping[str, Any]) -> bool:
    return record.get("record_type") == BURST_RECORD


def burst_cpu_ms(record: Mapping[str, Any], role: str) -> list[float]:
    """A burst record's CPU times of one role's runs."""
    block = record.get("host_speed")
    side = block.get(role) if isinstance(block, Mapping) else None
    runs = side.get("runs") if isinstance(side, Mapping) else None
    values = [run.get("cpu_ms") for run in runs if isinstance(run, Mapping)] if isinstance(runs, list) else []
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def burst_place(record: Mapping[str, Any]) -> str:
    """`before` or `after` the stream ('' where the record does not say)."""
    block = record.get("host_speed")
    when = block.get("when") if isinstance(block, Mapping) else None
    return "before" if when == BEFORE_STREAM else "after" if when == AFTER_STREAM else ""


def reference_cpu_ms(record: Mapping[str, Any], role: str) -> float | None:
    block = record.get("host_speed")
    side = block.get(role) if isinstance(block, Mapping) else None
    value = side.get("cpu_ms") if isinstance(side, Mapping) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class HostSpeed:
    """A point's host speed per role: the reference's runs (n: between the inferences, each in the record after it,
    plus those of bursts before or after a paced stream), the CV and median of their CPU time."""

    n: int
    cv_pct: dict[str, float | None]
    median_ms: dict[str, float | None]
    between: int = 0
    burst_runs: int = 0
    bursts: tuple[str, ...] = ()  # where the bursts ran: `before`, `after` (the stream), in order of appearance

    @property
    def source(self) -> str:
        """Where the runs came from and how many (per role): `9 between the inferences`, `6 in bursts before and
        after the stream`, or both."""
        parts = []
        if self.between:
            parts.append(f"{self.between} between the inferences")
        if self.burst_runs:
            places = [p for p in ("before", "after") if p in self.bursts]
            where = " and ".join(places) if places else "around"
            plural = "s" if len(self.bursts) > 1 else ""
            parts.append(f"{self.burst_runs} in burst{plural} {where} the stream")
        return "; ".join(parts) or "none"

    def note(self, e2e_cv_pct: float | None, target_pct: float) -> str | None:
        """The sentence for a point whose e2e CV is above the target and whose host speed varied comparably."""
        if e2e_cv_pct is None or e2e_cv_pct < target_pct:
            return None
        role = max(ROLES, key=lambda r: self.cv_pct.get(r) or 0.0)
        value = self.cv_pct.get(role)
        if value is None or value < COMPARABLE_SHARE * e2e_cv_pct:
            return None
        return (f"host speed varied {value:.1f} % (reference workload on the {_who(role)} CPU, {self.n} runs: "
                f"{self.source}) against e2e CV {e2e_cv_pct:.1f} %")


def _who(role: str) -> str:
    return "edge's" if role == "edge" else "UE's"


def host_speed(records: Iterable[Mapping[str, Any]], bursts: Iterable[Mapping[str, Any]] = ()) -> HostSpeed:
    """The host speed over a point's good records (those that carry `host_speed`) and its burst records."""
    items, burst_items = list(records), list(bursts)
    cv: dict[str, float | None] = {}
    median: dict[str, float | None] = {}
    n = between = in_bursts = 0
    for role in ROLES:
        near = [v for v in (reference_cpu_ms(r, role) for r in items) if v is not None]
        around = [v for b in burst_items for v in burst_cpu_ms(b, role)]
        values = near + around
        n, between, in_bursts = max(n, len(values)), max(between, len(near)), max(in_bursts, len(around))
        cv[role] = coefficient_of_variation_pct(values)
        median[role] = statistics.median(values) if values else None
    places = tuple(dict.fromkeys(p for p in (burst_place(b) for b in burst_items if any(
        burst_cpu_ms(b, role) for role in ROLES)) if p))
    return HostSpeed(n, cv, median, between, in_bursts, places)


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

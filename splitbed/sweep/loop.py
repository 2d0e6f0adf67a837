"""The sweep's run loop for one link profile and pair of devices: one testbed for all of their points (the nodes
stay up across them), and what happens when a point cannot be measured.

- a point's job the local node refuses outright (`JobRefusedError`, e.g. an unreadable image): the point is left
  incomplete, the testbed stays, the next point runs;
- the testbed itself breaks (`TestbedError`: a failed start, a dead node, a timeout): it is closed and rebuilt
  once for that point; a second failure on the same point stops the sweep (`SweepError`), everything measured so
  far being on disk;
- an inference that fails (an error record) is kept, and the point tries again, at most `repetitions` extra times;
- a paced workload (`--workload periodic:FPS`, `poisson:RATE`) captures the frames at their arrival times and
  drops what its overload policy drops (splitbed.sweep.pacing); warm-ups still run back to back;
- the host-speed reference (splitbed.sweep.hostspeed) runs right before each back-to-back inference, in a paced
  point's idle time before a frame, and in bursts around a paced stream that left no room for it;
- warm-ups first (`warmup`, and more up to `warmup_max` until two in a row agree on the compute time within
  WARMUP_TOLERANCE); the measured records say how many ran and whether the compute settled;
- on a link with random loss or jitter each measured inference draws its own realisation, and on a trace-driven
  link the trace restarts where that repetition belongs (splitbed.sweep.realisations), applied as a live link
  update before it.

`ProfileRun` is I/O-free apart from the testbed it is given and the result store, so it is tested with a fake
testbed, without root (tests/unit/sweep/test_sweep_loop.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from netem.errors import NetemError
from netem.profile import LinkProfile
from splitbed.nodes.metrics import DROPPED_STATUS
from splitbed.sweep.hostspeed import StreamBursts, SweepSpeedProbe
from splitbed.sweep.pacing import run_paced
from splitbed.sweep.plan import SINGLE_WORKLOAD, WARMUP_TOLERANCE, Point, SweepSpec, engine_args, link_profile
from splitbed.sweep.realisations import link_for, varies
from splitbed.sweep.store import ResultStore
from splitbed.testbed import JobRefusedError, TestbedError
from splitbed.workload import parse as parse_workload

log = logging.getLogger(__name__)


BEFORE_BACK_TO_BACK = "right before this inference, after the previous one's record came back"
BEFORE_PACED = "in the idle time before this frame's arrival, after the previous frame's record came back"


class SweepError(RuntimeError):
    """The sweep had to stop; what was measured so far is in the results file."""


class Progress(Protocol):
    """What the sweep tells its caller (the CLI draws a progress bar from it)."""

    def begin(self, total: int, done_points: int, points: int) -> None: ...

    def phase(self, text: str) -> None: ...

    def advance(self, record: dict[str, Any]) -> None: ...


class SweepTestbed(Protocol):
    """What the sweep needs of a testbed (splitbed.testbed.Testbed is one)."""

    def start(self) -> Any: ...

    def close(self) -> None: ...

    def run(self, job: Mapping[str, Any]) -> list[dict[str, Any]]: ...

    def update_link(self, profile: LinkProfile) -> None: ...

    def link_info(self) -> dict[str, Any]: ...


class TestbedFactory(Protocol):
    """Makes the (not yet started) testbed for one profile; `splitbed.testbed.Testbed` by default."""

    def __call__(self, *, profile: str | LinkProfile, backend: str, models: list[str], weights: str, runtime: str, cpus: str,
                 ue_device: str, edge_device: str, **engine: Any) -> SweepTestbed:
        """`engine`: the nodes' options for a non-default inference runtime (sweep.plan.engine_args), if any."""
        ...


@dataclass
class SweepOutcome:
    """What one run did. `skipped_points` were complete before it started (resume)."""

    out_dir: Path
    points: list[Point]
    skipped_points: int = 0
    inferences: int = 0
    errors: int = 0
    dropped: int = 0  # frames a paced workload's overload policy dropped (splitbed.sweep.pacing)
    wall_s: float = 0.0
    testbed_starts: list[dict[str, Any]] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    killed_runs: list[str] = field(default_factory=list)  # earlier runs found `running` with their owner gone


class ProfileRun:
    """Measures one profile's points on one testbed (see the module docstring). Use `run(points)` once; the points
    share their UE and edge devices (the sweep batches them by `Point.bed`)."""

    def __init__(self, spec: SweepSpec, profile: str, store: ResultStore, progress: Progress, outcome: SweepOutcome,
                 factory: TestbedFactory) -> None:
        self.spec, self.profile, self.store, self.progress, self.outcome = spec, profile, store, progress, outcome
        self.factory = factory
        self.bed: SweepTestbed | None = None
        self.speed: SweepSpeedProbe | None = None  # the host-speed reference on the nodes' CPUs, with the testbed
        link = link_profile(profile)
        self.varying_link = link if varies(link) else None  # each inference gets its own draw / trace place

    def run(self, batch: list[Point]) -> None:
        models = list(dict.fromkeys(p.model for p in batch))
        beds = {p.bed for p in batch}
        if len(beds) > 1 or any(p.profile != self.profile for p in batch):
            raise ValueError(f"one ProfileRun measures points of one profile and pair of devices, got {sorted(beds)}")
        try:
            for point in batch:
                self._point_with_rebuild(point, models)
        finally:
            self._close_speed()
            if self.bed is not None:
                self.bed.close()
                self.bed = None

    def _close_speed(self) -> None:
        if self.speed is not None:
            self.speed.close()
            self.speed = None

    def _speed_block(self, when: str) -> dict[str, Any] | None:
        """One run of the host-speed reference per node role (no inference runs now), or None when off."""
        if self.speed is None or not self.speed.alive:
            return None
        return self.speed.block(when)

    def _point_with_rebuild(self, point: Point, models: list[str]) -> None:
        for attempt in (1, 2):
            try:
                if self.bed is None:
                    self.bed = self._start(models, point.ue_device, point.edge_device, point.testbed_options())

                self._run_point(point, self.bed)
                return
            except JobRefusedError as exc:  # this point's job cannot run; the testbed is fine
                log.warning("the local node refused point %s: %s", point.key, exc)
                self.progress.phase(f"point refused: {exc}")
                self.outcome.incomplete.append(point.key)
                return
            except TestbedError as exc:  # a failed start, a dead node, a timeout
                log.warning("testbed failed on %s: %s", point.key, exc)
                self._discard_bed()
                if attempt == 2:
                    raise SweepError(f"the testbed failed twice on point {point.key}; stopping. Results so far are "
                                     f"in {self.store.path}; run the same command to resume.\n{exc}") from exc
                self.progress.phase(f"testbed failed ({str(exc).splitlines()[0]}); rebuilding it")

    def _start(self, models: list[str], ue: str, edge: str, options: dict[str, Any] | None = None) -> SweepTestbed:
        cell = f"; a cell of {options['ues']} UEs" if options and options.get("ues") else ""
        self.progress.phase(f"starting the testbed on {self.profile} ({', '.join(models)}; UE {ue}, edge {edge}{cell})")

        begin = time.monotonic()
        spec = self.spec
        # a rate-swept profile (NAME@RATEmbit) is no file: the testbed gets the LinkProfile itself
        link = link_profile(self.profile) if "@" in self.profile else self.profile
        bed = self.factory(profile=link, backend=spec.backend, models=models, weights=spec.weights,
                           runtime=spec.runtime, cpus=spec.cpus, ue_device=ue, edge_device=edge,
                           **engine_args(spec.engine), **(options or {}))

        try:
            bed.start()
        except BaseException:
            self._close_quietly(bed)
            raise
        if spec.host_speed_probe:
            self._close_speed()
            self.speed = SweepSpeedProbe.for_plan(spec.cpus)
        self.outcome.testbed_starts.append({"profile": self.profile, "ue_device": ue, "edge_device": edge,
                                            "models": models, **(options or {}),

                                            "start_s": round(time.monotonic() - begin, 3),
                                            "backend": bed.link_info().get("backend")})
        return bed

    def _discard_bed(self) -> None:
        self._close_speed()
        if self.bed is not None:
            self._close_quietly(self.bed)
        self.bed = None

    @staticmethod
    def _close_quietly(bed: SweepTestbed) -> None:
        try:
            bed.close()
        except Exception:
            log.exception("closing a failed testbed")

    def _place_link(self, point: Point, bed: SweepTestbed, store: Any) -> dict[str, Any]:
        """Before each inference (and the warm-ups): its draw and, on a varying link, its realisation."""
        draw = store.completed(point.key) + store.errors[point.key]
        if self.varying_link is None:
            return {"draw": draw}
        repetition = store.completed(point.key)
        realisation = link_for(self.varying_link, point.key, draw, repetition, self.spec.repetitions)
        if realisation.profile is not None:
            try:
                bed.update_link(realisation.profile)
            except NetemError as exc:  # the profile ran before, so the link itself failed: rebuild the testbed
                raise TestbedError(f"the link could not change to draw {draw} (repetition {repetition}): "
                                   f"{exc}") from exc
        return realisation.tag

    def _run_point(self, point: Point, bed: SweepTestbed) -> None:
        """Capture the point on both sides (splitbed.sweep.capture) where the testbed has a topology and the store
        a directory, the records held until the captures are joined to them; else measure straight into the store."""
        spec, store, progress = self.spec, self.store, self.progress
        if point.wanted(spec.repetitions) - store.completed(point.key) <= 0:
            return
        progress.phase(f"{point.profile} {point.model} @ {point.partition} ({_carriage(point)}; UE {point.ue_device})")
        if spec.capture and getattr(bed, "topology", None) is not None and getattr(store, "directory", None):
            from splitbed.sweep.capture import CaptureOptions, PointCapture

            with PointCapture(bed, point.key, store, CaptureOptions(True, spec.max_pcap_mb)) as sink:
                self._measure_point(point, bed, sink)
                progress.phase(f"{point.profile} {point.model} @ {point.partition}: analysing the captures")
        else:
            self._measure_point(point, bed, store)

    def _measure_point(self, point: Point, bed: SweepTestbed, store: Any) -> None:
        """Warm-ups, then repetitions until the point has enough good ones; `store` has the result store's
        `append`, `completed` and `errors` (the store itself, or a PointCapture holding the point's records)."""
        spec, progress, outcome = self.spec, self.progress, self.outcome
        missing = point.wanted(spec.repetitions) - store.completed(point.key)
        realisation = self._place_link(point, bed, store)
        computes: list[float | None] = []
        settled: bool | None = None if spec.warmup else True
        warm_s: float | None = None  # the last warm-up's e2e: about what a paced frame will keep the UE busy
        warm_host: Any = None
        while len(computes) < (spec.warmup_max if spec.warmup else 0):
            tags = {"warmup": True, "warmup_index": len(computes), "draw": realisation["draw"],
                    "realisation": realisation}
            records = bed.run(point.job(tags=tags))
            warm_s = _service_s(records)
            warm_host = next((r["host"] for r in records if isinstance(r.get("host"), dict)), warm_host)
            for record in records:
                store.append(record)
                progress.advance(record)
            computes.append(compute_ms(records))
            if len(computes) >= spec.warmup:
                settled = compute_settled(computes)
                if settled:
                    break
        if spec.warmup and not settled and spec.warmup_max > spec.warmup:
            log.warning("%s: compute did not settle within %d warm-ups (%s ms)", point.key, len(computes),
                        ", ".join("-" if c is None else f"{c:.1f}" for c in computes))
        warm = {"warmups": len(computes), "warmup_settled": settled}
        if point.workload == SINGLE_WORKLOAD:  # back to back: each repetition starts when the last is written
            attempts = 0
            while store.completed(point.key) < point.wanted(spec.repetitions) and attempts < 2 * missing:
                attempts += 1
                realisation = self._place_link(point, bed, store)
                tags = {"rep": store.completed(point.key), "draw": realisation["draw"], "realisation": realisation,
                        **warm}
                speed = self._speed_block(BEFORE_BACK_TO_BACK)
                for record in bed.run(point.job(tags=tags)):
                    if speed is not None:
                        record["host_speed"] = speed
                    store.append(record)
                    self._counted(point, record)
        else:  # frames captured at their arrival times (splitbed.sweep.pacing)
            around = None
            interval = parse_workload(point.workload).deadline_s  # the mean time between frames
            if self.speed is not None and interval is not None:  # bursts around a stream short of room between frames
                around = StreamBursts(self.speed, self.store, point.key, interval, warm_s, warm_host)
            run_paced(point, spec.repetitions, bed, store, warm, lambda: self._place_link(point, bed, store),
                      lambda record: self._counted(point, record), self._paced_speed, around)
        if store.completed(point.key) < point.wanted(spec.repetitions):
            outcome.incomplete.append(point.key)

    def _paced_speed(self, idle_s: float) -> dict[str, Any] | None:
        """The host-speed reference in a paced point's idle time before a frame, when it fits there."""
        if self.speed is None or not self.speed.fits(idle_s):
            return None
        return self._speed_block(BEFORE_PACED)

    def _counted(self, point: Point, record: dict[str, Any]) -> None:
        """The outcome's and the progress bar's count of one measured record (a dropped frame is neither an
        inference nor an error)."""
        if record.get("status") == DROPPED_STATUS:
            self.outcome.dropped += 1
            self.progress.advance(record)
            return
        self.outcome.inferences += 1
        if record.get("status") != "ok":
            self.outcome.errors += 1
            log.warning("inference error at %s: %s", point.key, record.get("error"))
        else:
            self.progress.advance(record)


def compute_ms(records: list[dict[str, Any]]) -> float | None:
    """Both nodes' model compute of a one-inference job (local + remote inference), or None if it failed."""
    if len(records) != 1 or records[0].get("status") != "ok":
        return None
    local, remote = records[0].get("local_inference_ms"), records[0].get("remote_inference_ms")
    if not isinstance(local, (int, float)) or not isinstance(remote, (int, float)):
        return None
    return float(local) + float(remote)


def _service_s(records: list[dict[str, Any]]) -> float | None:
    """A warm-up's e2e in seconds (None when it failed): not its job's wall time, which on a partition's first job
    includes building it."""
    e2e = records[0].get("e2e_latency_ms") if len(records) == 1 else None
    return float(e2e) / 1000 if isinstance(e2e, (int, float)) and not isinstance(e2e, bool) else None


def compute_settled(computes: list[float | None], tolerance: float = WARMUP_TOLERANCE) -> bool:
    """True when the last two warm-ups' compute times agree within `tolerance` (of the later one)."""
    if len(computes) < 2 or computes[-1] is None or computes[-2] is None:
        return False
    last, before = computes[-1], computes[-2]
    return abs(last - before) <= tolerance * last


def _carriage(point: Point) -> str:
    return point.encoding if point.encoding != "tlv" else f"tlv/{point.compression}"

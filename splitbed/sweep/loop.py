"""The sweep's run loop for one link profile: one testbed for all of that profile's points, and what happens when a
point cannot be measured.

- a point's job the local node refuses outright (`JobRefusedError`, e.g. an unreadable image): the point is left
  incomplete, the testbed stays, the next point runs;
- the testbed itself breaks (`TestbedError`: a failed start, a dead node, a timeout): it is closed and rebuilt
  once for that point; a second failure on the same point stops the sweep (`SweepError`), everything measured so
  far being on disk;
- an inference that fails (an error record) is kept, and the point tries again, at most `repetitions` extra times;
- before every repetition (and the warm-ups) of a point on a trace-driven profile, the trace restarts where that
  repetition belongs (splitbed.trace_phases).

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
from splitbed.sweep.plan import Point, SweepSpec
from splitbed.sweep.store import ResultStore
from splitbed.testbed import JobRefusedError, TestbedError
from splitbed.trace_phases import at_repetition, is_trace_driven

log = logging.getLogger(__name__)


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

    def __call__(self, *, profile: str, backend: str, models: list[str], weights: str,
                 runtime: str) -> SweepTestbed: ...


@dataclass
class SweepOutcome:
    """What one run did. `skipped_points` were complete before it started (resume)."""

    out_dir: Path
    points: list[Point]
    skipped_points: int = 0
    inferences: int = 0
    errors: int = 0
    wall_s: float = 0.0
    testbed_starts: list[dict[str, Any]] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)


class ProfileRun:
    """Measures one profile's points on one testbed (see the module docstring). Use `run(points)` once."""

    def __init__(self, spec: SweepSpec, profile: str, store: ResultStore, progress: Progress, outcome: SweepOutcome,
                 factory: TestbedFactory) -> None:
        self.spec, self.profile, self.store, self.progress, self.outcome = spec, profile, store, progress, outcome
        self.factory = factory
        self.bed: SweepTestbed | None = None
        link = LinkProfile.load(profile)
        self.trace_profile = link if is_trace_driven(link) else None  # repetitions are placed along the trace

    def run(self, batch: list[Point]) -> None:
        models = list(dict.fromkeys(p.model for p in batch))
        try:
            for point in batch:
                self._point_with_rebuild(point, models)
        finally:
            if self.bed is not None:
                self.bed.close()
                self.bed = None

    def _point_with_rebuild(self, point: Point, models: list[str]) -> None:
        for attempt in (1, 2):
            try:
                if self.bed is None:
                    self.bed = self._start(models)
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

    def _start(self, models: list[str]) -> SweepTestbed:
        self.progress.phase(f"starting the testbed on {self.profile} ({', '.join(models)})")
        begin = time.monotonic()
        spec = self.spec
        bed = self.factory(profile=self.profile, backend=spec.backend, models=models, weights=spec.weights,
                           runtime=spec.runtime)
        try:
            bed.start()
        except BaseException:
            self._close_quietly(bed)
            raise
        self.outcome.testbed_starts.append({"profile": self.profile, "models": models,
                                            "start_s": round(time.monotonic() - begin, 3),
                                            "backend": bed.link_info().get("backend")})
        return bed

    def _discard_bed(self) -> None:
        if self.bed is not None:
            self._close_quietly(self.bed)
        self.bed = None

    @staticmethod
    def _close_quietly(bed: SweepTestbed) -> None:
        try:
            bed.close()
        except Exception:
            log.exception("closing a failed testbed")

    def _place_trace(self, point: Point, bed: SweepTestbed) -> None:
        """Before each repetition (and the warm-ups): the trace starts where that repetition belongs."""
        if self.trace_profile is None:
            return
        repetition = self.store.completed(point.key)
        try:
            bed.update_link(at_repetition(self.trace_profile, repetition, self.spec.repetitions))
        except NetemError as exc:  # the profile ran before, so the link itself failed: rebuild the testbed
            raise TestbedError(f"the link could not restart its trace for repetition {repetition}: {exc}") from exc

    def _run_point(self, point: Point, bed: SweepTestbed) -> None:
        spec, store, progress, outcome = self.spec, self.store, self.progress, self.outcome
        missing = spec.repetitions - store.completed(point.key)
        if missing <= 0:
            return
        progress.phase(f"{point.profile} {point.model} @ {point.partition} ({_carriage(point)})")
        self._place_trace(point, bed)
        for index in range(spec.warmup):
            for record in bed.run(point.job(tags={"warmup": True, "warmup_index": index})):
                store.append(record)
                progress.advance(record)
        attempts = 0
        while store.completed(point.key) < spec.repetitions and attempts < 2 * missing:
            attempts += 1
            self._place_trace(point, bed)
            for record in bed.run(point.job(tags={"rep": store.completed(point.key)})):
                store.append(record)
                outcome.inferences += 1
                if record.get("status") != "ok":
                    outcome.errors += 1
                    log.warning("inference error at %s: %s", point.key, record.get("error"))
                else:
                    progress.advance(record)
        if store.completed(point.key) < spec.repetitions:
            outcome.incomplete.append(point.key)


def _carriage(point: Point) -> str:
    return point.encoding if point.encoding != "tlv" else f"tlv/{point.compression}"

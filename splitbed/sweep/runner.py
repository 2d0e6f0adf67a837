"""Running a sweep: one Testbed per link profile (the nodes stay up across that profile's points), one job per
inference so that every record is on disk as soon as it exists, and resume by point key.

For each point: `warmup` inferences first (written with tags.warmup = true, left out of every statistic: the first
inference of a partition pays one-off costs such as TensorFlow's first call on new shapes), then inferences until
the point has `repetitions` good records. An error record (the inference failed, e.g. the link lost the session)
is kept and the point tries again, at most `repetitions` extra times. A job the local node refuses outright (e.g.
an unreadable image) leaves that point incomplete and the sweep goes on. If the testbed itself breaks (a node
died, a timeout), it is rebuilt once for that point; a second failure stops the sweep (everything measured so far is kept;
running the same command again resumes).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from netem.errors import NetemError
from netem.profile import LinkProfile
from splitbed.sweep.plan import Point, SweepSpec, points
from splitbed.sweep.store import ResultStore
from splitbed.sweep.trace_phases import at_repetition, is_trace_driven

log = logging.getLogger(__name__)

SWEEP_META_NAME = "sweep.json"
MAX_RUNS_KEPT = 1000


class SweepError(RuntimeError):
    """The sweep had to stop; what was measured so far is in the results file."""


class Progress(Protocol):
    """What the sweep tells its caller (the CLI draws a progress bar from it)."""

    def begin(self, total: int, done_points: int, points: int) -> None: ...

    def phase(self, text: str) -> None: ...

    def advance(self, record: dict[str, Any]) -> None: ...


class _Silent:
    def begin(self, total: int, done_points: int, points: int) -> None:
        pass

    def phase(self, text: str) -> None:
        log.info("%s", text)

    def advance(self, record: dict[str, Any]) -> None:
        pass


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


TestbedFactory = Callable[..., Any]


def _default_factory(**kwargs: Any) -> Any:
    from splitbed.testbed import Testbed

    return Testbed(**kwargs)


def run_sweep(spec: SweepSpec, out_dir: str | Path, *, progress: Progress | None = None,
              testbed_factory: TestbedFactory = _default_factory) -> SweepOutcome:
    """Measure every point of `spec` not yet complete in `out_dir`; see the module docstring."""
    from splitbed.testbed import JobRefusedError, TestbedError

    progress = progress or _Silent()
    all_points = points(spec)
    outcome = SweepOutcome(out_dir=Path(out_dir), points=all_points)
    started = time.monotonic()
    started_utc = datetime.now(timezone.utc).isoformat()
    state = "interrupted"
    with ResultStore(out_dir) as store:
        todo = [p for p in all_points if store.completed(p.key) < spec.repetitions]
        outcome.skipped_points = len(all_points) - len(todo)
        total = sum(spec.repetitions - store.completed(p.key) + spec.warmup for p in todo)
        progress.begin(total, outcome.skipped_points, len(all_points))
        _write_meta(outcome.out_dir, spec, started_utc, None, "running", outcome)
        try:
            for profile in dict.fromkeys(p.profile for p in todo):
                batch = [p for p in todo if p.profile == profile]
                _run_profile(spec, profile, batch, store, progress, outcome, testbed_factory, TestbedError,
                             JobRefusedError)
            state = "complete" if not outcome.incomplete else "incomplete"
        except SweepError:
            state = "failed"
            raise
        finally:
            outcome.wall_s = time.monotonic() - started
            _write_meta(outcome.out_dir, spec, started_utc, datetime.now(timezone.utc).isoformat(), state, outcome)
    return outcome


def _run_profile(spec: SweepSpec, profile: str, batch: list[Point], store: ResultStore, progress: Progress,
                 outcome: SweepOutcome, factory: TestbedFactory, testbed_error: type[Exception],
                 refused_error: type[Exception]) -> None:
    models = list(dict.fromkeys(p.model for p in batch))
    link = LinkProfile.load(profile)
    placed = link if is_trace_driven(link) else None  # repetitions are placed along the trace (trace_phases)
    bed = None
    try:
        for point in batch:
            for attempt in (1, 2):
                try:
                    if bed is None:
                        bed = _start_testbed(spec, profile, models, progress, outcome, factory)
                    _run_point(spec, point, bed, store, progress, outcome, placed)
                    break
                except refused_error as exc:  # this point's job cannot run; the testbed is fine
                    log.warning("the local node refused point %s: %s", point.key, exc)
                    progress.phase(f"point refused: {exc}")
                    outcome.incomplete.append(point.key)
                    break
                except testbed_error as exc:  # a failed start, a dead node, a timeout
                    log.warning("testbed failed on %s: %s", point.key, exc)
                    if bed is not None:
                        _close_quietly(bed)
                    bed = None
                    if attempt == 2:
                        raise SweepError(f"the testbed failed twice on point {point.key}; stopping. Results so far "
                                         f"are in {store.path}; run the same command to resume.\n{exc}") from exc
                    progress.phase(f"testbed failed ({str(exc).splitlines()[0]}); rebuilding it")
    finally:
        if bed is not None:
            bed.close()


def _start_testbed(spec: SweepSpec, profile: str, models: list[str], progress: Progress, outcome: SweepOutcome,
                   factory: TestbedFactory) -> Any:
    progress.phase(f"starting the testbed on {profile} ({', '.join(models)})")
    begin = time.monotonic()
    bed = factory(profile=profile, backend=spec.backend, models=models, weights=spec.weights, runtime=spec.runtime)
    bed.start()
    outcome.testbed_starts.append({"profile": profile, "models": models, "start_s": round(time.monotonic() - begin, 3),
                                   "backend": bed.link_info().get("backend")})
    return bed


def _run_point(spec: SweepSpec, point: Point, bed: Any, store: ResultStore, progress: Progress,
               outcome: SweepOutcome, trace_profile: LinkProfile | None = None) -> None:
    if spec.repetitions - store.completed(point.key) <= 0:
        return
    progress.phase(f"{point.profile} {point.model} @ {point.partition} ({_carriage(point)})")
    if spec.capture and getattr(bed, "topology", None) is not None:  # records held, then joined to the captures
        from splitbed.sweep.capture import CaptureOptions, PointCapture

        with PointCapture(bed, point.key, store, CaptureOptions(True, spec.max_pcap_mb)) as sink:
            _measure_point(spec, point, bed, sink, progress, outcome, trace_profile)
            progress.phase(f"{point.profile} {point.model} @ {point.partition}: analysing the captures")
    else:
        _measure_point(spec, point, bed, store, progress, outcome, trace_profile)


def _measure_point(spec: SweepSpec, point: Point, bed: Any, store: Any, progress: Progress,
                   outcome: SweepOutcome, trace_profile: LinkProfile | None = None) -> None:
    """Warm-ups, then repetitions until the point has enough good ones; `store` has `append` and `completed`
    (the ResultStore, or a PointCapture holding the point's records until its captures are analysed)."""
    missing = spec.repetitions - store.completed(point.key)

    def place_trace() -> None:  # before each repetition (and the warm-ups): where it belongs in the trace
        if trace_profile is None:
            return
        repetition = store.completed(point.key)
        try:
            bed.update_link(at_repetition(trace_profile, repetition, spec.repetitions))
        except NetemError as exc:  # the profile ran before, so the link itself failed: rebuild the testbed
            from splitbed.testbed import TestbedError

            raise TestbedError(f"the link could not restart its trace for repetition {repetition}: {exc}") from exc

    place_trace()
    for index in range(spec.warmup):
        for record in bed.run(point.job(tags={"warmup": True, "warmup_index": index})):
            store.append(record)
            progress.advance(record)
    attempts = 0
    while store.completed(point.key) < spec.repetitions and attempts < 2 * missing:
        attempts += 1
        place_trace()
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


def _close_quietly(bed: Any) -> None:
    try:
        bed.close()
    except Exception:
        log.exception("closing a failed testbed")


def _write_meta(out_dir: Path, spec: SweepSpec, started: str, finished: str | None, state: str,
                outcome: SweepOutcome) -> None:
    """sweep.json: every run of this directory (options, state, wall time), newest last."""
    path = out_dir / SWEEP_META_NAME
    meta: dict[str, Any] = {"runs": []}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8")[: 16 << 20])
            if isinstance(loaded, dict) and isinstance(loaded.get("runs"), list):
                meta = loaded
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s is not valid JSON; starting a new one", path)
    runs = [r for r in meta["runs"] if not (isinstance(r, dict) and r.get("started_utc") == started)]
    runs.append({"started_utc": started, "finished_utc": finished, "state": state, "spec": spec.to_dict(),
                 "points": len(outcome.points), "skipped_points": outcome.skipped_points,
                 "inferences": outcome.inferences, "errors": outcome.errors, "wall_s": round(outcome.wall_s, 3),
                 "testbed_starts": outcome.testbed_starts, "incomplete_points": outcome.incomplete})
    meta["runs"] = runs[-MAX_RUNS_KEPT:]
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)

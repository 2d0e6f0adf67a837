"""Running a sweep: one Testbed per link profile and pair of devices (the nodes stay up across its points), one job per
inference so that every record is on disk as soon as it exists, and resume by point key.

For each point: `warmup` inferences first (written with tags.warmup = true, left out of every statistic: the first
inference of a partition pays one-off costs such as TensorFlow's first call on new shapes), and more, up to
`warmup_max`, until two in a row agree on the compute time within WARMUP_TOLERANCE (the measured records say
how many warm-ups ran and whether the compute settled), then inferences until
the point has `repetitions` good records. An error record (the inference failed, e.g. the link lost the session)
is kept and the point tries again, at most `repetitions` extra times. A job the local node refuses outright (e.g.
an unreadable image) leaves that point incomplete and the sweep goes on. If the testbed itself breaks (a node
died, a timeout), it is rebuilt once for that point; a second failure stops the sweep (everything measured so far is kept;
running the same command again resumes).

On a link with random loss or jitter each measured inference draws its own realisation (seeds from the profile's
seed, the point key and the draw; splitbed.sweep.realisations), applied as a live link update before it; on a
trace-driven link the same update places the trace (trace_phases).
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
from splitbed.sweep import runstate
from splitbed.sweep.plan import WARMUP_TOLERANCE, Point, SweepSpec, engine_args, link_profile, points
from splitbed.sweep.realisations import link_for, varies
from splitbed.sweep.store import ResultStore

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
    killed_runs: list[str] = field(default_factory=list)  # earlier runs found `running` with their owner gone


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
        for run in _write_meta(outcome.out_dir, spec, started_utc, None, "running", outcome):
            outcome.killed_runs.append(runstate.describe(run))
            log.warning("%s: %s", outcome.out_dir / SWEEP_META_NAME, runstate.describe(run))
        try:
            for bed in dict.fromkeys(p.bed for p in todo):
                batch = [p for p in todo if p.bed == bed]
                _run_profile(spec, bed, batch, store, progress, outcome, testbed_factory, TestbedError,
                             JobRefusedError)
            state = "complete" if not outcome.incomplete else "incomplete"
        except SweepError:
            state = "failed"
            raise
        finally:
            outcome.wall_s = time.monotonic() - started
            _write_meta(outcome.out_dir, spec, started_utc, datetime.now(timezone.utc).isoformat(), state, outcome)
    return outcome


def _run_profile(spec: SweepSpec, bed_key: tuple[str, str, str], batch: list[Point], store: ResultStore,
                 progress: Progress, outcome: SweepOutcome, factory: TestbedFactory, testbed_error: type[Exception],
                 refused_error: type[Exception]) -> None:
    profile = bed_key[0]
    models = list(dict.fromkeys(p.model for p in batch))
    link = link_profile(profile)
    placed = link if varies(link) else None  # each inference gets its own draw / trace place (realisations)
    bed = None
    try:
        for point in batch:
            for attempt in (1, 2):
                try:
                    if bed is None:
                        bed = _start_testbed(spec, bed_key, models, progress, outcome, factory)
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


def _start_testbed(spec: SweepSpec, bed_key: tuple[str, str, str], models: list[str], progress: Progress,
                   outcome: SweepOutcome, factory: TestbedFactory) -> Any:
    profile, ue, edge = bed_key
    progress.phase(f"starting the testbed on {profile} ({', '.join(models)}; UE {ue}, edge {edge})")
    begin = time.monotonic()
    # a rate-swept profile (NAME@RATEmbit) is no file: the testbed gets the LinkProfile itself
    link = link_profile(profile) if "@" in profile else profile
    bed = factory(profile=link, backend=spec.backend, models=models, weights=spec.weights, runtime=spec.runtime,
                  cpus=spec.cpus, ue_device=ue, edge_device=edge, **engine_args(spec.engine))
    bed.start()
    outcome.testbed_starts.append({"profile": profile, "ue_device": ue, "edge_device": edge, "models": models,
                                   "start_s": round(time.monotonic() - begin, 3),
                                   "backend": bed.link_info().get("backend")})
    return bed


def _run_point(spec: SweepSpec, point: Point, bed: Any, store: ResultStore, progress: Progress,
               outcome: SweepOutcome, varying_link: LinkProfile | None = None) -> None:
    missing = spec.repetitions - store.completed(point.key)
    if missing <= 0:
        return
    progress.phase(f"{point.profile} {point.model} @ {point.partition} ({_carriage(point)}; UE {point.ue_device})")

    def place_link() -> dict[str, Any]:  # before each inference (and the warm-ups): its draw, its trace place
        draw = store.completed(point.key) + store.errors[point.key]
        if varying_link is None:
            return {"draw": draw}
        repetition = store.completed(point.key)
        realisation = link_for(varying_link, point.key, draw, repetition, spec.repetitions)
        if realisation.profile is not None:
            try:
                bed.update_link(realisation.profile)
            except NetemError as exc:  # the profile ran before, so the link itself failed: rebuild the testbed
                from splitbed.testbed import TestbedError

                raise TestbedError(f"the link could not change to draw {draw} (repetition {repetition}): "
                                   f"{exc}") from exc
        return realisation.tag

    realisation = place_link()
    computes: list[float | None] = []
    settled: bool | None = None if spec.warmup else True
    while len(computes) < (spec.warmup_max if spec.warmup else 0):
        tags = {"warmup": True, "warmup_index": len(computes), "draw": realisation["draw"],
                "realisation": realisation}
        records = bed.run(point.job(tags=tags))
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
    attempts = 0
    while store.completed(point.key) < spec.repetitions and attempts < 2 * missing:
        attempts += 1
        realisation = place_link()
        tags = {"rep": store.completed(point.key), "draw": realisation["draw"], "realisation": realisation, **warm}
        for record in bed.run(point.job(tags=tags)):
            store.append(record)
            outcome.inferences += 1
            if record.get("status") != "ok":
                outcome.errors += 1
                log.warning("inference error at %s: %s", point.key, record.get("error"))
            else:
                progress.advance(record)
    if store.completed(point.key) < spec.repetitions:
        outcome.incomplete.append(point.key)


def compute_ms(records: list[dict[str, Any]]) -> float | None:
    """Both nodes' model compute of a one-inference job (local + remote inference), or None if it failed."""
    if len(records) != 1 or records[0].get("status") != "ok":
        return None
    local, remote = records[0].get("local_inference_ms"), records[0].get("remote_inference_ms")
    if not isinstance(local, (int, float)) or not isinstance(remote, (int, float)):
        return None
    return float(local) + float(remote)


def compute_settled(computes: list[float | None], tolerance: float = WARMUP_TOLERANCE) -> bool:
    """True when the last two warm-ups' compute times agree within `tolerance` (of the later one)."""
    if len(computes) < 2 or computes[-1] is None or computes[-2] is None:
        return False
    last, before = computes[-1], computes[-2]
    return abs(last - before) <= tolerance * last


def _carriage(point: Point) -> str:
    return point.encoding if point.encoding != "tlv" else f"tlv/{point.compression}"


def _close_quietly(bed: Any) -> None:
    try:
        bed.close()
    except Exception:
        log.exception("closing a failed testbed")


def read_meta(out_dir: Path) -> dict[str, Any]:
    """sweep.json as written by _write_meta ({"runs": []} when absent or unreadable)."""
    path = out_dir / SWEEP_META_NAME
    try:
        loaded = json.loads(path.read_text(encoding="utf-8")[: 16 << 20])
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {"runs": []}
    return loaded if isinstance(loaded, dict) and isinstance(loaded.get("runs"), list) else {"runs": []}


def stale_runs(out_dir: Path) -> list[str]:
    """What sweep.json says is running but is not (reads only: for --dry-run)."""
    return [runstate.describe(run) for run in read_meta(out_dir)["runs"] if runstate.is_stale(run)]


def _write_meta(out_dir: Path, spec: SweepSpec, started: str, finished: str | None, state: str,
                outcome: SweepOutcome) -> list[dict[str, Any]]:
    """sweep.json: every run of this directory (options, state, wall time, owner), newest last. Earlier runs
    left `running` by a killed process are marked `killed`; returns those."""
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
    killed = runstate.mark_killed(runs)
    runs.append({"started_utc": started, "finished_utc": finished, "state": state, **runstate.owner(),
                 "spec": spec.to_dict(),
                 "points": len(outcome.points), "skipped_points": outcome.skipped_points,
                 "inferences": outcome.inferences, "errors": outcome.errors, "wall_s": round(outcome.wall_s, 3),
                 "testbed_starts": outcome.testbed_starts, "incomplete_points": outcome.incomplete})
    meta["runs"] = runs[-MAX_RUNS_KEPT:]
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)
    return killed

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
running the same command again resumes). The loop itself is splitbed.sweep.loop.ProfileRun.

On a link with random loss or jitter each measured inference draws its own realisation (seeds from the profile's
seed, the point key and the draw; splitbed.sweep.realisations), applied as a live link update before it; on a
trace-driven link the same update places the trace (trace_phases).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from netem.profile import LinkProfile
from splitbed import envlock
from splitbed.sweep import runstate
from splitbed.sweep.loop import (
    ProfileRun,
    Progress,
    SweepError,
    SweepOutcome,
    SweepTestbed,
    TestbedFactory,
    compute_ms,
    compute_settled,
)
from splitbed.sweep.plan import Point, SweepSpec, points
from splitbed.sweep.store import ResultStore

log = logging.getLogger(__name__)

SWEEP_META_NAME = "sweep.json"
MAX_RUNS_KEPT = 1000

__all__ = ["Progress", "SweepError", "SweepOutcome", "SweepTestbed", "TestbedFactory", "compute_ms",
           "compute_settled", "measure_points", "read_meta", "run_sweep", "stale_runs"]


class _Silent:
    def begin(self, total: int, done_points: int, points: int) -> None:
        pass

    def phase(self, text: str) -> None:
        log.info("%s", text)

    def advance(self, record: dict[str, Any]) -> None:
        pass


def _default_factory(*, profile: str | LinkProfile, backend: str, models: list[str], weights: str, runtime: str, cpus: str,
                     ues: int = 0, **engine: Any) -> SweepTestbed:
    from splitbed.testbed import Testbed

    if ues:  # a cell: N UE nodes and one edge behind one emulated cell
        from splitbed.cellbed import CellTestbed

        return CellTestbed(profile, ues=ues, models=models, weights=weights, runtime=runtime, cpus=cpus, **engine)

    return Testbed(profile=profile, backend=backend, models=models, weights=weights, runtime=runtime, cpus=cpus,
                   **engine)


def run_sweep(spec: SweepSpec, out_dir: str | Path, *, progress: Progress | None = None,
              testbed_factory: TestbedFactory = _default_factory) -> SweepOutcome:
    """Measure every point of `spec` not yet complete in `out_dir`; see the module docstring."""
    progress = progress or _Silent()
    all_points = points(spec)
    outcome = SweepOutcome(out_dir=Path(out_dir), points=all_points)
    started = time.monotonic()
    started_utc = datetime.now(timezone.utc).isoformat()
    state = "interrupted"
    with ResultStore(out_dir) as store:
        todo = [p for p in all_points if store.completed(p.key) < p.wanted(spec.repetitions)]
        outcome.skipped_points = len(all_points) - len(todo)
        total = sum(p.wanted(spec.repetitions) - store.completed(p.key) + spec.warmup for p in todo)
        progress.begin(total, outcome.skipped_points, len(all_points))
        for run in _write_meta(outcome.out_dir, spec, started_utc, None, "running", outcome):
            outcome.killed_runs.append(runstate.describe(run))
            log.warning("%s: %s", outcome.out_dir / SWEEP_META_NAME, runstate.describe(run))
        try:
            for bed in dict.fromkeys(p.bed for p in todo):  # one testbed per profile and pair of devices
                batch = [p for p in todo if p.bed == bed]
                ProfileRun(spec, bed[0], store, progress, outcome, testbed_factory).run(batch)
            state = "complete" if not outcome.incomplete else "incomplete"
        except SweepError:
            state = "failed"
            raise
        finally:
            outcome.wall_s = time.monotonic() - started
            _write_meta(outcome.out_dir, spec, started_utc, datetime.now(timezone.utc).isoformat(), state, outcome)
    return outcome


def measure_points(spec: SweepSpec, profile: str, batch: list[Point], store: Any, progress: Progress,
                   outcome: SweepOutcome, testbed_factory: TestbedFactory = _default_factory) -> None:
    """The run loop for some points of one profile (and pair of devices) on one testbed, as run_sweep runs them:
    the seam through which the distributed sweep (splitbed.sweep.distributed) measures one point on a worker.
    `store` is a ResultStore or anything with its `completed(key)`, `errors[key]`, `append(record)` and `path`.
    Raises SweepError when the testbed failed twice."""
    ProfileRun(spec, profile, store, progress, outcome, testbed_factory).run(batch)


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
    """sweep.json: every run of this directory (options, state, wall time, owner, whether the environment was the
    locked one), newest last. Earlier runs left `running` by a killed process are marked `killed`; returns those."""
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
                 "spec": spec.to_dict(), "environment": envlock.status(),
                 "points": len(outcome.points), "skipped_points": outcome.skipped_points,
                 "inferences": outcome.inferences, "errors": outcome.errors, "frames_dropped": outcome.dropped, "wall_s": round(outcome.wall_s, 3),
                 "testbed_starts": outcome.testbed_starts, "incomplete_points": outcome.incomplete})
    meta["runs"] = runs[-MAX_RUNS_KEPT:]
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)
    return killed

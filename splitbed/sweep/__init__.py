"""The main job: measure a matrix of (profile x model x partition x carriage) points on the testbed, keep every
metrics record in JSON Lines, summarise each point (median and 95% CI) and resume when interrupted.
docs/SWEEP.md describes the options, the files and the statistics."""

from splitbed.sweep.plan import DEFAULT_PROFILE, Point, SweepSpec, SweepSpecError, points
from splitbed.sweep.runner import SweepError, SweepOutcome, run_sweep
from splitbed.sweep.store import ResultStore, read_records
from splitbed.sweep.summary import PointSummary, best_per_group, summarise, write_csv

__all__ = ["DEFAULT_PROFILE", "Point", "PointSummary", "ResultStore", "SweepError", "SweepOutcome", "SweepSpec",
           "SweepSpecError", "best_per_group", "points", "read_records", "run_sweep", "summarise", "write_csv"]

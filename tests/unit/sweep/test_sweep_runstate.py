"""sweep.json runs left `running` by a killed sweep are detected by their owner pid, said by --dry-run and the
next run, and marked `killed` by the next run; a live owner's run is never touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from splitbed import envlock
from splitbed.nodes.clock import boot_id
from splitbed.sweep import runstate
from splitbed.sweep.plan import SweepSpec
from splitbed.sweep.runner import SweepOutcome, _write_meta, stale_runs


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _meta(out: Path, *runs: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps({"runs": list(runs)}))


def test_stale_runs_are_found_by_owner_and_boot(tmp_path: Path) -> None:
    dead = _dead_pid()
    _meta(tmp_path,
          {"started_utc": "A", "state": "running", "owner_pid": dead, "owner_boot_id": boot_id()},
          {"started_utc": "B", "state": "running", "owner_pid": os.getpid(), "owner_boot_id": boot_id()},
          {"started_utc": "C", "state": "running", "owner_pid": os.getpid(), "owner_boot_id": "another-boot"},
          {"started_utc": "D", "state": "complete", "owner_pid": dead},
          {"started_utc": "E", "state": "running"})  # written before owners were recorded: unknown, left alone
    notes = stale_runs(tmp_path)
    assert len(notes) == 2 and "started A" in notes[0] and "started C" in notes[1]
    assert f"pid {dead}" in notes[0] and "killed or crashed" in notes[0]


def test_the_next_run_marks_them_killed_and_records_its_owner(tmp_path: Path) -> None:
    dead = _dead_pid()
    _meta(tmp_path, {"started_utc": "A", "state": "running", "owner_pid": dead, "owner_boot_id": boot_id()})
    killed = _write_meta(tmp_path, SweepSpec(), "B", None, "running", SweepOutcome(tmp_path, []))
    assert [r["started_utc"] for r in killed] == ["A"]
    runs = json.loads((tmp_path / "sweep.json").read_text())["runs"]
    assert runs[0]["state"] == runstate.KILLED and "stopped without recording its end" in runs[0]["note"]
    assert runs[1]["state"] == "running" and runs[1]["owner_pid"] == os.getpid()
    assert runs[1]["owner_boot_id"] == boot_id()
    assert runs[1]["environment"] == envlock.status() and runs[1]["environment"]["lock_match"]  # which software
    assert stale_runs(tmp_path) == []  # this process is alive


def test_dry_run_says_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _meta(out, {"started_utc": "2026-01-01T00:00:00", "state": "running", "owner_pid": _dead_pid(),
                "owner_boot_id": boot_id()})
    done = subprocess.run([sys.executable, "-m", "splitbed.cli", "sweep", "--model", "mobilenet_v2", "--partition",
                           "block_3_project_BN", "--dry-run", "--out", str(out)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "300"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "the run started 2026-01-01T00:00:00" in done.stdout and "the next run marks it killed" in done.stdout
    assert json.loads((out / "sweep.json").read_text())["runs"][0]["state"] == "running"  # dry run writes nothing

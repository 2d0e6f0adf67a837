"""`splitbed sweep` as a user runs it (a subprocess: its own testbed, progress bar, summary table, report), then
again to show the resume: nothing measured twice, no testbed built. Leaves no namespace behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.sweep.conftest import netns_names
from tests.unit.netem.test_pyexec import marker_dir

pytestmark = [pytest.mark.root, pytest.mark.slow]

ARGS = ["sweep", "--model", "mobilenet_v2", "--partition", "block_3_project_BN", "--repetitions", "6",
        "--weights", "random:0", "--backend", "userspace",
        "--no-local-baseline", "--no-offload-baseline"]  # one point: the counts below are that point's


def _sweep(out: Path, timeout: float, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], int]:
    env = {**os.environ, "SPLITBED_OFFLINE": "1", "COLUMNS": "200"}
    process = subprocess.Popen([sys.executable, "-P", "-m", "splitbed.cli", *ARGS, "--out", str(out)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), process.pid


def test_the_main_job_command_prints_the_table_and_report_and_resumes(tmp_path: Path) -> None:
    before = netns_names()
    out = tmp_path / "sweep"
    cwd, hits = marker_dir(tmp_path)  # the link process and both nodes run as root: nothing from the cwd
    result, pid = _sweep(out, timeout=600, cwd=cwd)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not hits.exists(), hits.read_text()
    assert "splitbed sweep: medians [95% CI] per point" in result.stdout
    assert "block_3_project_BN" in result.stdout and "5g-split-ai" in result.stdout
    report = out / "report" / "report.html"
    assert result.stdout.rstrip().splitlines()[-1].startswith(f"Report: {report}") and report.is_file()
    assert "1 points (0 already complete), 6 inferences this run, 0 errors" in result.stdout
    lines = (out / "results.jsonl").read_text().splitlines()
    warm = sum(1 for line in lines if json.loads(line)["tags"].get("warmup"))
    assert 1 <= warm <= 5 and len(lines) == 6 + warm  # warm-ups until the compute settles, at most 5
    assert not {n for n in netns_names() - before if n.startswith(f"sb{pid}")}

    again, _ = _sweep(out, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming: 1 of 1 points already complete" in again.stdout
    assert "1 points (1 already complete), 0 inferences this run" in again.stdout
    assert len((out / "results.jsonl").read_text().splitlines()) == 6 + warm
    meta = json.loads((out / "sweep.json").read_text())
    assert [run["state"] for run in meta["runs"]] == ["complete", "complete"]
    assert meta["runs"][1]["testbed_starts"] == []


def test_ctrl_c_mid_sweep_keeps_whole_records_and_the_next_run_finishes_the_rest(tmp_path: Path) -> None:
    before = netns_names()
    out = tmp_path / "sweep"
    env = {**os.environ, "SPLITBED_OFFLINE": "1", "COLUMNS": "200"}
    # without captures each record is written as its inference ends (with them, a point's records land together
    # once its captures are analysed), so the interrupt falls inside the point
    process = subprocess.Popen([sys.executable, "-m", "splitbed.cli", *ARGS, "--no-capture", "--out", str(out)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if results.exists() and len(results.read_bytes().splitlines()) >= 3:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 130, stdout[-2000:]
    assert "run the same command to resume" in stdout
    kept = results.read_bytes()
    assert kept.endswith(b"\n") and 3 <= len(kept.splitlines()) < 7
    assert not {n for n in netns_names() - before if n.startswith(f"sb{process.pid}")}
    assert json.loads((out / "sweep.json").read_text())["runs"][-1]["state"] == "interrupted"

    again, _ = _sweep(out, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert results.read_bytes().startswith(kept)  # nothing rewritten
    good = [r for r in records if not r["tags"].get("warmup") and r["status"] == "ok"]
    assert len(good) == 6

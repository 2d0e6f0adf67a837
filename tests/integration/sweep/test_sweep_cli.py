"""`splitbed sweep` as a user runs it (a subprocess: its own testbed, progress bar, summary table, report), then
again to show the resume: nothing measured twice, no testbed built. Leaves no namespace behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.sweep.conftest import netns_names

pytestmark = [pytest.mark.root, pytest.mark.slow]

ARGS = ["sweep", "--model", "mobilenet_v2", "--partition", "block_3_project_BN", "--repetitions", "6",
        "--weights", "random:0", "--backend", "userspace"]


def _sweep(out: Path, timeout: float) -> tuple[subprocess.CompletedProcess[str], int]:
    env = {**os.environ, "SPLITBED_OFFLINE": "1", "COLUMNS": "200"}
    process = subprocess.Popen([sys.executable, "-m", "splitbed.cli", *ARGS, "--out", str(out)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), process.pid


def test_the_main_job_command_prints_the_table_and_report_and_resumes(tmp_path: Path) -> None:
    before = netns_names()
    out = tmp_path / "sweep"
    result, pid = _sweep(out, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "splitbed sweep: medians [95% CI] per point" in result.stdout
    assert "block_3_project_BN" in result.stdout and "5g-split-ai" in result.stdout
    report = out / "report" / "report.html"
    assert f"Report: {report}" in result.stdout and report.is_file()
    assert result.stdout.rstrip().splitlines()[-1].startswith("1 points (0 already complete), 6 inferences")
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 7 and sum(1 for line in lines if json.loads(line)["tags"].get("warmup")) == 1
    assert not {n for n in netns_names() - before if n.startswith(f"sb{pid}")}

    again, _ = _sweep(out, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming: 1 of 1 points already complete" in again.stdout
    assert again.stdout.rstrip().splitlines()[-1].startswith("1 points (1 already complete), 0 inferences")
    assert len((out / "results.jsonl").read_text().splitlines()) == 7
    meta = json.loads((out / "sweep.json").read_text())
    assert [run["state"] for run in meta["runs"]] == ["complete", "complete"]
    assert meta["runs"][1]["testbed_starts"] == []

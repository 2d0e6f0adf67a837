"""`splitbed sweep --ues 1,2`: each cell size is its own point on its own cell testbed; every UE runs the point's
job, so a point of N UEs has N x repetitions records, each saying which UE and how many shared the cell; the
sweep ends with the cell report (capacity, CDFs). Slow: two testbeds with TensorFlow nodes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netem.netns import list_namespaces
from splitbed.cli import app
from splitbed.sweep import read_records

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.requires("netns"), pytest.mark.timeout(1200)]


def test_a_cell_sweep_measures_every_ue_and_reports_the_capacity(tmp_path: Path) -> None:
    before = set(list_namespaces())
    result = CliRunner().invoke(app, [
        "sweep", "--ues", "1,2", "-m", "mobilenet_v2", "--profile", "5g-split-ai", "-p", "block_3_project_BN",
        "--weights", "random:0", "--repetitions", "2", "--warmup", "1", "--warmup-max", "1", "--no-local-baseline",
        "--no-offload-baseline", "--no-capture", "--no-report", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    records = [r for r in read_records(tmp_path).records if not (r.get("tags") or {}).get("warmup")]
    by_n = {n: [r for r in records if r["cell"]["ues"] == n] for n in (1, 2)}
    assert len(by_n[1]) == 2 and len(by_n[2]) == 4  # repetitions per UE
    assert sorted(r["cell"]["ue"] for r in by_n[2]) == [0, 0, 1, 1]
    assert all(r["status"] == "ok" and r["tags"]["point"].endswith(f"|ues={r['cell']['ues']}") for r in records)
    assert "Cell capacity (p95" in result.output
    analysis = json.loads((tmp_path / "report" / "cell.json").read_text())
    rows = analysis["configs"][0]["rows"]
    assert [r["ues"] for r in rows] == [1, 2] and rows[1]["deliveries"] == 4
    assert (tmp_path / "report" / "cell_cdf.png").stat().st_size > 0
    # nothing of the cells left: their UE namespaces are sb<pid>-<n>u<i> (other fixtures' and other jobs'
    # namespaces come and go meanwhile)
    cell_ues = re.compile(rf"^sb{os.getpid()}-[0-9a-z]+u[0-9a-z]$")
    assert not [n for n in set(list_namespaces()) - before if cell_ues.match(n)]

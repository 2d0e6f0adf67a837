"""`splitbed report RESULTS --budgets FILE`: the report draws and cites the user's budget (on the shared sweep's
real results)."""

from __future__ import annotations

from pathlib import Path

from splitbed.cli import main

BUDGET = """
[my-ar-budget]
title = "AR object recognition (uplink), our study"
uplink_latency_ms = 20.0
source = "Our own assumption for this study."
"""


def test_the_report_uses_and_cites_the_users_budget(shared_sweep: Path, tmp_path: Path) -> None:
    budgets = tmp_path / "mine.toml"
    budgets.write_text(BUDGET)
    out = tmp_path / "report"
    assert main(["report", str(shared_sweep), "--out", str(out), "--budgets", str(budgets)]) == 0
    text = (out / "report.md").read_text()
    assert "AR object recognition (uplink), our study" in text and "Our own assumption for this study." in text
    assert "TS 22.261 Table 7.10.1-1" not in text.split("## Budget")[-1]
    assert main(["report", str(shared_sweep), "--out", str(out), "--budgets", str(budgets), "--budget",
                 "nope"]) == 2

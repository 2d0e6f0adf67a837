"""`splitbed report RESULTS --budgets FILE`: the report draws and cites the user's budget (on the shared sweep's
real results). The file is docs/REPORT.md's own example, so this is also that documented command, checked more
closely than the documented-examples test checks it (which parses it by default and runs it with --full)."""

from __future__ import annotations

import re
from pathlib import Path

from splitbed.cli import main

REPO = Path(__file__).resolve().parents[3]


def docs_budgets() -> str:
    """The budgets file docs/REPORT.md shows (its one TOML block)."""
    found = re.search(r"```toml\n(.*?)```", (REPO / "docs" / "REPORT.md").read_text(), flags=re.S)
    assert found is not None, "docs/REPORT.md shows no budgets file"
    return found.group(1)


def test_the_report_uses_and_cites_the_users_budget(shared_sweep: Path, tmp_path: Path) -> None:
    budgets = tmp_path / "my-budgets.toml"
    budgets.write_text(docs_budgets())
    out = tmp_path / "report"
    assert main(["report", str(shared_sweep), "--out", str(out), "--budgets", str(budgets)]) == 0
    text = (out / "report.md").read_text()
    assert "AR object recognition (uplink), our study" in text
    assert "Our own assumption for the study: 0.25 MB within 20 ms." in text
    assert "TS 22.261 Table 7.10.1-1" not in text.split("## Budget")[-1]
    assert main(["report", str(shared_sweep), "--out", str(out), "--budgets", str(budgets), "--budget",
                 "nope"]) == 2

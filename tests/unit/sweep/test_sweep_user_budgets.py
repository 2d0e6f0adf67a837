"""Budgets from a user's file (`--budgets FILE`): same format and checks as the package's, a lone budget is
the default, errors name the file; the report uses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from splitbed.report.budgets import BudgetError, get_budget

ONE = """
[my-ar-budget]
title = "AR object recognition (uplink), our study"
uplink_latency_ms = 20.0
uplink_rate_mbit = 100.0
source = "Our own assumption for the study."
"""


def test_a_users_file_with_one_budget_makes_it_the_default(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(ONE)
    budget = get_budget(None, str(path))
    assert (budget.name, budget.uplink_latency_ms, budget.uplink_rate_mbit) == ("my-ar-budget", 20.0, 100.0)
    assert get_budget("my-ar-budget", str(path)) == budget
    with pytest.raises(BudgetError, match="unknown budget 'split-ai-image-recognition'; known: my-ar-budget"):
        get_budget("split-ai-image-recognition", str(path))


def test_a_malformed_users_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(ONE.replace("uplink_latency_ms = 20.0", "uplink_latency_ms = -1"))
    with pytest.raises(BudgetError, match=f"{path} \\[my-ar-budget\\] uplink_latency_ms must be a positive"):
        get_budget(None, str(path))
    two = tmp_path / "two.toml"
    two.write_text(ONE + ONE.replace("my-ar-budget", "other"))
    with pytest.raises(BudgetError, match="must mark exactly one budget `default = true`"):
        get_budget(None, str(two))
    with pytest.raises(BudgetError, match="cannot read the budgets file"):
        get_budget(None, str(tmp_path / "missing.toml"))

"""splitbed/data/budgets.toml: parses, cites its sources, and the default budget is the TS 22.261 split AI/ML
image recognition row of 3GPP TS 22.261 Table 7.10.1-1 (15 ms, 144 Mbit/s, 0.27 MByte)."""

from __future__ import annotations

import pytest

from splitbed.report.budgets import BudgetError, get_budget, load_budgets, parse_budgets


def test_default_budget_is_the_ts_22261_split_ai_row_and_quotes_its_own_figures() -> None:
    budget = get_budget()
    assert budget.name == "split-ai-image-recognition"
    assert "TS 22.261" in budget.source and "7.10.1-1" in budget.source
    assert (budget.uplink_latency_ms, budget.uplink_rate_mbit, budget.payload_bytes) == (15.0, 144.0, 270_000)
    for figure in ("UL end-to-end latency 15 ms", "144 Mbit/s", "0.27 MByte"):
        assert figure in budget.source
    # the three figures are one requirement: the payload delivered within the latency at the rate
    assert budget.payload_bytes * 8 / (budget.uplink_latency_ms * 1e3) == pytest.approx(budget.uplink_rate_mbit)


def test_every_budget_cites_a_source_that_states_its_numbers() -> None:
    for budget in load_budgets().values():
        assert budget.source.strip() and budget.title.strip()
        for value in (budget.uplink_latency_ms, budget.uplink_rate_mbit):
            if value is not None:
                assert f"{value:g}" in budget.source, (budget.name, value)


@pytest.mark.parametrize(("data", "message"), [
    ({"a": {"title": "t", "source": "s", "default": True, "uplink_latency_ms": -1}}, "uplink_latency_ms = -1 is outside \\(0"),
    ({"a": {"title": "t", "source": "", "default": True}}, "cite the source"),
    ({"a": {"title": "t", "source": "s", "default": True, "colour": "red"}}, "unknown keys"),
    ({"a": {"title": "t", "source": "s"}}, "exactly one budget"),
    ({"a": "x"}, "must be a table"),
])
def test_malformed_budgets_are_refused(data: dict, message: str) -> None:
    with pytest.raises(BudgetError, match=message):
        parse_budgets(data)


def test_unknown_budget_name_lists_the_known_ones() -> None:
    with pytest.raises(BudgetError, match="split-ai-image-recognition"):
        get_budget("nope")

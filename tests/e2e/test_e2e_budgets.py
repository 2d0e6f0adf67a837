"""Check 3, latency budgets per partition (splitbed/data/budgets.toml, TS 22.261 Table 7.10.1-1).

For each case: calibration inferences give the compute times and sizes; from them and the link profile the suite
predicts the uplink delivery time, whether it meets the budget's UL end-to-end latency (TS 22.261: the payload's
transfer), and the inference's end-to-end latency (splitbed.plugin.budget); then it measures. The test asserts
that both predictions agree with their measurements within max(tolerance_ms, tolerance_fraction x measured)
([budgets] in suite.toml; docs/SUITE.md says why), and that the meets/misses decision made before measuring is
the measured one unless the measured delivery lies within that tolerance of the budget (borderline).
Every case's row goes into <results-dir>/budgets/budgets.md and .csv for the report."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from splitbed.plugin.budget import BudgetRow, predict_e2e_ms, tolerance
from splitbed.plugin.matrix import SuiteCase, check_settings
from splitbed.report.budgets import get_budget

pytestmark = pytest.mark.root

SETTINGS = check_settings("budgets")


@pytest.mark.suite("budgets")
def test_latency_budget(suite_case: SuiteCase, testbed: Any, budget_table: list[BudgetRow]) -> None:
    budget = get_budget(SETTINGS["budget"])
    assert budget.uplink_latency_ms is not None
    calibration = testbed.run(suite_case.job(repetitions=int(SETTINGS["calibration_repetitions"]),
                                             tags={"suite": "budget-calibration"}))
    measured = testbed.run(suite_case.job(repetitions=int(SETTINGS["repetitions"]), tags={"suite": "budget"}))
    for record in calibration + measured:
        assert record["status"] == "ok", record["error"]
    profile = testbed.profile
    predicted_e2e, ahead = predict_e2e_ms(calibration, profile)
    same_run_e2e, detail = predict_e2e_ms(measured, profile)
    measured_e2e = statistics.median(r["e2e_latency_ms"] for r in measured)
    measured_delivery = statistics.median(r["delivery_ms"] for r in measured)
    delivery_allowed, e2e_allowed = tolerance(measured_delivery, SETTINGS), tolerance(measured_e2e, SETTINGS)
    uplink_bytes = int(detail["uplink_bytes"])
    limit = budget.uplink_latency_ms
    row = BudgetRow(
        case=suite_case.id, model=suite_case.model, partition=suite_case.partition, profile=suite_case.profile,
        carriage=suite_case.carriage, uplink_bytes=uplink_bytes, budget=budget.name,
        budget_uplink_latency_ms=limit, budget_payload_bytes=budget.payload_bytes,
        predicted_delivery_ms=ahead["uplink_ms"], predicted_meets=ahead["uplink_ms"] <= limit,
        measured_delivery_ms=measured_delivery, measured_meets=measured_delivery <= limit,
        predicted_same_run_delivery_ms=detail["uplink_ms"], delivery_tolerance_ms=delivery_allowed,
        delivery_agree=abs(detail["uplink_ms"] - measured_delivery) <= delivery_allowed,
        predicted_e2e_ms=predicted_e2e, measured_e2e_ms=measured_e2e, predicted_same_run_e2e_ms=same_run_e2e,
        e2e_tolerance_ms=e2e_allowed, e2e_agree=abs(same_run_e2e - measured_e2e) <= e2e_allowed,
        payload_meets=None if budget.payload_bytes is None else uplink_bytes <= budget.payload_bytes,
        weights=str(measured[0]["weights"]["requested"]) + " -> " + str(measured[0]["weights"]["source"]))
    budget_table.append(row)
    figures = (f"uplink delivery predicted {detail['uplink_ms']:.1f} ms vs measured {measured_delivery:.1f} ms "
               f"(allowed {delivery_allowed:.1f}); end-to-end predicted {same_run_e2e:.1f} ms (network model "
               f"{detail['uplink_ms']:.1f} ms up, {detail['downlink_ms']:.1f} ms down, start windows "
               f"{detail['uplink_start_cwnd']:g} up / {detail['downlink_start_cwnd']:g} down segments) vs measured "
               f"{measured_e2e:.1f} ms (allowed {e2e_allowed:.1f})")
    gap = SETTINGS.get("known_gaps", {}).get(suite_case.id)
    if gap and not row.agree:
        pytest.xfail(f"known model gap: {figures}: {gap}")
    assert row.delivery_agree and row.e2e_agree, figures
    borderline = abs(measured_delivery - limit) <= delivery_allowed
    assert row.decision_matches or borderline, (
        f"predicted the uplink delivery {'meets' if row.predicted_meets else 'misses'} the {limit:g} ms UL "
        f"latency ({ahead['uplink_ms']:.1f} ms) but measured {measured_delivery:.1f} ms")

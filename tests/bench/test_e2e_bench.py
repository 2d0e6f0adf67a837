"""End-to-end latency benchmarks through the emulated network, per model/partition/profile (splitbed/data/suite.toml
[bench]): pytest-benchmark times one inference job on the shared testbed (pedantic, a fixed small number of
rounds), and `extra_info` holds the case and the last metrics record, so saved histories
(`--benchmark-autosave`, `pytest-benchmark compare`) carry the figures a report needs.

Regression check within one run, as a ratio (never against absolute times from another machine): the large
partition's median over the small one's must agree with the ratio predicted from this run's own compute times,
the sizes and the link profile (splitbed.plugin.budget.predict_e2e_ms) within 25%."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from splitbed.plugin.budget import predict_e2e_ms
from splitbed.plugin.matrix import SuiteCase, cases, check_settings

pytestmark = [pytest.mark.bench, pytest.mark.root]

ROUNDS = int(check_settings("bench")["rounds"])
RATIO_TOLERANCE = 0.25
RESULTS: dict[str, dict[str, Any]] = {}


@pytest.mark.suite("bench")
def test_e2e_latency(suite_case: SuiteCase, testbed: Any, benchmark: Any) -> None:
    job = suite_case.job(tags={"suite": "bench"})
    records: list[dict[str, Any]] = []

    def one_inference() -> None:
        records.append(testbed.infer(job))

    benchmark.pedantic(one_inference, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    measured = records[1:] or records  # the warm-up round is not in the statistics
    last = measured[-1]
    benchmark.extra_info.update(
        case=suite_case.id, model=suite_case.model, partition=suite_case.partition, profile=suite_case.profile,
        carriage=suite_case.carriage, uplink_bytes=last["uplink_bytes"],
        e2e_latency_ms_median=statistics.median(r["e2e_latency_ms"] for r in measured),
        delivery_ms_median=statistics.median(r["delivery_ms"] for r in measured), record=last)
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None:  # None with --benchmark-disable
        predicted, _ = predict_e2e_ms(measured, testbed.profile)
        RESULTS[suite_case.id] = {"median_s": stats.median, "predicted_ms": predicted,
                                  "uplink_bytes": last["uplink_bytes"]}


def test_e2e_latency_ratio_matches_the_prediction() -> None:
    """The default bench cases on one profile: larger uplink / smaller uplink, measured vs predicted."""
    default = [c.id for c in cases("bench")]
    have = [RESULTS[i] for i in default if i in RESULTS]
    if len(have) < 2:
        pytest.skip("needs both default bench cases benchmarked in this run (not deselected, benchmarks enabled)")
    big, small = sorted(have, key=lambda r: r["uplink_bytes"], reverse=True)[:2]
    measured = big["median_s"] / small["median_s"]
    predicted = big["predicted_ms"] / small["predicted_ms"]
    assert measured > 1.0, f"more uplink bytes ({big['uplink_bytes']} vs {small['uplink_bytes']}) was not slower"
    assert abs(measured / predicted - 1.0) <= RATIO_TOLERANCE, (
        f"measured ratio {measured:.2f}, predicted {predicted:.2f} (tolerance {RATIO_TOLERANCE:.0%})")

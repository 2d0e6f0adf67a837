"""Percentiles, budget shares with their exact intervals, distribution fits and the traffic-model table, against
definitions computed independently here (binomial sums, order statistics, known samples)."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path
from typing import Any

import pytest

from splitbed.report.budgets import get_budget, load_budgets
from splitbed.sweep.distribution import BudgetShare, budget_shares, clopper_pearson, nearest_rank, percentiles
from splitbed.sweep.summary import summarise, write_csv
from splitbed.sweep.traffic_model import markdown, traffic_models
from splitbed.sweep.traffic_model import write_csv as write_traffic_csv
from splitbed.traffic.fit import fit


def test_nearest_rank_is_the_smallest_value_with_p_percent_at_or_below_it() -> None:
    rng = random.Random(2)
    for n in (1, 2, 7, 10, 99, 100, 101, 250):
        data = sorted(rng.uniform(0, 100) for _ in range(n))
        for p in (1, 50, 90, 95, 99, 100):
            value = nearest_rank(data, p)
            at_or_below = sum(1 for x in data if x <= value)
            assert at_or_below >= p / 100 * n - 1e-9  # covers p %
            assert all(sum(1 for x in data if x <= smaller) < p / 100 * n - 1e-9 for smaller in data if smaller < value)
    tail = percentiles([float(i) for i in range(1, 11)])  # 1..10
    assert (tail.p90, tail.p95, tail.p99, tail.maximum, tail.n) == (9.0, 10.0, 10.0, 10.0, 10)
    tail = percentiles(float(i) for i in range(1, 201))  # 1..200: p99 below the max needs n > 100
    assert (tail.p90, tail.p95, tail.p99, tail.maximum) == (180.0, 190.0, 198.0, 200.0)
    assert percentiles([None, float("nan")]).n == 0


def _binomial_tail(k: int, n: int, p: float, upper: bool) -> float:
    ks = range(k, n + 1) if upper else range(0, k + 1)
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in ks)


def test_clopper_pearson_bounds_solve_the_binomial_tails() -> None:
    for met, n in ((10, 10), (0, 10), (7, 10), (99, 100), (1, 3)):
        low, high = clopper_pearson(met, n)
        if met > 0:  # P(X >= met | low) = 2.5 %
            assert _binomial_tail(met, n, low, upper=True) == pytest.approx(0.025, abs=1e-6)
        else:
            assert low == 0.0
        if met < n:  # P(X <= met | high) = 2.5 %
            assert _binomial_tail(met, n, high, upper=False) == pytest.approx(0.025, abs=1e-6)
        else:
            assert high == 1.0
    assert clopper_pearson(10, 10)[0] == pytest.approx(0.025 ** (1 / 10))  # 0.6915: why 10/10 is not "99 %"
    assert clopper_pearson(367, 367)[0] < 0.99 <= clopper_pearson(368, 368)[0]  # docs/SWEEP.md, "Statistics"


def test_budget_shares_count_each_bound_of_each_budget() -> None:
    budget = get_budget("split-ai-image-recognition")
    records = [{"delivery_ms": d, "serialized_intermediate_bytes": b}
               for d, b in ((3.0, 100_000), (15.0, 270_000), (15.5, 270_001), (40.0, 1_000_000))]
    shares = {s.kind: s for s in budget_shares(records, [budget])}
    assert (shares["latency"].met, shares["latency"].n, shares["latency"].bound) == (2, 4, 15.0)
    assert (shares["payload"].met, shares["payload"].n) == (2, 4)
    assert shares["latency"].text().startswith("50 % of 4 uplink deliveries within 15 ms (95 % CI 6.8-93.2 %)")
    every = budget_shares(records, load_budgets().values())
    assert {(s.budget, s.kind) for s in every} >= {("imt2020-embb-dense-urban", "latency")}
    assert BudgetShare("b", "latency", "delivery_ms", 15.0, "ms", 0, 0).text() == \
        "no measurement of uplink deliveries within 15 ms"


def test_fit_reports_constants_moments_and_the_better_candidate() -> None:
    constant = fit([100_373.0] * 10)
    assert constant.distribution == "constant" and constant.sd == 0 and constant.describe() == "constant (100,373)"
    few = fit([1.0, 2.0, 3.0])
    assert few.distribution is None and "too few" in few.note and few.mean == 2.0 and few.sd == 1.0
    rng = random.Random(5)
    symmetric = [rng.gauss(100, 5) for _ in range(400)]
    chosen = fit(symmetric)
    assert chosen.mean == pytest.approx(sum(symmetric) / 400) and chosen.minimum == min(symmetric)
    assert chosen.distribution in ("truncated normal", "log-normal") and chosen.ks_d is not None and chosen.ks_d < 0.1
    skewed = fit([rng.lognormvariate(3, 0.8) for _ in range(400)])
    assert skewed.distribution == "log-normal" and skewed.params["sigma"] == pytest.approx(0.8, rel=0.1)
    assert skewed.params["mu"] == pytest.approx(3, abs=0.15)
    # constant but for one retransmission: no continuous candidate fits, and the table says so
    lumpy = fit([13_430_563.0] * 9 + [13_532_001.0])
    assert lumpy.rejected and lumpy.describe().startswith("no candidate fits (KS rejects the best, ")
    assert not chosen.rejected
    uniform = fit([rng.uniform(10, 20) for _ in range(400)])
    assert uniform.distribution == "truncated normal" and uniform.params["low"] == uniform.minimum


def _record(rep: int, delivery: float, interval: float | None, *, key: str = "p|m|x|tlv|none|i|w|b|r",
            traffic: bool = True) -> dict[str, Any]:
    burst = {"app_bytes": 1000, "wire_bytes": 1066, "interval_ms": interval, "duration_ms": 0.5 + rep / 10,
             "peak_mbit_1ms": 8.0 + rep, "peak_mbit_10ms": 0.8, "peak_mbit_100ms": 0.08}
    return {"record_type": "inference", "status": "ok", "tags": {"point": key}, "model": "m", "partition_name": "x",
            "partition_id": 1, "encoding": "tlv", "compression_profile": "none", "delivery_ms": delivery,
            "e2e_latency_ms": delivery + 10, "serialized_intermediate_bytes": 1000,
            "link": {"profile": {"name": "p", "uplink": {"rate_mbit": 10.0}}},
            "traffic": ({"burst": burst, "burst_at_edge": {"peak_mbit_1ms": 10.4}, "uplink": {"wire_bytes": 1100}}
                        if traffic else None)}


def test_summary_csv_has_tails_and_shares_and_the_traffic_table_its_rates(tmp_path: Path) -> None:
    records = [_record(i, 10.0 + i, 100.0 + i if i else None) for i in range(10)]
    records += [_record(i, 20.0, 50.0, key="q|m|x|tlv|none|i|w|b|r", traffic=False) for i in range(3)]
    from splitbed.report.budgets import load_budgets

    summaries = summarise(records, budgets=list(load_budgets().values()))
    path = write_csv(summaries, tmp_path / "summary.csv")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    row = rows[0]
    assert float(row["delivery_ms_p90"]) == 18.0 and float(row["delivery_ms_p99"]) == 19.0
    assert float(row["delivery_ms_max"]) == 19.0 and float(row["e2e_latency_ms_p95"]) == 29.0
    assert (row["kpi_split-ai-image-recognition_latency_met"], row["kpi_split-ai-image-recognition_latency_n"]) == \
        ("6", "10")  # 10..15 ms within 15
    assert float(row["kpi_split-ai-image-recognition_latency_ci_low"]) == pytest.approx(clopper_pearson(6, 10)[0])
    assert float(row["burst_interval_ms_median"]) == 105.0  # the nine with an interval: 101..109
    models = traffic_models(records, summaries)
    measured, unmeasured = models
    assert not unmeasured.measured and measured.bursts == 10
    assert measured.fits["burst_app_bytes"].distribution == "constant"
    assert measured.fits["interval_ms"].n == 9
    assert measured.mean_rate_mbit == pytest.approx(9 * 1066 * 8 / (sum(range(101, 110)) * 1e3))
    assert measured.peak_mbit == {1: 17.0, 10: 0.8, 100: 0.08} and measured.edge_peak_mbit_1ms == 10.4
    text = markdown(models)
    assert text.count("## ") == 1 and "| Burst size on the wire (Ethernet frames) (bytes) | mean 1,066, SD 0" in text
    with write_traffic_csv(models, tmp_path / "t.csv").open() as handle:
        [only] = list(csv.DictReader(handle))
    assert only["burst_app_bytes_distribution"] == "constant" and float(only["peak_mbit_1ms"]) == 17.0


def test_a_paced_workload_s_wait_and_frame_latency_are_summarised_when_records_carry_them() -> None:
    """The seam for paced workloads (not produced yet): a record's `workload` section is read, not required."""
    from splitbed.nodes.metrics import ORCHESTRATOR_FIELDS

    assert "workload" in ORCHESTRATOR_FIELDS
    records = [_record(i, 10.0, 33.3 if i else None) for i in range(6)]
    for i, record in enumerate(records):
        record["workload"] = {"kind": "periodic", "description": "periodic at 30 frames/s", "wait_ms": float(i),
                              "frame_latency_ms": 20.0 + i}
    [summary] = summarise(records)
    assert summary.median("frame_wait_ms") == 2.5 and summary.percentiles["frame_latency_ms"].maximum == 25.0
    [model] = traffic_models(records, [summary])
    assert model.workload == "periodic at 30 frames/s" and "Workload: periodic at 30 frames/s." in markdown([model])
    [plain] = summarise([_record(i, 10.0, None) for i in range(6)])
    assert plain.median("frame_wait_ms") is None


def test_dropped_frames_count_as_missed_latency_budgets_and_not_as_errors(tmp_path: Path) -> None:
    """A paced workload's dropped frame was never delivered: n counts it, met does not; it is no error and has no
    payload; good frames whose latency from capture passed the deadline are counted late."""
    budget = get_budget("split-ai-image-recognition")
    key = "p|m|x|tlv|none|i|w|b|r|workload=periodic:10/queue:1"
    records = [_record(i, 10.0 + 2 * i, None, key=key) for i in range(4)]  # 10, 12, 14, 16 ms: 3 within 15
    for i, record in enumerate(records):
        record["workload"] = {"spec": "periodic:10/queue:1", "frame_latency_ms": 50.0 + 40 * i,
                              "late": 50.0 + 40 * i > 100.0, "dropped": False}
    records += [{"record_type": "inference", "status": "dropped", "tags": {"point": key}, "model": "m",
                 "partition_name": "x", "encoding": "tlv", "workload": {"spec": "periodic:10/queue:1",
                                                                        "dropped": True}} for _ in range(2)]
    records.append({**_record(9, 1.0, None, key=key), "status": "error", "delivery_ms": None})
    [summary] = summarise(records, budgets=[budget])
    assert (summary.n, summary.n_errors, summary.frames_dropped, summary.frames_late) == (4, 1, 2, 2)
    shares = {s.kind: s for s in summary.budget_shares}
    assert (shares["latency"].met, shares["latency"].n, shares["latency"].dropped) == (3, 6, 2)
    assert (shares["payload"].met, shares["payload"].n) == (4, 4)
    assert shares["latency"].text().startswith("50 % of 6 uplink deliveries within 15 ms (95 % CI 11.8-88.2 %, "
                                               "2 of them dropped frames)")
    assert budget_shares(records[:4], [budget], dropped=2)[0].n == 6
    with pytest.raises(ValueError):
        budget_shares(records[:4], [budget], dropped=-1)
    with write_csv([summary], tmp_path / "s.csv").open() as handle:
        [row] = list(csv.DictReader(handle))
    assert (row["workload"], row["frames_dropped"], row["frames_late"]) == ("periodic:10/queue:1", "2", "2")
    assert row["kpi_split-ai-image-recognition_latency_n"] == "6"


def test_the_report_s_tail_table_of_a_paced_point_leads_with_the_latency_from_capture() -> None:
    from splitbed.report.kpi_tables import tail_tables

    budget = get_budget("split-ai-image-recognition")
    key = "p|m|x|tlv|none|i|w|b|r|workload=periodic:5/skip"
    records = [_record(i, 10.0, None, key=key) for i in range(3)]
    for i, record in enumerate(records):
        record["workload"] = {"spec": "periodic:5/skip", "frame_latency_ms": 100.0 + i, "late": False}
    records.append({"record_type": "inference", "status": "dropped", "tags": {"point": key}, "model": "m",
                    "partition_name": "x", "encoding": "tlv", "workload": {"spec": "periodic:5/skip"}})
    [table] = tail_tables(summarise(records, budgets=[budget]), budget)
    assert table.headers[2] == "Latency from capture (ms) median" and table.rows[0][1] == "3 (+1 dropped)"
    assert table.rows[0][2] == "101.0" and table.rows[0][-2].startswith("3/4 = 75 %")
    assert "counts it as a miss" in table.notes[-1]
    [plain] = tail_tables(summarise([_record(i, 10.0, None) for i in range(3)], budgets=[budget]), budget)
    assert plain.headers[2] == "End-to-end latency (ms) median" and plain.rows[0][1] == "3"

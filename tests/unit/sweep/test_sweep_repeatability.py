"""Repeatability aids of the sweep: warm-ups until the compute time settles (bounded), the coefficient of
variation per point, and outliers flagged with the cause their record shows (splitbed.sweep.outliers)."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any

import pytest

from splitbed.sweep import SweepSpec, SweepSpecError, read_records, run_sweep, summarise, write_csv
from splitbed.sweep.outliers import find_outliers
from splitbed.sweep.runner import compute_settled
from splitbed.sweep.store import is_measurement
from tests.unit.sweep.test_sweep_realisations import RecordingBed


class ComputeBed(RecordingBed):
    """Answers warm-ups with the compute times given, in turn, and measurements with 10 ms."""

    def __init__(self, profile: str, computes: list[float]) -> None:
        super().__init__(profile)
        self.computes = list(computes)

    def run(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        (record,) = super().run(job)
        compute = self.computes.pop(0) if job["tags"].get("warmup") else 10.0
        record.update(local_inference_ms=compute * 0.75, remote_inference_ms=compute * 0.25)
        return [record]


def _warmups(tmp_path: Path, computes: list[float], **spec: Any) -> list[dict[str, Any]]:
    spec = {"profiles": ("5g-split-ai",), "models": ("vgg16",), "partitions": ("fc1",), "repetitions": 2,
            "weights": "random:0", "baselines": (), **spec}
    run_sweep(SweepSpec(**spec), tmp_path, testbed_factory=lambda **o: ComputeBed(o["profile"], computes))
    return read_records(tmp_path).records


def test_warmups_go_on_until_two_agree_and_the_measurements_say_so(tmp_path: Path) -> None:
    records = _warmups(tmp_path / "a", [900.0, 120.0, 104.0, 101.0, 100.5, 100.0], warmup=1, warmup_max=5)
    assert sum(1 for r in records if not is_measurement(r)) == 4  # 104 -> 101 is within 5 %
    measured = [r for r in records if is_measurement(r)]
    assert all(r["tags"]["warmups"] == 4 and r["tags"]["warmup_settled"] for r in measured)


def test_warmups_are_bounded_and_an_unsettled_compute_is_recorded(tmp_path: Path) -> None:
    records = _warmups(tmp_path / "b", [100.0, 200.0, 100.0, 200.0, 100.0], warmup=1, warmup_max=3)
    assert sum(1 for r in records if not is_measurement(r)) == 3
    assert all(r["tags"]["warmup_settled"] is False for r in records if is_measurement(r))


def test_a_fixed_count_and_no_warmup_still_work(tmp_path: Path) -> None:
    fixed = _warmups(tmp_path / "c", [500.0, 100.0], warmup=2, warmup_max=2)
    assert sum(1 for r in fixed if not is_measurement(r)) == 2
    none = _warmups(tmp_path / "d", [], warmup=0, warmup_max=0)
    assert all(is_measurement(r) and r["tags"]["warmups"] == 0 for r in none)
    assert compute_settled([100.0, None]) is False and compute_settled([100.0, 104.9]) is True
    with pytest.raises(SweepSpecError, match="warmup_max"):
        SweepSpec(baselines=(), warmup=3, warmup_max=2)
    with pytest.raises(SweepSpecError, match="unknown role"):
        SweepSpec(baselines=(), cpus="gpu=0")


def _record(rep: int, e2e: float, *, steal: float = 0.0, wait: float = 1.0, gc_ms: float = 0.0,
            faults: int = 100) -> dict[str, Any]:
    side = {"host_cpu_stolen_ms": steal / 2, "host_cpu_wait_ms": wait / 2, "gc_ms": gc_ms / 2,
            "minor_faults": faults // 2, "major_faults": 0}
    return {"record_type": "inference", "status": "ok", "tags": {"point": "p", "rep": rep}, "model": "vgg16",
            "partition_name": "fc1", "partition_id": 20, "encoding": "tlv", "e2e_latency_ms": e2e,
            "local_resources": dict(side), "remote_resources": dict(side)}


def test_outliers_are_flagged_with_the_cause_their_record_shows() -> None:
    records = [_record(k, 100.0 + 0.2 * (k % 3)) for k in range(20)]
    records[2] = _record(2, 130.0, steal=20.0)
    records[4] = _record(4, 125.0, gc_ms=15.0)
    records[6] = _record(6, 118.0, faults=40_000)
    records[8] = _record(8, 121.0, wait=9.0)
    records[9] = _record(9, 140.0, steal=1.0)  # too little steal to explain 40 ms
    found = {o.repetition: o for o in find_outliers(records)}
    assert set(found) == {2, 4, 6, 8, 9}
    assert found[2].causes == ["steal 20.0 ms over the usual"]
    assert found[4].causes == ["GC pause 15.0 ms over the usual"]
    assert found[6].causes[0].startswith("page-fault storm (40000 faults")
    assert found[8].causes == ["CPU wait 8.0 ms over the usual"]
    assert found[9].causes == [] and "no cause in the record" in found[9].describe()
    assert [o.repetition for o in find_outliers(records)][0] == 9  # slowest first
    # within 5 % of the median nothing is an outlier, however tight the rest
    assert find_outliers([_record(k, 100.0) for k in range(9)] + [_record(9, 104.0)]) == []


def test_the_summary_reports_cv_and_outliers_per_point(tmp_path: Path) -> None:
    records = [_record(k, v) for k, v in enumerate([100.0, 101.0, 99.0, 100.5, 99.5, 100.0, 160.0])]
    (summary,) = summarise(records)
    values = [r["e2e_latency_ms"] for r in records]
    assert summary.e2e_cv_pct == pytest.approx(100 * statistics.stdev(values) / statistics.fmean(values))
    assert [o.repetition for o in summary.outliers] == [6]
    with write_csv([summary], tmp_path / "s.csv").open() as handle:
        (row,) = csv.DictReader(handle)
    assert float(row["e2e_cv_pct"]) == pytest.approx(summary.e2e_cv_pct)
    assert row["outliers"] == "1" and row["outlier_causes"].startswith("rep 6: 160.0 ms (+60.0)")
    assert summarise([_record(0, 5.0)])[0].e2e_cv_pct is None  # one value has no spread


def test_the_sweep_says_how_many_draws_its_random_points_rest_on() -> None:
    from splitbed.commands.sweep import draws_line, outlier_lines
    from splitbed.sweep.summary import PointSummary

    def point(n: int, draws: int | None) -> PointSummary:
        return PointSummary(key="k", profile="lte", backend="userspace", model="vgg16", partition="fc1",
                            partition_id=20, encoding="tlv", compression="none", image="i", weights="w",
                            random_weights=True, uplink_rate_mbit=48.097, uplink_delay_ms=16.3, n=n,
                            independent_draws=draws)

    assert draws_line([point(10, None)]) is None
    assert "rest on 10-10 independent draws" in (draws_line([point(10, 10)]) or "")
    assert "1 point(s) on fewer draws than repetitions" in (draws_line([point(10, 10), point(10, 1)]) or "")
    assert outlier_lines([point(10, 10)]) == []

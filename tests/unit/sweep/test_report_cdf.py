"""The report's latency CDF (splitbed.report.traffic_plots): under a paced workload a third panel draws the latency
from capture (the record's workload block: wait for the UE + end-to-end) with the frame deadline, a dropped frame
counting as one that never arrives; back-to-back points keep their two panels."""

from __future__ import annotations

from pathlib import Path

import pytest

from splitbed.report.budgets import get_budget
from splitbed.report.traffic_plots import cdf_curve, latency_cdfs
from splitbed.sweep.summary import summarise

PACED = "periodic:2/queue:1"  # a frame every 500 ms: the deadline


def _record(point: str, e2e: float, wait: float | None = None, status: str = "ok") -> dict:
    record = {"record_type": "inference", "status": status, "tags": {"point": point}, "model": "mobilenet_v2",
              "partition_name": "block_13_project_BN", "partition_id": 11, "encoding": "tlv",
              "compression_profile": "none", "image": "builtin:chelsea"}
    if status == "ok":
        record.update(e2e_latency_ms=e2e, delivery_ms=e2e / 4)
    if wait is not None or status == "dropped":
        record["workload"] = {"spec": PACED, "deadline_ms": 500.0, "dropped": status == "dropped",
                              "wait_ms": wait, "frame_latency_ms": None if wait is None else wait + e2e}
    return record


def _records() -> list[dict]:
    paced = "delayed|mobilenet_v2|block_13_project_BN|tlv|workload=" + PACED
    waits = [0.2, 310.0, 0.3, 95.0, 0.2, 640.0, 0.4, 12.0]
    frames = [_record(paced, 400.0 + 10 * i, wait) for i, wait in enumerate(waits)]
    frames += [_record(paced, 0.0, status="dropped") for _ in range(2)]
    single = [_record("delayed|mobilenet_v2|block_13_project_BN|tlv", 380.0 + i) for i in range(6)]
    return frames + single


def test_the_latency_from_capture_counts_dropped_frames_as_never_arriving() -> None:
    records = _records()
    paced = next(s for s in summarise(records) if s.workload == PACED)
    assert paced.frames_dropped == 2 and paced.n == 8
    mine = [r for r in records if r["tags"]["point"] == paced.key and r["status"] == "ok"]
    curve = cdf_curve(mine, paced, "frame_latency_ms")
    assert curve is not None
    xs, ys, label = curve
    assert xs == sorted(r["workload"]["wait_ms"] + r["e2e_latency_ms"] for r in mine)  # wait + e2e, per frame
    assert ys == pytest.approx([(i + 1) / 10 for i in range(8)])  # 8 of the 10 frames ever arrived
    assert label == "block_13_project_BN (n=8, +2 dropped)"
    e2e = cdf_curve(mine, paced, "e2e_latency_ms")
    assert e2e is not None and e2e[1][-1] == 1.0 and e2e[2] == "block_13_project_BN (n=8)"  # inferences that ran
    assert cdf_curve([], paced, "frame_latency_ms") is None


def test_a_paced_group_gets_the_capture_panel_with_its_deadline_and_a_single_one_does_not(tmp_path: Path) -> None:
    records = _records()
    plots = latency_cdfs(records, summarise(records), get_budget(), tmp_path)
    by_carriage = {plot.title.rsplit(", ", 1)[-1] if PACED in plot.title else "single": plot for plot in plots}
    assert set(by_carriage) == {PACED, "single"}
    paced_svg = (tmp_path / by_carriage[PACED].svg).read_text()
    single_svg = (tmp_path / by_carriage["single"].svg).read_text()
    for text in ("latency from capture", "frame deadline 500 ms", "+2 dropped", "budget: UL latency 15 ms"):
        assert text in paced_svg, text
    assert "latency from capture" not in single_svg and "budget: UL latency 15 ms" in single_svg
    assert "Right: latency from capture" in by_carriage[PACED].caption
    assert "latency from capture" not in by_carriage["single"].caption
    assert (tmp_path / by_carriage[PACED].path).stat().st_size > 0

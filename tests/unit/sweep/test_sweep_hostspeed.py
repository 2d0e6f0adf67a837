"""The host's speed during a point (splitbed.sweep.hostspeed): the sweep runs the real reference workload between
inferences, never during one, on the CPU plan's UE and edge CPUs, and the summary, the outlier causes and the
spread note read it."""

from __future__ import annotations

import csv
import math
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from splitbed.runtime.cpus import default_plan
from splitbed.sweep import SweepSpec, read_records, run_sweep, summarise, write_csv
from splitbed.sweep.hostspeed import AFTER_STREAM, BEFORE_STREAM, BURST_RUNS, is_burst
from splitbed.sweep.outliers import find_outliers
from splitbed.sweep.store import is_measurement
from tests.unit.sweep.test_sweep_realisations import RecordingBed


class StampingBed(RecordingBed):
    """Stamps each job's start and end on CLOCK_MONOTONIC as a node's `local_start` / `local_end`."""

    def run(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        start = time.monotonic_ns()
        (record,) = super().run(job)
        time.sleep(0.002)
        record["timestamps_ns"] = {"local_start": start, "local_end": time.monotonic_ns()}
        return [record]


def _sweep(tmp_path: Path, **spec: Any) -> list[dict[str, Any]]:
    options = {"profiles": ("5g-split-ai",), "models": ("vgg16",), "partitions": ("fc1",), "repetitions": 3,
               "warmup": 1, "warmup_max": 1, "weights": "random:0", "baselines": (), **spec}
    run_sweep(SweepSpec(**options), tmp_path, testbed_factory=lambda **o: StampingBed(o["profile"]))
    return [r for r in read_records(tmp_path).records if is_measurement(r)]


def _bursts(tmp_path: Path) -> list[dict[str, Any]]:
    return [r for r in read_records(tmp_path).records if is_burst(r)]


def _burst_runs_lie_around_the_stream(bursts: list[dict[str, Any]], records: list[dict[str, Any]]) -> None:
    """A burst before the stream ends before its first frame's job starts; one after starts after its last job."""
    plan = default_plan()
    first = min(r["timestamps_ns"]["local_start"] for r in records)
    last = max(r["timestamps_ns"]["local_end"] for r in records)
    for burst in bursts:
        block = burst["host_speed"]
        assert burst["tags"]["point"] == records[0]["tags"]["point"] and block["source"] == "measured"
        for role, cpus in (("edge", plan.edge), ("ue", plan.ue)):
            runs = block[role]["runs"]
            assert len(runs) == BURST_RUNS and block[role]["asked_cpus"] == list(cpus)
            for run in runs:
                assert run["cpus"] == list(cpus) and math.isfinite(run["cpu_ms"]) and run["cpu_ms"] > 0
                if block["when"] == BEFORE_STREAM:
                    assert run["end_ns"] <= first
                else:
                    assert block["when"] == AFTER_STREAM and run["start_ns"] >= last


def _never_during_an_inference(records: list[dict[str, Any]]) -> None:
    """Each run lies after the previous job ended and before this record's job started."""
    plan = default_plan()
    previous_end = 0
    for record in records:
        stamps = record["timestamps_ns"]
        block = record.get("host_speed")
        if block is not None:
            assert block["source"] == "measured" and "matrix product" in block["reference"]
            for role, cpus in (("edge", plan.edge), ("ue", plan.ue)):
                run = block[role]
                assert run["cpus"] == run["asked_cpus"] == list(cpus)
                assert previous_end <= run["start_ns"] < run["end_ns"] <= stamps["local_start"]
                assert math.isfinite(run["cpu_ms"]) and run["cpu_ms"] > 0
        previous_end = stamps["local_end"]


def test_back_to_back_every_measured_inference_has_a_run_right_before_it(tmp_path: Path) -> None:
    records = _sweep(tmp_path / "single")
    assert len(records) == 3 and all("host_speed" in r for r in records)
    _never_during_an_inference(records)
    [summary] = summarise(records)
    speed = summary.host_speed
    assert speed is not None and speed.n == 3
    for role in ("edge", "ue"):
        values = [r["host_speed"][role]["cpu_ms"] for r in records]
        assert speed.cv_pct[role] == pytest.approx(100 * statistics.stdev(values) / statistics.fmean(values))
        assert speed.median_ms[role] == pytest.approx(statistics.median(values))


def test_a_paced_point_runs_it_only_in_the_idle_time_before_a_frame(tmp_path: Path) -> None:
    records = _sweep(tmp_path / "paced", workloads=("periodic:2/queue:1",))  # 500 ms between frames, jobs of ~2 ms
    assert len(records) == 3 and any("host_speed" in r for r in records)
    _never_during_an_inference(records)
    assert all(r["host_speed"]["frame_delayed_ms"] >= 0 for r in records if "host_speed" in r)
    # frame 0 is due when the stream starts, so at most 2 of 3 frames had a run: fewer than a spread needs, and the
    # stream got a burst after it; none before (the warm-up left room between frames)
    between = sum(1 for r in records if "host_speed" in r)
    [burst] = _bursts(tmp_path / "paced")
    assert burst["host_speed"]["when"] == AFTER_STREAM and burst["tags"]["stream"] == 0
    _burst_runs_lie_around_the_stream([burst], records)
    [summary] = summarise(read_records(tmp_path / "paced").records)
    speed = summary.host_speed
    assert speed is not None and (speed.n, speed.between, speed.burst_runs) == (between + BURST_RUNS, between,
                                                                                BURST_RUNS)
    assert speed.source == f"{between} between the inferences; {BURST_RUNS} in burst after the stream"
    edge = [r["host_speed"]["edge"]["cpu_ms"] for r in records if "host_speed" in r]
    edge += [run["cpu_ms"] for run in burst["host_speed"]["edge"]["runs"]]
    assert speed.median_ms["edge"] == pytest.approx(statistics.median(edge))


def test_a_paced_point_with_no_room_between_frames_gets_bursts_before_and_after_its_stream(tmp_path: Path) -> None:
    """Frames every 16.7 ms, jobs of ~2 ms: no run fits between them, so the stream gets a burst right before its
    first frame (the warm-up showed no room) and one right after its last; no record carries a run, so no
    outlier can be put down to one, and the summary says where its runs came from."""
    out = tmp_path / "busy"
    records = _sweep(out, workloads=("periodic:60/queue:1",))
    assert len(records) == 3 and not any("host_speed" in r for r in records)
    bursts = _bursts(out)
    assert [b["host_speed"]["when"] for b in bursts] == [BEFORE_STREAM, AFTER_STREAM]
    _burst_runs_lie_around_the_stream(bursts, [r for r in records if r["status"] == "ok"])
    [summary] = summarise(read_records(out).records)
    speed = summary.host_speed
    assert speed is not None and (speed.n, speed.between, speed.burst_runs) == (2 * BURST_RUNS, 0, 2 * BURST_RUNS)
    assert speed.bursts == ("before", "after")
    assert speed.source == f"{2 * BURST_RUNS} in bursts before and after the stream"
    for role in ("edge", "ue"):
        values = [run["cpu_ms"] for b in bursts for run in b["host_speed"][role]["runs"]]
        assert speed.cv_pct[role] == pytest.approx(100 * statistics.stdev(values) / statistics.fmean(values))
    path = write_csv([summary], tmp_path / "summary.csv")
    with path.open() as handle:
        [row] = list(csv.DictReader(handle))
    assert (row["host_speed_n"], row["host_speed_between_n"], row["host_speed_burst_n"]) == (
        str(2 * BURST_RUNS), "0", str(2 * BURST_RUNS))


def test_switched_off_no_record_has_it(tmp_path: Path) -> None:
    records = _sweep(tmp_path / "off", host_speed_probe=False)
    assert records and not any("host_speed" in r for r in records)
    busy = _sweep(tmp_path / "off-paced", host_speed_probe=False, workloads=("periodic:60/queue:1",))
    assert busy and not any("host_speed" in r for r in busy) and not _bursts(tmp_path / "off-paced")
    path = write_csv(summarise(records), tmp_path / "summary.csv")
    with path.open() as handle:
        [row] = list(csv.DictReader(handle))
    assert row["host_speed_n"] == "0" and row["host_speed_edge_cv_pct"] == "" and row["host_speed_note"] == ""


def _record(rep: int, e2e: float, edge_ms: float, ue_ms: float = 30.0, *, tail_ms: float | None = None,
            head_ms: float = 40.0, stretched_head_ms: float | None = None) -> dict[str, Any]:
    """A good record with the fields the outlier rule reads, named as the node writes them: the tail call
    (`remote_inference_ms`; by default the rest of e2e after the head), the head as the host computed it
    (`local_inference_measured_ms`) and, for a UE stretched to a phone, the head's stretched time in
    `local_inference_ms` (docs/METRICS.md, "Devices")."""
    tail = e2e - head_ms - 5.0 if tail_ms is None else tail_ms
    head = head_ms if stretched_head_ms is None else stretched_head_ms
    mechanism = "none" if stretched_head_ms is None else "stretch"
    return {"record_type": "inference", "status": "ok", "tags": {"point": "p", "rep": rep}, "model": "vgg16",
            "partition_name": "block2_conv1", "partition_id": 4, "encoding": "tlv", "e2e_latency_ms": e2e,
            "local_inference_ms": head, "local_inference_measured_ms": head_ms, "remote_inference_ms": tail,
            "ue_device": {"name": "host" if mechanism == "none" else "phone-midrange", "mechanism": mechanism,
                          "measured_ms": None if mechanism == "none" else head_ms},
            "edge_device": {"name": "host", "mechanism": "none", "measured_ms": tail},
            "host_speed": {"edge": {"cpu_ms": edge_ms, "cpus": [1]}, "ue": {"cpu_ms": ue_ms, "cpus": [0]}}}


def test_the_summary_the_note_and_the_outlier_cause_read_the_runs(tmp_path: Path) -> None:
    # e2e follows the edge's reference: the host was slower on rep 9 (reference +30 %), and e2e CV is high
    edge = [30.0, 31.0, 29.0, 30.5, 29.5, 30.0, 31.5, 28.5, 30.0, 39.0]
    records = [_record(k, 20.0 * ms, ms) for k, ms in enumerate(edge)]
    [summary] = summarise(records)
    assert summary.host_speed is not None
    assert summary.host_speed.cv_pct["edge"] == pytest.approx(100 * statistics.stdev(edge) / statistics.fmean(edge))
    assert summary.host_speed.cv_pct["ue"] == 0.0
    assert summary.e2e_cv_pct is not None and summary.e2e_cv_pct > 3
    note = summary.host_speed_note
    assert note is not None and note.startswith(f"host speed varied {summary.host_speed.cv_pct['edge']:.1f} %")
    assert "edge's CPU" in note
    [outlier] = find_outliers(records)
    assert outlier.repetition == 9 and any(c.startswith("host speed: the reference workload took 30 % more CPU time "
                                                        "than usual on the edge's CPU") for c in outlier.causes)
    path = write_csv([summary], tmp_path / "summary.csv")
    with path.open() as handle:
        [row] = list(csv.DictReader(handle))
    assert row["host_speed_n"] == "10" and float(row["host_speed_edge_ms"]) == pytest.approx(30.0)
    assert float(row["host_speed_edge_cv_pct"]) == pytest.approx(summary.host_speed.cv_pct["edge"])
    assert row["host_speed_note"] == note


def test_no_note_and_no_cause_when_the_host_was_steady() -> None:
    records = [_record(k, 600.0 + (60.0 if k == 9 else k), 30.0 + 0.01 * k) for k in range(10)]
    [summary] = summarise(records)
    assert summary.host_speed_note is None  # e2e CV is high, the host's speed was not
    [outlier] = find_outliers(records)
    assert not outlier.causes and "no cause in the record" in outlier.describe()
    # a run 6 % slower than usual is within the reference's own scatter: no cause, however slow the inference
    within = [_record(k, 600.0 + (60.0 if k == 9 else k), 31.8 if k == 9 else 30.0 + 0.01 * k) for k in range(10)]
    [outlier] = find_outliers(within)
    assert outlier.repetition == 9 and not outlier.causes
    quiet = summarise([_record(k, 600.0 + 0.1 * k, 30.0 + k) for k in range(10)])[0]
    assert quiet.host_speed_note is None  # the host varied, but e2e stayed within the target


def test_the_sweep_prints_the_range_the_spread_line_and_the_points_without_runs() -> None:
    from splitbed.commands.sweep import host_speed_line, outlier_lines

    edge = [30.0, 31.0, 29.0, 30.5, 29.5, 30.0, 31.5, 28.5, 30.0, 39.0]
    unsteady = summarise([_record(k, 20.0 * ms, ms) for k, ms in enumerate(edge)])[0]
    bare = [{**_record(k, 600.0, 30.0), "tags": {"point": "q", "rep": k}} for k in range(6)]
    for record in bare:
        del record["host_speed"]
    without = summarise(bare)[0]
    line = host_speed_line([unsteady, without]) or ""
    assert line.startswith("Host speed, measured: a fixed reference workload (float32 512x512 matrix product x 10")
    assert f"edge's CPU CV {unsteady.host_speed.cv_pct['edge']:.1f}-" in line  # type: ignore[union-attr]
    assert line.endswith("none in 1 point(s): measured without it")
    assert host_speed_line([without]) is None
    spread = [x for x in outlier_lines([unsteady]) if x.startswith("spread ")]
    assert spread == [f"spread {unsteady.profile}/vgg16/block2_conv1/{unsteady.carriage}: {unsteady.host_speed_note}"]


def _causes(records: list[dict[str, Any]]) -> list[str]:
    [outlier] = find_outliers(records)
    assert outlier.repetition == 9
    return [c for c in outlier.causes if c.startswith("host speed")]


def test_a_stretched_ues_slower_reference_is_no_cause_for_a_delay_its_head_cannot_make() -> None:
    """fc1 with the UE stretched to a phone (docs/DEVICES.md): e2e ~570 ms is mostly the stretched head (~470 ms in
    `local_inference_ms`), the host computes the head in ~40 ms (`local_inference_measured_ms`). Rep 9 is 60 ms
    slower (its uplink, say) while the UE's reference ran 29 % slower: the old rule (0.29 x 570 ms of e2e = 165 ms,
    over a quarter of 60) named the host's speed; 29 % of 40 ms of host compute is 11.6 ms, under 15: no cause."""
    ue = [30.0, 30.5, 29.5, 30.2, 29.8, 30.0, 30.4, 29.6, 30.1, 38.7]
    records = [_record(k, 570.0 + 0.1 * k + (60.0 if k == 9 else 0.0), 30.0, ms, tail_ms=8.0, head_ms=40.0,
                       stretched_head_ms=470.0) for k, ms in enumerate(ue)]
    assert _causes(records) == []
    # the same point with a UE on the host's own speed, whose head IS the ~470 ms: the cause is the host's speed
    host = [_record(k, 570.0 + 0.1 * k + (60.0 if k == 9 else 0.0), 30.0, ms, tail_ms=8.0, head_ms=470.0)
            for k, ms in enumerate(ue)]
    [cause] = _causes(host)
    assert cause.startswith("host speed: the reference workload took 29 % more CPU time than usual on the UE's CPU")
    assert "of its usual 470.0 ms head" in cause


def test_an_edge_reference_that_stood_out_is_named_where_the_tail_is_the_compute() -> None:
    """vgg16 at block2_conv1 on the host: the edge's tail is most of e2e (~450 of 600 ms). The edge's reference
    ran 30 % slower before rep 9, which is 120 ms slower: 30 % of 450 ms = 135 ms, over a quarter of 120: both the
    old rule and this one name it. A slower UE reference before a tail-bound outlier is not enough: 30 % of its
    40 ms head is 12 ms, under 30."""
    edge = [30.0, 31.0, 29.0, 30.5, 29.5, 30.0, 31.5, 28.5, 30.0, 39.0]
    records = [_record(k, 600.0 + 0.1 * k + (120.0 if k == 9 else 0.0), ms, tail_ms=450.0 + (120.0 if k == 9 else 0),
                       head_ms=40.0) for k, ms in enumerate(edge)]
    [cause] = _causes(records)
    assert "30 % more CPU time than usual on the edge's CPU" in cause and "of its usual 450.0 ms tail" in cause
    ue_only = [_record(k, 600.0 + 0.1 * k + (120.0 if k == 9 else 0.0), 30.0 + 0.01 * k, ms, tail_ms=450.0,
                       head_ms=40.0) for k, ms in enumerate(edge)]
    assert _causes(ue_only) == []


def test_records_before_devices_fall_back_to_the_head_call() -> None:
    """A record without `local_inference_measured_ms` or device blocks (written before schema 2.5) is read by its
    `local_inference_ms`, the head call."""
    ue = [30.0, 30.5, 29.5, 30.2, 29.8, 30.0, 30.4, 29.6, 30.1, 39.0]
    records = []
    for k, ms in enumerate(ue):
        record = _record(k, 570.0 + 0.1 * k + (60.0 if k == 9 else 0.0), 30.0, ms, tail_ms=8.0, head_ms=470.0)
        for key in ("local_inference_measured_ms", "ue_device", "edge_device"):
            del record[key]
        records.append(record)
    [cause] = _causes(records)
    assert "on the UE's CPU" in cause and "of its usual 470.0 ms head" in cause

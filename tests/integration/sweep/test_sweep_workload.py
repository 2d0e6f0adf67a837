"""Paced workloads in a real sweep (splitbed.sweep.pacing): MobileNetV2 on the shared testbed, over a link whose
30 ms each way make every inference take at least 60 ms (the emulated delay, whatever the CPU does).

- `periodic:2/queue:1`: a frame every 500 ms; the UE keeps up (a drop would need two frames to arrive during one
  inference, i.e. an inference of about 1 s), so no frame is dropped and the capture times are 500 ms apart;
- `periodic:60/skip`: a frame every 16.7 ms; frame 0 occupies the UE for at least 60 ms, so frames 1-3 (captured
  by 50 ms) provably arrive while it is busy and are dropped.

Both points are captured (the sweep's default): the frames that ran get their traffic figures, the dropped none.

- `poisson:10/queue:3` on 5g-split-ai, two points of 4 frames, swept twice: the capture times are the exponential
  draws the records name (generator state from the point key), each point draws its own, and the second sweep of
  the same spec draws the same arrival times.

Only invariants with wide margins: no timing figure is held to a tight bound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from splitbed.nodes.metrics import check_record
from splitbed.report.traffic_plots import cdf_curve
from splitbed.sweep import read_records, run_sweep
from splitbed.sweep.pacing import stream_seed
from splitbed.sweep.summary import summarise
from splitbed.workload import parse
from tests.integration.sweep.conftest import SharedBed, sweep_spec

pytestmark = pytest.mark.root

DELAYED = """name = "delayed-30ms"
description = "30 ms each way, no shaping: every inference takes at least one 60 ms round trip"
source = "tests/integration/sweep/test_sweep_workload.py"
[uplink]
delay_ms = 30.0
[downlink]
delay_ms = 30.0
"""
KEEPS_UP, OVERLOADED = "periodic:2/queue:1", "periodic:60/skip"


@pytest.fixture(scope="module")
def paced_sweep(shared_bed: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("paced")
    profile = out / "delayed-30ms.toml"
    profile.write_text(DELAYED)
    spec = sweep_spec(profiles=(str(profile),), partitions=("block_13_project_BN",), encodings=("tlv",),
                      workloads=(KEEPS_UP, OVERLOADED))
    try:
        outcome = run_sweep(spec, out, testbed_factory=SharedBed(shared_bed).factory)
    finally:
        shared_bed.update_link("5g-split-ai")
    assert not outcome.incomplete and outcome.errors == 0, outcome
    return out


def _frames(directory: Path, workload: str) -> dict[int, dict[str, Any]]:
    records = [r for r in read_records(directory).records
               if r.get("record_type") == "inference" and not r["tags"].get("warmup")
               and r["tags"]["point"].endswith(f"|workload={workload}")]
    return {r["workload"]["frame"]: r for r in records}


def test_a_ue_that_keeps_up_runs_every_frame_at_its_capture_time(paced_sweep: Path) -> None:
    frames = _frames(paced_sweep, KEEPS_UP)
    assert sorted(frames) == list(range(6)) and all(r["status"] == "ok" for r in frames.values())
    captures = [frames[k]["workload"]["capture_ns"] for k in range(6)]
    gaps_ms = [(b - a) / 1e6 for a, b in zip(captures, captures[1:], strict=False)]
    assert all(400 < gap < 600 for gap in gaps_ms), gaps_ms  # 1/FPS = 500 ms apart
    for record in frames.values():
        block = record["workload"]
        assert block["clock"] == "node" and block["dropped"] is False and block["wait_ms"] >= 0
        assert block["frame_latency_ms"] >= record["e2e_latency_ms"] >= 60  # latency from capture includes the wait
        assert block["frame_latency_ms"] == pytest.approx(block["wait_ms"] + record["e2e_latency_ms"], abs=1e-3)
        assert block["late"] == (block["frame_latency_ms"] > 500)
        speed = record.get("host_speed")  # the host-speed reference, in the idle time before the frame only
        if speed is not None:
            assert speed["edge"]["end_ns"] <= record["timestamps_ns"]["local_start"]
            assert speed["ue"]["end_ns"] <= record["timestamps_ns"]["local_start"]
            assert speed["frame_delayed_ms"] >= 0


def test_an_overloaded_ue_drops_the_frames_its_policy_drops(paced_sweep: Path) -> None:
    frames = _frames(paced_sweep, OVERLOADED)
    assert sorted(frames) == list(range(6))  # every frame has a record: run or dropped
    assert frames[0]["status"] == "ok" and frames[0]["e2e_latency_ms"] >= 60
    assert all(frames[k]["status"] == "dropped" for k in (1, 2, 3))  # captured by 50 ms, frame 0 still running
    for record in frames.values():
        check_record(record)  # the node's fields (+ workload, traffic), or exactly a dropped frame's
        assert record["workload"]["dropped"] == (record["status"] == "dropped")
        if record["status"] == "ok":  # with /skip nothing waits in a queue
            assert record["workload"]["queued"] is False and record["workload"]["late"] is True
            assert record["traffic"]["burst"]["app_bytes"] == record["uplink_bytes"]  # the capture joined it
        else:  # a dropped frame sent nothing: no figures, no traffic section
            assert "traffic" not in record and "e2e_latency_ms" not in record
    by_workload = {s.workload: s for s in summarise(read_records(paced_sweep).records)}
    dropped = sum(1 for r in frames.values() if r["status"] == "dropped")
    assert by_workload[OVERLOADED].frames_dropped == dropped >= 3 and by_workload[OVERLOADED].n_errors == 0
    assert by_workload[OVERLOADED].n == 6 - dropped
    assert by_workload[KEEPS_UP].frames_dropped == 0 and by_workload[KEEPS_UP].n == 6


def test_an_overloaded_point_gets_host_speed_bursts_around_its_stream(paced_sweep: Path) -> None:
    """At 60 frames/s no run of the host-speed reference fits between frames (each inference takes >= 60 ms), so
    the stream got a burst before its first frame (the warm-up left no room) and one after its last (no frame had
    a run): real runs on the CPU plan's CPUs, none while a frame ran, and the summary says they came from bursts.
    The point that keeps up got no burst before its stream (its warm-up left room between frames)."""
    from splitbed.sweep.hostspeed import AFTER_STREAM, BEFORE_STREAM, BURST_RUNS, is_burst

    records = read_records(paced_sweep).records
    frames = _frames(paced_sweep, OVERLOADED)
    key = frames[0]["tags"]["point"]
    assert not any("host_speed" in r for r in frames.values())
    bursts = [r for r in records if is_burst(r) and r["tags"]["point"] == key]
    assert [b["host_speed"]["when"] for b in bursts] == [BEFORE_STREAM, AFTER_STREAM]
    warmup_end = max(r["timestamps_ns"]["local_end"] for r in records if r.get("record_type") == "inference"
                     and r["tags"]["point"] == key and r["tags"].get("warmup"))
    ran = [r for r in frames.values() if r["status"] == "ok"]
    first_start = min(r["timestamps_ns"]["local_start"] for r in ran)
    last_end = max(r["timestamps_ns"]["local_end"] for r in ran)
    cpus = ran[0]["link"]["cpus"]
    for burst, (lower, upper) in zip(bursts, ((warmup_end, first_start), (last_end, None)), strict=True):
        assert burst["host"] == ran[0]["host"]  # the machine, as the point's records name it
        for role in ("edge", "ue"):
            runs = burst["host_speed"][role]["runs"]
            assert len(runs) == BURST_RUNS
            for run in runs:
                assert run["cpus"] == cpus[role] and 0 < run["cpu_ms"] <= run["wall_ms"] * 1.05 + 1
                assert lower <= run["start_ns"] < run["end_ns"] and (upper is None or run["end_ns"] <= upper)
    by_workload = {s.workload: s for s in summarise(records)}
    speed = by_workload[OVERLOADED].host_speed
    assert speed is not None and (speed.n, speed.between, speed.burst_runs) == (2 * BURST_RUNS, 0, 2 * BURST_RUNS)
    assert speed.source == f"{2 * BURST_RUNS} in bursts before and after the stream"
    assert speed.cv_pct["edge"] is not None and speed.cv_pct["ue"] is not None
    keeps_up = _frames(paced_sweep, KEEPS_UP)[0]["tags"]["point"]
    assert not any(is_burst(r) and r["tags"]["point"] == keeps_up and r["host_speed"]["when"] == BEFORE_STREAM
                   for r in records)


# --- Poisson arrivals: the capture times are the recorded, reproducible draws --------------------------------------
POISSON = "poisson:10/queue:3"  # mean 100 ms between frames; 3 may wait, so none of the 4 frames is dropped
POISSON_FRAMES = 4


@pytest.fixture(scope="module")
def poisson_runs(shared_bed: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same two-point Poisson sweep run twice, into two directories (no captures, no host-speed reference: the
    arrivals are the point)."""
    # no host-speed reference: with no warm-up each 4-frame stream would get bursts around it (about 0.2-0.5 s
    # each, 8 in all); the 60 frames/s point above tests them
    spec = sweep_spec(encodings=("tlv",), workloads=(POISSON,), repetitions=POISSON_FRAMES, capture=False,
                      warmup=0, warmup_max=0, host_speed_probe=False)
    runs = []
    for name in ("first", "again"):
        out = tmp_path_factory.mktemp(f"poisson-{name}")
        outcome = run_sweep(spec, out, testbed_factory=SharedBed(shared_bed).factory)
        assert not outcome.incomplete and outcome.errors == 0, outcome
        runs.append(out)
    return runs[0], runs[1]


def _poisson_points(directory: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """Point key -> frame -> its record (ran or dropped)."""
    points: dict[str, dict[int, dict[str, Any]]] = {}
    for record in read_records(directory).records:
        if record.get("record_type") == "inference" and not record["tags"].get("warmup"):
            assert record["tags"]["point"].endswith(f"|workload={POISSON}")
            points.setdefault(record["tags"]["point"], {})[record["workload"]["frame"]] = record
    return points


def test_poisson_capture_times_are_the_drawn_arrivals_the_records_name(poisson_runs: tuple[Path, Path]) -> None:
    points = _poisson_points(poisson_runs[0])
    assert len(points) == 2
    for key, frames in points.items():
        assert sorted(frames) == list(range(POISSON_FRAMES))  # every frame has a record: run or dropped
        blocks = [frames[k]["workload"] for k in range(POISSON_FRAMES)]
        assert {(b["kind"], b["rate_hz"], b["stream"], b["seed"]) for b in blocks} == {
            ("poisson", parse(POISSON).rate_hz, 0, stream_seed(key, 0))}  # one stream, drawn from the point key
        arrivals = parse(POISSON).arrivals(POISSON_FRAMES, stream_seed(key, 0))
        assert [b["arrival_s"] for b in blocks] == arrivals
        offsets = [b["capture_ns"] - blocks[0]["capture_ns"] for b in blocks]
        assert offsets == [round(a * 1e9) for a in arrivals]  # the capture clock follows the draws to the ns
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
        assert all(g > 0 for g in gaps) and len(set(gaps)) == len(gaps)  # exponential draws, not a fixed period
        for record in frames.values():
            block = record["workload"]
            assert record["status"] == "ok" and block["dropped"] is False and block["wait_ms"] >= 0
            if block["clock"] == "node":  # the UE started the frame no earlier than its capture
                assert record["timestamps_ns"]["local_start"] >= block["capture_ns"]
            assert block["frame_latency_ms"] == pytest.approx(block["wait_ms"] + record["e2e_latency_ms"], abs=1e-3)


def test_poisson_points_draw_apart_and_a_rerun_draws_the_same(poisson_runs: tuple[Path, Path]) -> None:
    first, again = (_poisson_points(run) for run in poisson_runs)
    assert set(first) == set(again)
    seeds = {key: frames[0]["workload"]["seed"] for key, frames in first.items()}
    assert len(set(seeds.values())) == 2  # each point its own draws
    [one, other] = [[frames[k]["workload"]["arrival_s"] for k in range(POISSON_FRAMES)] for frames in first.values()]
    assert one[1:] != other[1:]
    for key, frames in first.items():
        for k, record in frames.items():
            rerun = again[key][k]["workload"]
            assert (rerun["seed"], rerun["arrival_s"]) == (record["workload"]["seed"], record["workload"]["arrival_s"])
            assert rerun["capture_ns"] - again[key][0]["workload"]["capture_ns"] == \
                record["workload"]["capture_ns"] - frames[0]["workload"]["capture_ns"]
        assert again[key][0]["workload"]["capture_ns"] > frames[POISSON_FRAMES - 1]["workload"]["capture_ns"]


def test_the_reports_capture_cdf_of_real_poisson_frames(poisson_runs: tuple[Path, Path]) -> None:
    """The report's latency-from-capture curve (splitbed.report.traffic_plots) over the records just measured:
    each frame at its wait + e2e (the unit tests hold the dropped frames' place in it)."""
    records = read_records(poisson_runs[0]).records
    for summary in summarise(records):
        mine = [r for r in records if r["tags"]["point"] == summary.key and r.get("status") == "ok"
                and not r["tags"].get("warmup")]
        curve = cdf_curve(mine, summary, "frame_latency_ms")
        assert curve is not None
        xs, ys, _ = curve
        assert xs == sorted(r["workload"]["frame_latency_ms"] for r in mine)
        assert ys == pytest.approx([(i + 1) / POISSON_FRAMES for i in range(POISSON_FRAMES)])
        assert summary.n == POISSON_FRAMES and summary.frames_dropped == 0

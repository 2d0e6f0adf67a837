"""The wall-time estimate's arithmetic (splitbed.sweep.estimate) with given per-partition timings: every point
costs a per-point overhead + (repetitions + warm-up) x (predicted e2e + a per-inference overhead), every profile
one testbed start, and the prediction is the advisor's for that point's link."""

from __future__ import annotations

import pytest

from splitbed.latency import ModelTiming, PartitionTiming, predict
from splitbed.linkmodel import LinkModel
from splitbed.sweep.estimate import (
    HOST_SPEED_COST_MS,
    OVERHEAD_PER_INFERENCE_MS,
    OVERHEAD_PER_POINT_S,
    TESTBED_START_S,
    describe,
    estimate,
)
from splitbed.sweep.hostspeed import BURST_COST_MS
from splitbed.sweep.plan import SweepSpec


def _timing(encoding: str) -> ModelTiming:
    parts = (PartitionTiming("block_3_project_BN", 5, 10.0, 20.0, 0.1, 0.1, 100_352, 100_373, 20_000, 0.4, 0.6),
             PartitionTiming("out_relu", 13, 25.0, 2.0, 0.1, 0.1, 250_880, 250_901, 20_000, 0.95, 0.05))
    return ModelTiming("mobilenet_v2", encoding, "none", "builtin:chelsea", {}, 3, 1.0, 0.5, parts)


def test_estimate_adds_up_predicted_points_overheads_and_testbed_starts() -> None:
    spec = SweepSpec(profiles=("lte", "5g-split-ai"), models=("mobilenet_v2",),
                     partitions=("block_3_project_BN", "out_relu"), repetitions=4, warmup=1, ue_devices=("host",),
                     baselines=())
    timings = {"mobilenet_v2": {("tlv", "none"): _timing("tlv")}}
    result = estimate(spec, timings=timings)
    assert (result.points, result.inferences) == (4, 20)
    expected = 0.0
    for profile in ("lte", "5g-split-ai"):
        predictions = predict(timings["mobilenet_v2"][("tlv", "none")], LinkModel.from_profile(profile))
        per_profile = sum(OVERHEAD_PER_POINT_S + 5 * (p.e2e_ms + OVERHEAD_PER_INFERENCE_MS) / 1000
                          + 4 * HOST_SPEED_COST_MS / 1000  # the host-speed reference before each measured one
                          for p in predictions)
        per_profile += TESTBED_START_S
        assert result.by_profile_s[profile] == pytest.approx(per_profile)
        expected += per_profile
    assert result.total_s == pytest.approx(expected)
    assert result.slowest[0][1].startswith("lte|mobilenet_v2|out_relu|")  # 251 kB over 46 Mbit/s
    lines = describe(result)
    assert lines[0].startswith("4 points, 20 inferences: estimated ")
    assert any("no loss" in line for line in lines) and any("host-speed" in line for line in lines)
    off = estimate(SweepSpec(**{**spec.to_dict(), "host_speed_probe": False}), timings=timings)
    assert result.total_s - off.total_s == pytest.approx(4 * 4 * HOST_SPEED_COST_MS / 1000)


def test_estimate_predicts_each_point_on_its_devices() -> None:
    from splitbed.devices import load

    timings = {"mobilenet_v2": {("tlv", "none"): _timing("tlv")}}
    options = {"profiles": ("lte",), "models": ("mobilenet_v2",), "partitions": ("out_relu",), "repetitions": 1,
               "warmup": 0, "baselines": ()}
    host = estimate(SweepSpec(**options, ue_devices=("host",)), timings=timings)
    phone = estimate(SweepSpec(**options), timings=timings)  # default UE: phone-midrange
    link = LinkModel.from_profile("lte")
    timing = timings["mobilenet_v2"][("tlv", "none")]
    on_host = next(p for p in predict(timing, link) if p.partition == "out_relu")
    on_phone = next(p for p in predict(timing, link, ue_device=load("phone-midrange")) if p.partition == "out_relu")
    assert on_phone.head_ms == pytest.approx(26.08 * 0.95) and on_host.head_ms == 25.0
    assert phone.total_s - host.total_s == pytest.approx((on_phone.e2e_ms - on_host.e2e_ms) / 1000)


def test_a_paced_point_takes_at_least_its_frames_over_its_rate() -> None:
    """R frames at F frames/s: the last is captured (R - 1) / F s after the first, then served; a camera faster
    than the UE is bounded by the UE (frames dropped take no time)."""
    timings = {"mobilenet_v2": {("tlv", "none"): _timing("tlv")}}
    options = {"profiles": ("lte",), "models": ("mobilenet_v2",), "partitions": ("out_relu",), "repetitions": 10,
               "warmup": 1, "baselines": (), "ue_devices": ("host",)}
    single = estimate(SweepSpec(**options), timings=timings)
    slow = estimate(SweepSpec(**options, workloads=("periodic:1",)), timings=timings)
    fast = estimate(SweepSpec(**options, workloads=("periodic:60/skip",)), timings=timings)
    # warm-up + 10 frames back to back, each measured one after a host-speed run (a paced point runs it in idle time)
    frame_s = (single.total_s - TESTBED_START_S - OVERHEAD_PER_POINT_S - 10 * HOST_SPEED_COST_MS / 1000) / 11
    assert slow.total_s == pytest.approx(TESTBED_START_S + OVERHEAD_PER_POINT_S + frame_s + 9.0 + frame_s)
    assert slow.total_s >= TESTBED_START_S + 9.0 and any("paced" in note for note in slow.notes)
    assert fast.total_s <= single.total_s  # at 60 frames/s the UE drops what it cannot serve
    # the host-speed reference: none at 1 frame/s (idle time between frames), a burst before and after the stream
    # at 60 frames/s (no room between them)
    off = {"host_speed_probe": False}
    assert slow.total_s == pytest.approx(estimate(SweepSpec(**options, workloads=("periodic:1",), **off),
                                                  timings=timings).total_s)
    assert fast.total_s - estimate(SweepSpec(**options, workloads=("periodic:60/skip",), **off),
                                   timings=timings).total_s == pytest.approx(2 * BURST_COST_MS / 1000)
    assert any("before and after a stream" in note for note in fast.notes)

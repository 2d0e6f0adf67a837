"""Emulation arithmetic and invariants: plans pick stretch or model from the calibration, a stretch never ends
before its target and says why when it ends late, and records get modelled times and model-based energy."""

from __future__ import annotations

import time

import pytest

from splitbed.devices import load
from splitbed.devices.emulation import (
    MODEL,
    NONE,
    STRETCH,
    WALL_CLOCK,
    WALL_MIN_SHARE,
    WALL_ROUNDS,
    DeviceEmulator,
    Outcome,
    Plan,
)
from splitbed.devices.figures import (
    check_device_figures,
    complete,
    device_figures,
    modelled_e2e_ms,
    ue_energy,
    with_run,
)


def sleeper(ms: float):
    return lambda: time.sleep(ms / 1000)


def burner(ms: float):
    """A call that works (CPU time) for about `ms`: shares are measured in process CPU time."""
    def burn() -> None:
        end = time.process_time_ns() + int(ms * 1e6)
        while time.process_time_ns() < end:
            pass
    return burn


def calibrated(device: str, side: str, full_ms: float) -> DeviceEmulator:
    emulator = DeviceEmulator(load(device), side)
    emulator.calibrate("mobilenet_v2", sleeper(full_ms), sleeper(0.1))
    return emulator


def test_a_wall_time_share_is_the_ratio_of_the_fastest_calls() -> None:
    """ONNX Runtime's CPU time is not the call's own: its share is taken by wall time. Sleeping calls use no CPU,
    so only the wall-time share sees that the sub-model takes a quarter of the model."""
    emulator = calibrated("phone-midrange", "ue", 8.0)
    plan = emulator.plan("mobilenet_v2", sleeper(2.0), sleeper(8.0), WALL_CLOCK)
    assert plan.share_method == WALL_MIN_SHARE and len(plan.round_shares) == WALL_ROUNDS
    assert plan.share == pytest.approx(0.25, abs=0.05)  # sleep overshoots by tens of microseconds, never less
    assert plan.mechanism == STRETCH and plan.device_ms == pytest.approx(26.08 * plan.share)


def test_host_plans_nothing() -> None:
    emulator = DeviceEmulator(load("host"), "ue")
    assert not emulator.active and emulator.calibrate("vgg16", sleeper(1)) is None
    plan = emulator.plan("vgg16", sleeper(1), sleeper(2))
    assert plan.mechanism == NONE and plan.device_ms is None
    result, outcome = DeviceEmulator.run(plan, lambda: 42)
    assert result == 42 and outcome.emulated_ms is None and outcome.on_time


def test_a_slower_device_is_stretched_to_its_share() -> None:
    emulator = calibrated("phone-midrange", "ue", 2.0)   # the host: ~2 ms for the whole model, the phone 26 ms
    plan = emulator.plan("mobilenet_v2", burner(1.0), burner(2.0))
    assert plan.mechanism == STRETCH and plan.host_part_ms < plan.host_full_ms
    assert len(plan.round_shares) == 7
    assert plan.share == pytest.approx(sorted(plan.round_shares)[3], abs=1e-4)  # the median round
    assert 0.3 < plan.share < 0.7 and plan.device_ms == pytest.approx(26.08 * plan.share)  # ~1 ms of 2 ms work
    _, outcome = DeviceEmulator.run(plan, sleeper(0.2))
    assert outcome.emulated_ms >= plan.device_ms  # never early: the wait ends at or after the target instant
    assert outcome.late_ms >= 0 and outcome.measured_ms < outcome.emulated_ms


def test_a_stretch_whose_own_compute_overruns_says_so() -> None:
    plan = Plan(STRETCH, "mobilenet_v2", 26.08, None, 1.0, 10.0, 0.1, 2.0)
    _, outcome = DeviceEmulator.run(plan, sleeper(20))
    assert outcome.late_cause == "host_compute_slower_than_device" and outcome.late_ms >= 15


def test_a_share_is_clamped_to_the_whole_model() -> None:
    emulator = calibrated("phone-midrange", "ue", 2.0)
    plan = emulator.plan("mobilenet_v2", burner(3.0), burner(2.0))  # a "head" costlier than its model: noise
    assert plan.raw_share > 1 and plan.share == 1.0 and plan.device_ms == 26.08


def test_a_faster_device_is_modelled_and_not_stretched() -> None:
    emulator = calibrated("edge-l4", "edge", 5.0)
    plan = emulator.plan("mobilenet_v2", burner(2.0), burner(5.0))
    assert plan.mechanism == MODEL and plan.device_ms == pytest.approx(0.027696 * plan.share)
    _, outcome = DeviceEmulator.run(plan, sleeper(1.0))
    assert outcome.emulated_ms is None and outcome.measured_ms >= 1.0


def test_a_device_block_round_trips_the_wire_check() -> None:
    emulator = calibrated("edge-l4", "edge", 5.0)
    plan = emulator.plan("mobilenet_v2", sleeper(2.0), sleeper(5.0))
    block = device_figures(emulator.profile, "edge", plan, Outcome(3.0))
    assert check_device_figures(dict(block)) == block
    assert block["latency_derived"]["from_model"] == "resnet50" and block["compute_power_w"] == 72.0
    with pytest.raises(ValueError, match="exactly the keys"):
        check_device_figures({"name": "x"})
    with pytest.raises(ValueError, match="mechanism"):
        check_device_figures(dict(block, mechanism="magic"))


def test_the_other_nodes_block_is_sent_once_and_each_run_joins_it() -> None:
    emulator = calibrated("edge-l4", "edge", 5.0)
    plan = emulator.plan("mobilenet_v2", burner(2.0), burner(5.0))
    static = dict(device_figures(emulator.profile, "edge", plan, None))  # what PREPARED carries
    run = {"measured_ms": 3.0, "emulated_ms": None, "late_ms": None, "late_cause": None}  # what a RESULT carries
    joined = with_run(static, run, 3.1)
    assert joined["measured_ms"] == 3.0 and joined["device_ms"] == plan.device_ms
    with pytest.raises(ValueError, match="sent no run figures"):
        with_run(static, None, 3.1)
    with pytest.raises(ValueError, match="exactly the keys"):
        with_run(static, {"measured_ms": 3.0}, 3.1)
    with pytest.raises(ValueError, match="late_cause"):
        with_run(static, dict(run, late_cause="gremlins"), 3.1)
    host = DeviceEmulator(load("host"), "edge")
    host_static = dict(device_figures(host.profile, "edge", host.plan("mobilenet_v2", burner(1), burner(2)), None))
    assert with_run(host_static, None, 4.5)["measured_ms"] == 4.5  # host: the run is the measured tail itself
    assert with_run(None, None, 4.5) is None


def test_modelled_e2e_replaces_only_the_modelled_sides() -> None:
    edge = {"mechanism": MODEL, "device_ms": 0.5}
    ue = {"mechanism": STRETCH, "device_ms": 200.0}
    assert modelled_e2e_ms(300.0, ue, edge, 200.0, 40.0) == pytest.approx(300.0 - 40.0 + 0.5)
    assert modelled_e2e_ms(300.0, ue, {"mechanism": NONE}, 200.0, 40.0) is None
    assert modelled_e2e_ms(300.0, {"mechanism": MODEL, "device_ms": 50.0}, edge, 80.0, 40.0) == pytest.approx(
        300.0 - 80.0 + 50.0 - 40.0 + 0.5)


def test_ue_energy_splits_compute_and_radio() -> None:
    phone = load("phone-midrange")
    block = {"mechanism": STRETCH, "emulated_ms": 100.0, "device_ms": 99.0}
    energy = ue_energy(phone, block, access="lte", payload_bytes=1_000_000, airtime_ms=200.0, wait_ms=50.0)
    assert energy is not None and energy["label"] == "MODEL-BASED, not measured"
    assert energy["compute_mj"] == pytest.approx(2.768 * 100.0)
    assert energy["radio_bits_mj"] == pytest.approx(438.39e-9 * 8e6 * 1e3)      # nJ/bit x bits, in mJ
    assert energy["radio_base_mj"] == pytest.approx(1288.04 * 0.2)              # mW x s = mJ
    assert energy["total_mj"] == pytest.approx(energy["compute_mj"] + energy["radio_mj"])
    assert energy["idle_wait_mj"] == pytest.approx(0.0308 * 50.0)
    none = ue_energy(phone, block, access="nr-sub6", payload_bytes=1000, airtime_ms=5.0, wait_ms=None)
    assert none["radio_mj"] is None and none["total_mj"] is None and "no other published NR sub-6" in none["radio_method"]
    assert ue_energy(load("host"), None, access="lte", payload_bytes=1, airtime_ms=1.0, wait_ms=1.0) is None


def test_complete_fills_a_record() -> None:
    record = {
        "ue_device": {"mechanism": STRETCH, "emulated_ms": 30.0, "device_ms": 29.5},
        "edge_device": {"mechanism": MODEL, "device_ms": 0.01, "compute_power_w": 72.0, "compute_power_source": "x"},
        "local_inference_measured_ms": 12.0, "remote_inference_ms": 8.0, "e2e_latency_ms": 80.0,
        "link": {"profile": {"radio": "nr-mmwave"}}, "uplink_bytes": 50_000, "delivery_ms": 10.0,
        "round_trip_ms": 30.0, "send_ms": 1.0,
    }
    complete(record, load("phone-midrange"))
    assert record["remote_inference_modelled_ms"] == 0.01
    assert record["e2e_latency_modelled_ms"] == pytest.approx(80.0 - 8.0 + 0.01)
    assert record["ue_energy"]["radio_access"] == "nr-mmwave" and record["ue_energy"]["radio_airtime_ms"] == 10.0
    assert record["edge_energy"]["compute_mj"] == pytest.approx(72.0 * 0.01)

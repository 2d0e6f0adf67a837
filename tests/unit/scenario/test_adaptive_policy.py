"""The adaptive policy as pure logic: records in, decisions out. The records here are made from the advisor's own
link model at a known rate (what a link at that rate would report), so the policy's estimate, its reaction to a
drop, its hysteresis and its handling of failures can be checked exactly, without a network."""

from __future__ import annotations

from typing import Any

import pytest

from splitbed.linkmodel import DirectionModel, wire_bytes
from splitbed.models import registry
from splitbed.nodes.adaptive import (
    MAX_RATE_MBIT,
    MIN_TRANSMIT_MS,
    AdaptivePolicy,
    Arm,
    PolicyConfig,
    PolicyError,
    arms_for,
    rate_from_delivery,
)

DELAY_MS = 1.0
# (partition, raw = data bytes, head ms, tail ms): MobileNetV2-like figures measured on this machine
ARMS = {"input_layer": (602_112, 2.0, 35.0), "block_3_project_BN": (100_352, 13.0, 18.0),
        "block_13_project_BN": (31_360, 19.0, 5.0)}


def arms() -> list[Arm]:
    spec = registry.get("mobilenet_v2")
    return [Arm(name, spec.partition(name).partition_id, "none") for name in ARMS]


def record(arm: Arm, rate_mbit: float, *, status: str = "ok", head_scale: float = 1.0) -> dict[str, Any]:
    """What the local node would record for `arm` on a link of `rate_mbit` with DELAY_MS one way."""
    size, head, tail = ARMS[arm.partition]
    delivery = DirectionModel(rate_mbit, DELAY_MS).transfer_ms(size + 60, rtt_ms=2 * DELAY_MS, slow_start=False)
    rec: dict[str, Any] = {
        "status": status, "partition_name": arm.partition, "uplink_bytes": size + 60,
        "serialized_intermediate_bytes": size + 60, "raw_intermediate_bytes": size,
        "preprocess_ms": 1.0, "local_inference_ms": head * head_scale, "encode_ms": 0.2, "remote_decode_ms": 0.2,
        "remote_inference_ms": tail, "downlink_ms": 1.5, "result_decode_ms": 0.4,
        "delivery_ms": delivery if status == "ok" else None, "clock": {"ping_min_rtt_ns": int(2 * DELAY_MS * 1e6)},
        "timestamps_ns": {"local_first_send": 1_000_000_000}}
    return rec


def step(policy: AdaptivePolicy, rate_mbit: float, **kw: Any) -> tuple[Any, dict[str, Any]]:
    decision = policy.decide()
    learnt = policy.observe(record(decision.arm, rate_mbit, **kw), decision)
    return decision, learnt


def probed(config: PolicyConfig, rate_mbit: float = 144.0) -> AdaptivePolicy:
    policy = AdaptivePolicy(config, arms())
    order = []
    while policy.probing:
        decision, _ = step(policy, rate_mbit)
        assert decision.reason == "probe"
        order.append(decision.arm.partition)
    assert order == [name for _ in range(config.probe_repetitions) for name in ARMS]  # round-robin
    return policy


def test_config_validation_names_the_key() -> None:
    assert PolicyConfig.from_dict(None) == PolicyConfig()
    for raw, message in (({"alpah": 0.5}, "unknown policy keys ['alpah']"), ({"alpha": 0}, "policy.alpha = 0"),
                         ({"min_dwell": 0}, "policy.min_dwell = 0 is outside [1,"),
                         ({"candidates": "input_layer"}, "policy.candidates must be a list"),
                         ({"compressions": []}, "at least one profile"),
                         ({"candidates": [1, 1]}, "lists an entry twice"), ([1], "must be a table")):
        with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
            PolicyConfig.from_dict(raw)


def test_arms_resolve_names_ids_and_compressions() -> None:
    spec = registry.get("mobilenet_v2")
    config = PolicyConfig.from_dict({"candidates": ["input_layer", 5], "compressions": ["none", "zstd"]})
    assert [(a.partition, a.compression) for a in arms_for(spec, config)] == [
        ("input_layer", "none"), ("block_3_project_BN", "none"), ("input_layer", "zstd"),
        ("block_3_project_BN", "zstd")]
    assert len(arms_for(spec, PolicyConfig())) == len(spec.partitions)
    with pytest.raises(PolicyError, match="no candidate partition 'nope'"):
        arms_for(spec, PolicyConfig.from_dict({"candidates": ["nope"]}))
    with pytest.raises(PolicyError, match="same partition twice"):
        arms_for(spec, PolicyConfig.from_dict({"candidates": ["input_layer", 0]}))
    with pytest.raises(PolicyError, match="compression profile 'gzip'"):
        arms_for(spec, PolicyConfig.from_dict({"compressions": ["gzip"]}))


@pytest.mark.parametrize("rate", [0.5, 5.0, 144.0, 1000.0])
@pytest.mark.parametrize("size", [4_000, 100_352, 602_112])
def test_rate_sample_inverts_the_advisor_transfer_model(rate: float, size: int) -> None:
    model = DirectionModel(rate, 3.0)
    took = model.transfer_ms(size, rtt_ms=6.0, slow_start=False)
    if model.serialisation_ms(size) >= MIN_TRANSMIT_MS:
        assert rate_from_delivery(size, took, 3.0) == pytest.approx(rate, rel=1e-9)
    else:  # 4 kB at 1 Gbit/s: 0.03 ms on the wire, below what a delivery time resolves
        assert rate_from_delivery(size, took, 3.0) == pytest.approx(wire_bytes(size) * 8 / 1e3 / MIN_TRANSMIT_MS)


def test_rate_sample_clamps_what_it_cannot_resolve() -> None:
    assert rate_from_delivery(1_000, 0.5, 1.0) == pytest.approx(1066 * 8 / 1e3 / MIN_TRANSMIT_MS)  # < the delay
    assert rate_from_delivery(10**9, 1e12, 1.0) > 0
    assert rate_from_delivery(10**9, 1e-3, 0.0) == MAX_RATE_MBIT
    with pytest.raises(PolicyError):
        rate_from_delivery(0, 5.0, 1.0)


def test_policy_sends_the_input_on_a_fast_link_and_moves_after_one_slow_inference() -> None:
    policy = probed(PolicyConfig(ue_slowdown=10.0, probe_repetitions=2))
    decision, learnt = step(policy, 144.0)
    assert decision.reason == "initial" and decision.arm.partition == "input_layer"
    assert learnt["rate_sample_mbit"] == pytest.approx(144.0, rel=1e-6)
    for _ in range(3):
        decision, _ = step(policy, 144.0)
        assert (decision.reason, decision.arm.partition) == ("stay", "input_layer")
    decision, learnt = step(policy, 5.0)  # the first inference after the drop still goes with the old choice
    assert decision.arm.partition == "input_layer" and learnt["rate_sample_mbit"] == pytest.approx(5.0, rel=1e-6)
    # EWMA of time per bit with alpha 0.5: 1 / (0.5/144 + 0.5/5)
    assert policy.rate_estimate_mbit == pytest.approx(1 / (0.5 / 144 + 0.5 / 5), rel=1e-6)
    decision, _ = step(policy, 5.0)
    assert decision.reason == "switch" and decision.previous is not None
    assert decision.previous.partition == "input_layer"
    assert ARMS[decision.arm.partition][0] < ARMS["input_layer"][0]
    assert decision.predicted_e2e_ms[decision.arm.label] < decision.predicted_e2e_ms["input_layer"]
    for _ in range(5):  # no flapping while the link stays slow
        decision, _ = step(policy, 5.0)
        assert decision.arm.partition != "input_layer"
    back = 0
    while True:  # recovery: the average of time per bit climbs back more slowly than it fell
        decision, _ = step(policy, 144.0)
        if decision.arm.partition == "input_layer":
            break
        back += 1
        assert back < 20
    assert 1 <= back <= 8


def test_hysteresis_and_dwell_hold_a_choice() -> None:
    config = PolicyConfig(ue_slowdown=10.0, probe_repetitions=1, hysteresis=0.9, initial_rate_mbit=144.0)
    policy = probed(config)
    first, _ = step(policy, 144.0)
    for _ in range(4):  # any gain short of 90 % is not worth a switch
        decision, _ = step(policy, 5.0)
        assert decision.arm == first.arm
    config = PolicyConfig(ue_slowdown=10.0, probe_repetitions=1, min_dwell=4)
    policy = probed(config)
    decisions = [step(policy, 144.0)[0] for _ in range(2)] + [step(policy, 5.0)[0] for _ in range(6)]
    switched = [i for i, d in enumerate(decisions) if d.reason == "switch"]
    assert switched and switched[0] >= 4  # the initial choice ran min_dwell inferences first


def test_compute_figures_are_window_medians_so_a_spike_does_not_decide() -> None:
    policy = probed(PolicyConfig(ue_slowdown=10.0, probe_repetitions=3, window=5))
    step(policy, 144.0)
    calm = policy.predict()["input_layer"]
    step(policy, 144.0, head_scale=40.0)  # one inference hit by another process: head 80 ms, x10 decided alone
    assert policy.predict()["input_layer"] == pytest.approx(calm)
    for _ in range(2):
        step(policy, 144.0, head_scale=40.0)
    slower = policy.predict()["input_layer"]  # now most of the window: the UE really is slower at it
    assert slower > calm + 10 * ARMS["input_layer"][1] * 30


def test_failures_are_probed_around_and_a_stall_bounds_the_rate() -> None:
    policy = AdaptivePolicy(PolicyConfig(probe_repetitions=1), arms())
    first = policy.decide()
    policy.observe(record(first.arm, 144.0, status="error"), first)  # failed probe: that arm has no figures
    while policy.probing:
        step(policy, 144.0)
    assert first.arm not in policy.figures
    decision = policy.decide()
    assert decision.arm != first.arm and first.arm.label not in decision.predicted_e2e_ms
    stalled = record(decision.arm, 144.0, status="error")
    learnt = policy.observe(stalled, decision, now_ns=1_000_000_000 + 3_000_000_000)
    assert learnt["sample_kind"] == "stalled_upper_bound"
    assert learnt["rate_sample_mbit"] <= stalled["uplink_bytes"] * 8 / 1e3 / (3000 - DELAY_MS) * 1.05
    assert policy.rate_estimate_mbit is not None and policy.rate_estimate_mbit < 144.0 / 1.9

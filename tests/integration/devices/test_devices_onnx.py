"""A phone's head on ONNX Runtime (`--engine onnxruntime`): the node calibrates and takes each partition's share on
the Keras model the graph was converted from (ONNX Runtime's spinning thread pools charge one call's CPU time to
the next), stretches the ONNX Runtime head to the phone's time, and reads the head's memory from its ONNX graph.
MobileNetV2 (conversion ~5-8 s, then cached)."""

from __future__ import annotations

import numpy as np
import pytest

from splitbed.devices import load
from splitbed.devices.emulation import MODEL as MODELLED
from splitbed.devices.emulation import STRETCH, DeviceEmulator
from splitbed.nodes.runner import CONVERTED_SHARE, ModelRunner

MODEL = "mobilenet_v2"
PARTITIONS = ("block_2_add", "block_13_project_BN", "out_relu", "predictions")  # in the model's order


@pytest.fixture(scope="module")
def runner() -> ModelRunner:
    return ModelRunner(weights="random:0", engine="onnxruntime", device=DeviceEmulator(load("phone-midrange"), "ue"))


def test_an_onnx_runtime_head_is_stretched_to_the_phone(runner: ModelRunner) -> None:
    x = np.zeros((1, 224, 224, 3), dtype=np.float32)
    shares = []
    for name in PARTITIONS:
        with runner.lock:
            plan = runner.plan(MODEL, name)
        assert runner.runtime_info(MODEL)["name"] == "onnxruntime"
        assert plan.device is not None and plan.device.device_full_ms is not None
        best = plan.device.host_best_full_ms
        assert best is not None
        if plan.device.mechanism != STRETCH:  # the rule, then the same skip as the Keras phone on the testbed
            assert plan.device.mechanism == MODELLED and best > plan.device.device_full_ms
            pytest.skip(f"the host computed {MODEL} slower than the phone ({best:.1f} ms against "
                        f"{plan.device.device_full_ms} ms, a loaded host): modelled, not stretched")
        assert plan.device.share_method is not None and plan.device.share_method.endswith(CONVERTED_SHARE)
        runner.run_head(plan, x)
        outcome = plan.last_outcome
        assert outcome is not None and outcome.emulated_ms is not None
        assert outcome.emulated_ms >= plan.device.device_ms  # never early
        memory = plan.head_memory
        assert memory is not None and memory["weights_bytes"] > 0 and memory["largest_activation_bytes"] > 0
        assert "ONNX graph" in memory["method"]
        shares.append(plan.device.share)
    # a later cut holds more of the model (a margin for the host's noise), and the whole model is all of it
    assert all(later > earlier - 0.1 for earlier, later in zip(shares, shares[1:], strict=False))
    assert shares[-1] > 0.9 and shares[0] < 0.6, shares

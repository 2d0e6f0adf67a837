"""S4-260189's input-size rule on the real testbed: MobileNetV2 is fully convolutional up to its global pooling, so
when the workload's input size changes mid-session (224 -> 160 -> 224) on a fixed partition, the crossing tensor
changes shape; the local node sends a new AIPS (`shape_changed`), the remote ends the old one with
`shape_changed` and runs the tail built for that size, and every answer equals the unsplit model at that size."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from splitbed.scenario import parse, run
from splitbed.scenario.summary import check_aips_lifetime
from tests.integration.scenario.conftest import assert_correct, scenario_table

pytestmark = pytest.mark.root

PARTITION = "block_6_project_BN"  # (14, 14, 64) at 224x224, (10, 10, 64) at 160x160


def test_input_size_change_brings_a_shape_changed_aips_and_correct_answers(
        shared_bed: Any, reference: Any, tmp_path: Any) -> None:
    table = scenario_table(name="resize-test",
                           workload={"partition": PARTITION, "duration_s": 5.0, "inferences": 100, "gap_ms": 100},
                           step=[{"at_s": 1.0, "input_size": [160, 160]}, {"at_s": 3.0, "input_size": [224, 224]}])
    result = run(parse(table), tmp_path, testbed=shared_bed)
    rows = result.inferences
    # the 160x160 build was made before the clock started (one warm-up inference at that size), then the
    # warm-up went back to the workload's own size, which the timeline starts with
    assert [r["input_shape"] for r in result.warmup_rows] == [[1, 160, 160, 3], [1, 224, 224, 3]]
    assert result.problems == [] and [e["input_size"] for e in result.link_events] == [[160, 160], [224, 224]]
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["status"] != "ok"]
    assert len({r["session_id"] for r in rows}) == 1
    shapes = [tuple(r["input_shape"]) for r in rows]
    assert shapes[0] == (1, 224, 224, 3) and (1, 160, 160, 3) in shapes and shapes[-1] == (1, 224, 224, 3)
    sized = reference.loaded.at_input_size(160, 160)
    from splitbed.models import preprocess
    from splitbed.nodes.images import resolve_image

    small = preprocess.load_image(resolve_image("builtin:chelsea"), sized.spec).array
    expected = {224: reference.unsplit("builtin:chelsea"),
                160: np.asarray(sized.keras_model.predict_on_batch(small), dtype=np.float64).reshape(-1)}
    assert_correct(rows[0], expected[224])
    for previous, row in zip(rows, rows[1:], strict=False):
        size = row["input_shape"][1]
        assert_correct(row, expected[size])
        side = {224: 14, 160: 10}[size]
        assert row["tensors"][0]["shape"] == [1, side, side, 64]
        if row["input_shape"] != previous["input_shape"]:
            assert row["aips_sent"] and row["aips_reason"] == "shape_changed", row["aips_reason"]
            ended, activated = row["aips_events"]
            assert (ended["event"], ended["aips_id"], ended["reason"]) == ("ended", previous["aips_id"],
                                                                           "shape_changed")
            assert activated["event"] == "activated" and activated["aips_id"] == row["aips_id"] != previous["aips_id"]
            assert activated["partition_id"] == row["partition_id"] and activated["shapes"] == [[1, side, side, 64]]
        else:
            assert not row["aips_sent"] and row["aips_events"] == []
    # the warm-up ended at 224x224, so the timeline starts on that AIPS; then two shape changes, 224 -> 160 -> 224
    assert not rows[0]["aips_sent"] and rows[0]["aips_reason"] == "reused"
    assert sum(r["aips_reason"] == "shape_changed" for r in rows) == 2
    assert check_aips_lifetime(rows) == []

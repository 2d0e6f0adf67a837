"""The suite's matrices, ids and checks' helpers, without namespaces or TensorFlow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from splitbed.plugin import matrix
from splitbed.plugin.fixtures import safe_name
from splitbed.plugin.reference import error_bound_violations, top_k


def test_ids_are_readable_and_select_by_model_and_profile() -> None:
    cases = matrix.cases("correctness")
    ids = [c.id for c in cases]
    assert "vgg16-block3_pool-5g-embb-phone-midrange-tlv-int8" in ids and len(ids) == len(set(ids))
    assert {c.ue_device for c in cases} == {"phone-midrange"}
    vgg_embb = [i for i in ids if "vgg16" in i and "5g-embb" in i]
    assert vgg_embb == [c.id for c in matrix.cases("correctness", models=["vgg16"], profiles=["5g-embb"])]
    case = next(c for c in cases if c.carriage == "json-baseline")
    assert (case.encoding, case.compression, case.lossless) == ("json-baseline", "none", True)
    assert not next(c for c in cases if c.carriage == "tlv-int8").lossless


def test_ue_devices_are_a_dimension_and_ids_read_back_unambiguously() -> None:
    from netem.profile import builtin_names
    from splitbed.devices import builtin_names as device_names

    both = matrix.cases("correctness", ue_devices=["phone-midrange", "host"])
    one = matrix.cases("correctness")
    assert len(both) == 2 * len(one) and {c.ue_device for c in both} == {"phone-midrange", "host"}
    case = matrix.SuiteCase("vgg16", "block3_pool", "5g-embb", "tlv-zstd", "phone-midrange")
    assert case.id == "vgg16-block3_pool-5g-embb-phone-midrange-tlv-zstd"
    # every built-in combination of profile and device reads back to itself: no two cases share an id
    for profile in builtin_names():
        for device in device_names():
            for carriage in ("tlv-none", "json-baseline"):
                original = matrix.SuiteCase("mobilenet_v2", "block_2_add", profile, carriage, device)
                assert matrix.parse_id(original.id) == original
    with pytest.raises(matrix.MatrixError, match="names 0 cases"):
        matrix.parse_id("vgg16-block3_pool-mars-phone-midrange-tlv-none")
    with pytest.raises(matrix.MatrixError, match="is an edge profile"):
        matrix.cases("correctness", ue_devices=["edge-l4"])
    assert [c.ue_device for c in matrix.lifetime_cases(ue_devices=["host"])] == ["host"] * len(
        matrix.lifetime_cases())


def test_full_adds_the_testbed_contributions_matrix_and_filters_apply() -> None:
    default = matrix.cases("budgets")
    full = matrix.cases("budgets", full=True)
    assert set(c.id for c in default) < set(c.id for c in full)
    assert {c.model for c in full} >= {"vgg16", "resnet50"}
    vgg_parts = {c.partition for c in full if c.model == "vgg16"}
    from splitbed.models import registry

    assert vgg_parts == {p.name for p in registry.get("vgg16").partitions}
    assert matrix.cases("budgets", full=True, models=["resnet50"], profiles=["lte"])
    assert all(c.model == "resnet50" and c.profile == "lte"
               for c in matrix.cases("budgets", full=True, models=["resnet50"], profiles=["lte"]))
    assert matrix.lifetime_cases(models=["vgg16"]) == []


@pytest.mark.parametrize(("group", "message"), [
    ({"models": ["nosuch"], "partitions": ["x"], "profiles": ["lte"], "carriages": ["tlv-none"]}, "unknown model"),
    ({"models": ["vgg16"], "partitions": ["block3_pool"], "profiles": ["mars"], "carriages": ["tlv-none"]},
     "unknown link profile"),
    ({"models": ["vgg16"], "partitions": ["block3_pool"], "profiles": ["lte"], "carriages": ["tlv-gzip"]},
     "carriage 'tlv-gzip'"),
    ({"models": ["vgg16"], "partitions": ["block3_pool"], "profiles": ["lte"]}, "missing keys"),
])
def test_a_bad_group_is_refused_with_what_is_wrong(group: dict[str, object], message: str) -> None:
    with pytest.raises(matrix.MatrixError, match=message):
        matrix._group_cases(group, "test group")


def test_error_bounds_follow_the_documented_formulas() -> None:
    x = np.linspace(-3, 5, 1000, dtype=np.float32)
    assert error_bound_violations("none", x, x.copy()) == 0
    assert error_bound_violations("zstd", x, x + np.float32(1e-6)) > 0
    scale = 8 / 255
    assert error_bound_violations("int8", x, x + np.float32(0.49 * scale)) == 0
    assert error_bound_violations("int8", x, x + np.float32(0.6 * scale)) == 1000
    assert error_bound_violations("fp16", x, x.astype(np.float16).astype(np.float32)) == 0
    assert error_bound_violations("fp16", x, x * np.float32(1 + 2**-9)) > 0


def test_top_k_breaks_ties_by_index_and_safe_names_are_paths() -> None:
    assert top_k(np.array([0.1, 0.3, 0.3, 0.2]), 3) == [1, 2, 3]
    name = safe_name("tests/e2e/test_x.py::test_y[vgg16-block3_pool-5g-embb-phone-midrange-tlv-zstd]")
    assert name == "test_x.py-test_y-vgg16-block3_pool-5g-embb-phone-midrange-tlv-zstd" and "/" not in name
    assert Path(name).name == name

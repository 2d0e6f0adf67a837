"""tail(head(x)) == full(x) for candidate partitions (max abs diff <= 1e-5), with the crossing tensors the data
files declare, in the documented order. Default: every MobileNetV2 candidate plus VGG16/ResNet50 spot checks
(one multi-tensor ResNet cut); --full: every VGG16 and ResNet50 candidate."""

from __future__ import annotations

import numpy as np
import pytest

from splitbed.models import registry, split
from splitbed.models.preprocess import load_image
from splitbed.models.verify import TOLERANCE, equivalence

VGG16_ALL = [p.name for p in registry.get("vgg16").partitions]
RESNET50_ALL = [p.name for p in registry.get("resnet50").partitions]
VGG16_DEFAULT = ["block3_pool"]
RESNET50_DEFAULT = ["conv4_block6_out", "conv4_block2_2_relu"]


def _check(loaded, chelsea_path, names):  # type: ignore[no-untyped-def]
    x = load_image(chelsea_path, loaded.spec).array
    results = equivalence(loaded, x, names)
    for r in results:
        assert r.max_abs_diff <= TOLERANCE, f"{r.partition.name}: max abs diff {r.max_abs_diff}"
        assert r.top1_full == r.top1_split
        sm = split(loaded, r.partition)
        assert len(sm.cut) == r.partition.tensors, f"{r.partition.name}: {[c.name for c in sm.cut]}"
    return results


def test_mobilenet_every_candidate(mobilenet, chelsea_path, record_property) -> None:  # type: ignore[no-untyped-def]
    results = _check(mobilenet, chelsea_path, None)
    assert len(results) == len(mobilenet.spec.partitions)
    record_property("exact_zero", [r.partition.name for r in results if r.exact])


@pytest.mark.parametrize("name", VGG16_DEFAULT)
def test_vgg16_spot(vgg16, chelsea_path, name: str) -> None:  # type: ignore[no-untyped-def]
    _check(vgg16, chelsea_path, [name])


@pytest.mark.parametrize("name", RESNET50_DEFAULT)
def test_resnet50_spot(resnet50, chelsea_path, name: str) -> None:  # type: ignore[no-untyped-def]
    _check(resnet50, chelsea_path, [name])


@pytest.mark.slow
def test_vgg16_every_candidate(vgg16, chelsea_path) -> None:  # type: ignore[no-untyped-def]
    _check(vgg16, chelsea_path, VGG16_ALL)


@pytest.mark.slow
def test_resnet50_every_candidate(resnet50, chelsea_path) -> None:  # type: ignore[no-untyped-def]
    _check(resnet50, chelsea_path, RESNET50_ALL)


def test_compiled_path_matches_eager_bit_for_bit(mobilenet, chelsea_path) -> None:  # type: ignore[no-untyped-def]
    """Nodes use the compiled (predict_on_batch) path; it must agree with the eager check (two-tensor cut)."""
    x = load_image(chelsea_path, mobilenet.spec).array
    (compiled,) = equivalence(mobilenet, x, ["block_2_expand_relu"], compiled=True)
    assert compiled.ok, compiled.max_abs_diff
    sm = split(mobilenet, "block_2_expand_relu")
    for eager_t, compiled_t in zip(sm.run_head(x, compiled=False), sm.run_head(x), strict=True):
        np.testing.assert_array_equal(eager_t, compiled_t)


def test_mid_block_cut_carries_shortcut_in_documented_order(resnet50) -> None:  # type: ignore[no-untyped-def]
    """Inside a projection block both the branch and the block input cross; the block input (lower level)
    comes first, and the head's outputs / tail's inputs follow the same order."""
    sm = split(resnet50, "conv3_block1_2_relu")
    assert [c.name for c in sm.cut] == ["conv2_block3_out", "conv3_block1_2_relu"]
    assert [c.shape for c in sm.cut] == [(56, 56, 256), (28, 28, 128)]
    assert [tuple(t.shape[1:]) for t in sm.head.outputs] == [c.shape for c in sm.cut]
    assert [tuple(t.shape[1:]) for t in sm.tail.inputs] == [c.shape for c in sm.cut]
    levels = [next(g.level for g in sm.graph_cut.nodes if g.layer_name == c.name) for c in sm.cut]
    assert levels == sorted(levels)
    # The shortcut branch's own layers are on the tail (they are not ancestors of the partition layer).
    tail_layers = {sm.graph_cut.nodes[i].layer_name for i in sm.graph_cut.tail}
    assert {"conv3_block1_0_conv", "conv3_block1_0_bn", "conv3_block1_add"} <= tail_layers


def test_head_and_tail_parameters_partition_the_model(mobilenet, resnet50) -> None:  # type: ignore[no-untyped-def]
    from splitbed.models.costs import partition_cost

    for loaded in (mobilenet, resnet50):
        total = loaded.keras_model.count_params()
        for part in loaded.spec.partitions[:6] + loaded.spec.partitions[-3:]:
            sm = split(loaded, part)
            cost = partition_cost(sm.graph_cut)
            assert sm.head.count_params() == cost.head_params
            assert sm.tail.count_params() == cost.tail_params
            assert cost.head_params + cost.tail_params == total
            assert cost.raw_bytes == sm.raw_bytes == sum(c.nbytes for c in sm.cut)


def test_split_is_cached_and_lookup_by_alias(mobilenet) -> None:  # type: ignore[no-untyped-def]
    first = split(mobilenet, "block_2_add")
    assert split(mobilenet, first.partition.partition_id) is first
    assert mobilenet.split("block_2_add") is first
    assert split(mobilenet, "input_1").cut[0].name == "input_layer"


def test_input_and_output_partitions_are_identities(mobilenet, chelsea_path) -> None:  # type: ignore[no-untyped-def]
    x = load_image(chelsea_path, mobilenet.spec).array
    at_input = split(mobilenet, "input_layer")
    np.testing.assert_array_equal(at_input.run_head(x, compiled=False)[0], x)
    at_output = split(mobilenet, "predictions")
    probs = at_output.run_head(x, compiled=False)[0]
    np.testing.assert_array_equal(at_output.run_tail([probs], compiled=False), probs)


def test_run_tail_rejects_wrong_tensors(mobilenet) -> None:  # type: ignore[no-untyped-def]
    from splitbed.models.errors import ModelError

    sm = split(mobilenet, "block_2_expand_relu")
    with pytest.raises(ModelError, match="takes 2 tensors"):
        sm.run_tail([np.zeros((1, 56, 56, 24), "float32")])
    with pytest.raises(ModelError, match=r"must be float32\[56, 56, 144\]"):
        sm.run_tail([np.zeros((1, 56, 56, 24), "float32"), np.zeros((1, 56, 56, 24), "float32")])

"""Registry and partition data files: parsed, validated, stable ids, seed names and aliases."""

from __future__ import annotations

import copy
from importlib import resources

import pytest

from splitbed.models import registry
from splitbed.models.errors import PartitionDataError, UnknownModelError, UnknownPartitionError
from splitbed.models.registry import tomllib

SEED_VGG16_EXAMPLE = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1", "fc1"]
# The TensorFlow/Keras testbed contribution's full VGG16 layer list (Keras 2 names; docs/REFERENCES.md): every
# one must be a candidate.
SEED_VGG16_LAYERS = ["input_1", "block1_conv1", "block1_conv2", "block1_pool", "block2_conv1", "block2_conv2",
                     "block2_pool", "block3_conv1", "block3_conv2", "block3_conv3", "block3_pool", "block4_conv1",
                     "block4_conv2", "block4_conv3", "block4_pool", "block5_conv1", "block5_conv2",
                     "block5_conv3", "block5_pool", "flatten", "fc1", "fc2", "predictions"]


def _raw(name: str) -> dict:
    return tomllib.loads((resources.files("splitbed.models") / "data" / f"{name}.toml").read_text())


def test_registered_models_include_seed_models_and_a_small_one() -> None:
    assert {"vgg16", "resnet50", "mobilenet_v2"} <= set(registry.names())


@pytest.mark.parametrize("name", registry.names())
def test_every_data_file_parses_with_unique_ids(name: str) -> None:
    spec = registry.get(name)
    ids = [p.partition_id for p in spec.partitions]
    assert len(ids) == len(set(ids)) and all(0 <= i <= registry.MAX_PARTITION_ID for i in ids)
    assert spec.input_shape == (224, 224, 3)
    assert spec.partition("input_1").name == "input_layer"  # the testbed contribution's Keras 2 input name is an alias


def test_vgg16_holds_seed_example_and_every_seed_layer() -> None:
    spec = registry.get("vgg16")
    assert [p.name for p in spec.partitions if p.seed_example] == SEED_VGG16_EXAMPLE
    for layer in SEED_VGG16_LAYERS:
        assert spec.partition(layer).matches(layer)


def test_resnet50_covers_stage_outputs_and_mid_block_cuts() -> None:
    spec = registry.get("resnet50")
    stages = [p.name for p in spec.partitions if p.stage_output]
    assert stages == ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"]
    assert len([p for p in spec.partitions if p.tensors >= 2]) >= 2


def test_lookup_by_id_name_alias_and_numeric_string() -> None:
    spec = registry.get("vgg16")
    fc1 = spec.partition("fc1")
    assert spec.partition(fc1.partition_id) is fc1
    assert spec.partition(str(fc1.partition_id)) is fc1
    assert spec.partition(fc1) is fc1


def test_unknown_partition_error_lists_candidates() -> None:
    with pytest.raises(UnknownPartitionError, match=r"no candidate partition 'block9_conv1'.*block3_pool"):
        registry.get("vgg16").partition("block9_conv1")
    with pytest.raises(UnknownPartitionError):
        registry.get("vgg16").partition(999)
    other = registry.get("resnet50").partition("conv4_block6_out")
    with pytest.raises(UnknownPartitionError, match="not one of vgg16"):
        registry.get("vgg16").partition(other)


def test_unknown_model_error_lists_registered() -> None:
    with pytest.raises(UnknownModelError, match="registered: mobilenet_v2"):
        registry.get("alexnet")


def _bad(mutate) -> dict:  # type: ignore[no-untyped-def]
    data = copy.deepcopy(_raw("vgg16"))
    mutate(data)
    return data


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["partition"].append({"id": 0, "name": "again"}), "duplicate partition ids"),
    (lambda d: d["partition"][1].update(id=-1), "partition id = -1 is outside"),
    (lambda d: d["partition"][1].update(id=256), "partition id = 256 is outside"),
    (lambda d: d["partition"][1].update(id=True), "partition id must be an integer"),
    (lambda d: d["partition"][1].update(name="block 1"), "bad partition name"),
    (lambda d: d["partition"][2].update(aliases=["block1_conv1"]), "used twice"),
    (lambda d: d["partition"][1].update(tensors=0), "tensors of"),
    (lambda d: d["partition"][1].update(colour="red"), "unknown partition keys"),
    (lambda d: d.update(input_shape=[224, 224]), "input_shape"),
    (lambda d: d.pop("constructor"), "constructor"),
    (lambda d: d.update(partition=[]), "no \\[\\[partition\\]\\]"),
    (lambda d: d.update(extra=1), "unknown keys"),
])
def test_malformed_data_is_rejected_with_reason(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PartitionDataError, match=message):
        registry.parse_spec(_bad(mutate), "test.toml")

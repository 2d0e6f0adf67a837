"""Sizes, parameters and MACs against published figures, and the `splitbed partitions` command end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from splitbed.models import split
from splitbed.models.summary import layer_rows, partition_rows

# Float32 bytes per sample at 224x224 (docs/MODELS.md; shared/DESIGN.md facts).
VGG16_BYTES = {"block1_pool": 3_211_264, "block2_pool": 1_605_632, "block3_pool": 802_816,
               "block4_pool": 401_408, "block5_pool": 100_352, "fc1": 16_384}
RESNET50_BYTES = {"conv2_block3_out": 3_211_264, "conv3_block4_out": 1_605_632, "conv4_block6_out": 802_816,
                  "conv5_block3_out": 401_408}
# Published totals: parameters (Keras applications table) and multiply-accumulates (VGG16 15.47 G, ResNet50 v1
# with stride in the 1x1 conv 3.86 G, MobileNetV2 1.0/224 300 M "multiply-adds" in Sandler et al. 2018).
PUBLISHED = {"vgg16": (138_357_544, 15.47e9), "resnet50": (25_636_712, 3.86e9), "mobilenet_v2": (3_538_984, 300e6)}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "splitbed.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_partitions_json() -> None:
    out = _cli("partitions", "mobilenet_v2", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    rows = {p["name"]: p for p in data["partitions"]}
    params, macs = PUBLISHED["mobilenet_v2"]
    assert rows["input_layer"]["tail_params"] == params
    assert rows["input_layer"]["tail_macs"] == pytest.approx(macs, rel=0.01)
    assert rows["input_layer"]["raw_bytes"] == 602_112
    two = rows["block_2_expand_relu"]
    assert [(t["name"], t["shape"], t["dtype"]) for t in two["tensors"]] == [
        ("block_1_project_BN", [56, 56, 24], "float32"), ("block_2_expand_relu", [56, 56, 144], "float32")]
    assert two["raw_bytes"] == sum(t["raw_bytes"] for t in two["tensors"]) == 4 * 56 * 56 * (24 + 144)
    assert [p["partition_id"] for p in data["partitions"]] == sorted(p["partition_id"] for p in data["partitions"])


def test_vgg16_figures(vgg16) -> None:  # type: ignore[no-untyped-def]
    _, rows = partition_rows("vgg16", vgg16.keras_model)
    by_name = {r.partition.name: r.to_dict() for r in rows}
    for name, size in VGG16_BYTES.items():
        assert by_name[name]["raw_bytes"] == size
        assert by_name[name]["tensors"][0]["dtype"] == "float32"
    assert by_name["block3_pool"]["tensors"][0]["shape"] == [28, 28, 256]
    params, macs = PUBLISHED["vgg16"]
    assert by_name["fc1"]["head_params"] + by_name["fc1"]["tail_params"] == params
    assert by_name["input_layer"]["tail_macs"] == pytest.approx(macs, rel=0.01)


def test_cli_errors_and_listing() -> None:
    bad = _cli("partitions", "alexnet")
    assert bad.returncode == 2 and "unknown model 'alexnet'" in bad.stderr and len(bad.stderr.splitlines()) == 1
    listing = _cli("partitions")
    assert listing.returncode == 0 and "resnet50" in listing.stdout and "mobilenet_v2" in listing.stdout


def test_resnet50_figures(resnet50) -> None:  # type: ignore[no-untyped-def]
    _, rows = partition_rows("resnet50", resnet50.keras_model)
    by_name = {r.partition.name: r for r in rows}
    for name, size in RESNET50_BYTES.items():
        assert by_name[name].cost.raw_bytes == size
    params, macs = PUBLISHED["resnet50"]
    assert by_name["input_layer"].cost.tail_params == params == resnet50.keras_model.count_params()
    assert by_name["input_layer"].cost.tail_macs == pytest.approx(macs, rel=0.01)
    multi = by_name["conv4_block2_2_relu"].to_dict()
    assert [t["name"] for t in multi["tensors"]] == ["conv4_block1_out", "conv4_block2_2_relu"]
    assert multi["raw_bytes"] == 802_816 + 200_704


def test_mobilenet_figures_and_layer_table(mobilenet) -> None:  # type: ignore[no-untyped-def]
    layers = layer_rows("mobilenet_v2", mobilenet.keras_model)
    params, macs = PUBLISHED["mobilenet_v2"]
    assert sum(r["params"] for r in layers) == params == mobilenet.keras_model.count_params()
    assert sum(r["macs"] for r in layers) == pytest.approx(macs, rel=0.01)
    by_name = {r["name"]: r for r in layers}
    sm = split(mobilenet, "block_5_add")
    assert by_name["block_5_add"]["output_bytes"] == sm.raw_bytes == 100_352

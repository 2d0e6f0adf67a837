"""Built-in Keras models on ONNX Runtime: conversion and its cache, the partition listing of a converted file
against the Keras table, and cross-runtime agreement of crossing tensors and outputs (docs/MODELS.md, "ONNX").

Tolerance (why): the two runtimes compute the same float32 graph with other kernels, summation orders and fusions
(ONNX Runtime folds each BatchNormalization into its convolution's weights; TensorFlow's oneDNN kernels do not), so
bits differ and the differences grow with depth. Each crossing tensor must agree within REL_TOL of its largest
magnitude, the softmax output within OUT_TOL (absolute), and the top-1 class must be the same when the reference's
top-2 margin exceeds twice OUT_TOL. Measured worst cases (random:0, the cat photo, `--full`): crossing tensors
3.0e-5 (MobileNetV2, all 18 partitions), 3.6e-6 (VGG16) and 6.8e-5 (ResNet50) of their largest magnitude; softmax
outputs 2.5e-6, 2.5e-6 and 2.1e-5; mixed runtimes 3.1e-6, 5.9e-6 and 2.2e-5.
REL_TOL = 1e-3 leaves a margin of 15 or more over those, while a wrong layout (NCHW read as NHWC), a missing
shortcut or a wrongly folded BatchNormalization differs by order 1e-1..1.

Default: MobileNetV2 (conversion ~5-8 s); VGG16 (553 MB of weights, ~26 s and ~7 GB of memory to convert) and
ResNet50 (~17 s) run with --full.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from splitbed.models import split
from splitbed.models.onnx.convert import CACHE_ENV, cache_key, converted, converter_versions
from splitbed.models.onnx.split import split_converted
from splitbed.models.preprocess import load_image
from splitbed.models.summary import partition_rows

REL_TOL = 1e-3
OUT_TOL = 1e-4


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Conversions of this test session go to a fresh cache (the first conversion is part of what is tested)."""
    path = tmp_path_factory.mktemp("onnx-cache")
    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(path)
    yield path
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old


def _model(request: pytest.FixtureRequest, name: str) -> Any:
    return request.getfixturevalue({"mobilenet_v2": "mobilenet", "vgg16": "vgg16", "resnet50": "resnet50"}[name])


def test_conversion_is_cached_and_keyed(mobilenet: Any, onnx_cache: Path) -> None:
    first = converted(mobilenet)
    assert first.path.parent == onnx_cache and first.path.stat().st_size > 10_000_000
    again = converted(mobilenet)
    assert again.cached and again.path == first.path and again.partitions == first.partitions
    source = again.source
    assert source["model"] == "mobilenet_v2" and source["weights_sha256"] == mobilenet.weights.sha256
    assert source["versions"] == converter_versions() and source["conversion_seconds"] > 0
    assert set(first.partitions) == {p.partition_id for p in mobilenet.spec.partitions}
    # The key changes with the weights and with any converter version.
    versions = converter_versions()
    assert cache_key(mobilenet, versions) == first.path.stem.split("-", 1)[1]
    assert cache_key(mobilenet, {**versions, "tf2onnx": "0.0.0"}) != cache_key(mobilenet, versions)
    other = type(mobilenet)(keras_model=mobilenet.keras_model, spec=mobilenet.spec,
                            weights=type(mobilenet.weights)(source="random", requested="random:1", seed=1,
                                                            sha256="0" * 64))
    assert cache_key(other, versions) != cache_key(mobilenet, versions)


def _listing_matches_keras(name: str, loaded: Any) -> None:
    conv = converted(loaded)
    out = subprocess.run([sys.executable, "-m", "splitbed.cli", "partitions", str(conv.path), "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    cuts = json.loads(out.stdout)["cuts"]
    by_partition = {k["partition_id"]: c for c in cuts for k in c["keras_partitions"]}
    _, rows = partition_rows(name, loaded.keras_model)
    for row in rows:
        d = row.to_dict()
        if d["name"] == "input_layer":
            assert d["partition_id"] not in by_partition  # no node computes the input: not an ONNX cut
            continue
        cut = by_partition[d["partition_id"]]
        assert cut["raw_bytes"] == d["raw_bytes"], d["name"]
        assert cut["branches"] == len(d["tensors"]) == row.partition.tensors
        # Same tensors up to the layout (NCHW inside the ONNX graph, NHWC in Keras): sizes and dimensions.
        onnx_t = sorted((t["raw_bytes"], sorted(t["per_sample_shape"])) for t in cut["tensors"])
        keras_t = sorted((t["raw_bytes"], sorted(t["shape"])) for t in d["tensors"])
        assert onnx_t == keras_t, d["name"]


def test_listing_sizes_equal_keras_table_mobilenet(mobilenet: Any, onnx_cache: Path) -> None:
    _listing_matches_keras("mobilenet_v2", mobilenet)


@pytest.mark.slow
def test_listing_sizes_equal_keras_table_vgg16(vgg16: Any, onnx_cache: Path) -> None:
    _listing_matches_keras("vgg16", vgg16)


def _max_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-30))


def _agree(loaded: Any, partitions: list[str], image: np.ndarray) -> dict[str, float]:
    conv = converted(loaded)
    x = load_image(image, loaded.spec).array
    worst = {"crossing": 0.0, "output": 0.0, "mixed": 0.0}
    for name in partitions:
        keras_split = split(loaded, name)
        onnx_split = split_converted(conv, keras_split.partition)
        assert onnx_split.cut == keras_split.cut  # names, per-sample shapes, dtypes, order
        kh, oh = keras_split.run_head(x), onnx_split.run_head(x)
        for k_t, o_t, c in zip(kh, oh, keras_split.cut, strict=True):
            rel = _max_rel(k_t, o_t)
            assert rel <= REL_TOL, f"{name}: crossing tensor {c.name} differs by {rel:.2e} of its max"
            worst["crossing"] = max(worst["crossing"], rel)
        k_out, o_out = keras_split.run_tail(kh), onnx_split.run_tail(oh)
        diff = float(np.max(np.abs(k_out - o_out)))
        assert diff <= OUT_TOL, f"{name}: outputs differ by {diff:.2e}"
        top2 = np.sort(k_out[0])[-2:]
        if top2[1] - top2[0] > 2 * OUT_TOL:
            assert int(np.argmax(k_out)) == int(np.argmax(o_out)), name
        # Mixed runtimes: ONNX Runtime head -> Keras tail, and Keras head -> ONNX Runtime tail.
        mixed = max(float(np.max(np.abs(keras_split.run_tail(oh) - k_out))),
                    float(np.max(np.abs(onnx_split.run_tail(kh) - k_out))))
        assert mixed <= OUT_TOL, f"{name}: mixed runtimes differ by {mixed:.2e}"
        worst["output"] = max(worst["output"], diff)
        worst["mixed"] = max(worst["mixed"], mixed)
    return worst


def test_agreement_mobilenet(mobilenet: Any, onnx_cache: Path, request: pytest.FixtureRequest) -> None:
    import skimage.data

    full = request.config.getoption("--full")
    parts = [p.name for p in mobilenet.spec.partitions] if full else \
        ["input_layer", "block_3_project_BN", "block_5_depthwise_relu", "predictions"]
    worst = _agree(mobilenet, parts, skimage.data.chelsea())
    print(f"mobilenet_v2 worst relative crossing {worst['crossing']:.2e}, output {worst['output']:.2e}, "
          f"mixed {worst['mixed']:.2e}")


@pytest.mark.slow
@pytest.mark.parametrize("name,parts", [
    ("vgg16", ["block1_conv2", "block3_pool", "block5_pool", "flatten", "fc1", "fc2"]),
    ("resnet50", ["conv2_block1_1_relu", "conv3_block1_0_bn", "conv4_block2_2_relu", "conv4_block6_out",
                  "conv5_block3_out", "avg_pool"]),
])
def test_agreement_full(name: str, parts: list[str], onnx_cache: Path, request: pytest.FixtureRequest) -> None:
    import skimage.data

    loaded = _model(request, name)
    worst = _agree(loaded, parts, skimage.data.chelsea())
    print(f"{name} worst relative crossing {worst['crossing']:.2e}, output {worst['output']:.2e}, "
          f"mixed {worst['mixed']:.2e}")

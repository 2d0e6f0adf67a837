"""An `.onnx` image classifier built here (no TensorFlow) through the layers above the ONNX graph: its spec and
preprocessing, the nodes' runner (ONNX Runtime behind `predict_on_batch`), and sweep points naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from splitbed.models import spec_for
from splitbed.models.onnx.model import IMAGENET_MEAN, IMAGENET_STD, OnnxFileSpec, load_file
from splitbed.nodes.errors import ConfigurationError
from splitbed.nodes.runner import ModelRunner
from splitbed.sweep.plan import SweepSpec, SweepSpecError, engine_args, engine_sides, points

SIDE = 16


def classifier(path: Path) -> Path:
    """x [N,3,16,16] -> conv(8) -> relu -> conv(8) -> add(shortcut) -> global pool -> flatten -> gemm(10) -> softmax.
    Nodes: 0 c1, 1 r1, 2 c2, 3 add, 4 pool, 5 flat, 6 fc, 7 softmax."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32) * 0.3, "w1"),
             numpy_helper.from_array(rng.normal(size=(8, 8, 3, 3)).astype(np.float32) * 0.1, "w2"),
             numpy_helper.from_array(rng.normal(size=(8, 10)).astype(np.float32), "wf")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="c2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["r1", "c2"], ["a"], name="add"),
             helper.make_node("GlobalAveragePool", ["a"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "wf"], ["logits"], name="fc"),
             helper.make_node("Softmax", ["logits"], ["probs"], name="softmax")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, SIDE, SIDE])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 10])], initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return classifier(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def test_spec_of_an_onnx_file(tiny: Path) -> None:
    spec = spec_for(str(tiny))
    assert isinstance(spec, OnnxFileSpec)
    assert spec.layout == "NCHW" and spec.input_shape == (3, SIDE, SIDE) and spec.target_size == (SIDE, SIDE)
    assert [(p.partition_id, p.name, p.tensors) for p in spec.partitions] == [
        (0, "c1", 1), (1, "r1", 1), (2, "c2", 2), (3, "add", 1), (4, "pool", 1), (5, "flat", 1), (6, "fc", 1),
        (7, "softmax", 1)]
    assert spec.partition("c2").partition_id == 2 and spec.partition(5).name == "flat"
    rgb = np.full((1, SIDE, SIDE, 3), 255.0, dtype=np.float32)
    rgb[..., 1] = 0.0
    x = spec.prepare_batch(rgb)
    assert x.shape == (1, 3, SIDE, SIDE) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], [(1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0],
                                               (0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1],
                                               (1 - IMAGENET_MEAN[2]) / IMAGENET_STD[2]], rtol=1e-6)
    with pytest.raises(Exception, match="takes only 16x16"):
        spec.at_input_size(32, 32)


def test_the_offer_of_an_onnx_file_lists_its_cuts_alone(tiny: Path) -> None:
    """No camera pseudo-partition: its tail is a registered model's preprocessing and input_layer tail."""
    from splitbed.nodes.remote import offered_partitions

    spec = spec_for(str(tiny))
    assert offered_partitions(str(tiny), spec) == [
        {"partition_id": p.partition_id, "name": p.name, "tensors": p.tensors} for p in spec.partitions]
    assert 255 not in {p.partition_id for p in spec.partitions}


def test_runner_runs_onnx_heads_and_tails(tiny: Path) -> None:
    runner = ModelRunner(weights="random:0")  # the engine does not matter for an .onnx file
    model = str(tiny)
    info = runner.runtime_info(model)
    assert info["name"] == "onnxruntime" and info["model_sha256"] == load_file(model).graph.sha256
    assert runner.inference_call(model).startswith("onnxruntime")
    assert runner.weights_info(model)["source"] == "file"
    x = np.random.default_rng(0).normal(size=(1, 3, SIDE, SIDE)).astype(np.float32)
    full = load_file(model).split(7)
    expected = full.run_tail(full.run_head(x))
    for pid in (0, 2, 3, 6):
        with runner.lock:
            plan = runner.plan(model, pid)
        assert [c.shape for c in plan.cut] == [tuple(c.shape) for c in plan.split.cut]
        arrays = ModelRunner.run_head(plan, x)
        fitted = ModelRunner.check_tensors(plan, arrays)
        np.testing.assert_allclose(ModelRunner.run_tail(plan, fitted), expected, rtol=1e-5, atol=1e-6)
    with runner.lock:
        two = runner.plan(model, "c2")
    assert [c.name for c in two.cut] == ["r1", "c2"]  # the shortcut crosses too
    with pytest.raises(ConfigurationError, match="no candidate cut|has no candidate partition"):
        runner.plan(model, 99)
    with pytest.raises(ConfigurationError, match="inference runtime"):
        ModelRunner(engine="tflite")


def test_sweep_points_name_onnx_files_and_engines(tiny: Path) -> None:
    # a device profile has no latency for a user's ONNX file: the default UE (a phone) refuses it, naming host
    with pytest.raises(SweepSpecError, match="host = this machine's speed"):
        points(SweepSpec(models=(str(tiny),), partitions=("c2",)))
    spec = SweepSpec(models=(str(tiny),), partitions=("c2", "4"), engine="onnxruntime/tensorflow",
                     ue_devices=("host",))
    got = points(spec)
    assert [p.partition for p in got] == ["c2", "pool"]
    assert got[0].key.endswith("|onnxruntime/tensorflow") and got[0].engine == "onnxruntime/tensorflow"
    default = points(SweepSpec(models=(str(tiny),), partitions=("c2",), ue_devices=("host",)))[0]
    assert default.key.split("|")[-1] == "process"  # TensorFlow points keep their old keys
    assert engine_sides("onnxruntime") == ("onnxruntime", "onnxruntime")
    assert engine_args("tensorflow") == {}
    assert engine_args("onnxruntime/tensorflow") == {"local_args": ["--engine", "onnxruntime"],
                                                     "remote_args": ["--engine", "tensorflow"]}
    with pytest.raises(SweepSpecError, match="UE/EDGE"):
        SweepSpec(engine="onnxruntime/tflite")
    with pytest.raises(SweepSpecError, match="no candidate partition"):
        points(SweepSpec(models=(str(tiny),), partitions=("nope",), ue_devices=("host",)))


def test_non_image_models_are_refused_for_the_nodes(tmp_path: Path) -> None:
    from splitbed.models.onnx.graph import OnnxModelError

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "vec", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "vec.onnx"))
    with pytest.raises(OnnxModelError, match="float32 image"):
        spec_for(str(tmp_path / "vec.onnx"))
    listing = subprocess.run([sys.executable, "-m", "splitbed.cli", "partitions", str(tmp_path / "vec.onnx"),
                              "--json"], capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0  # the listing works for any graph; only running it needs an image input

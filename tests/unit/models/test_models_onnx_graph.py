"""ONNX graphs built here with onnx.helper (no TensorFlow): candidate cuts, branches, extraction, ONNX Runtime,
wire layouts, and bad files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from splitbed.models.errors import GraphCutError, ModelError
from splitbed.models.onnx import graph as onnx_graph
from splitbed.models.onnx.extract import Boundary, extract_head, extract_tail
from splitbed.models.onnx.graph import OnnxModelError
from splitbed.models.onnx.runtime import OrtModel, runtime_info
from splitbed.models.onnx.split import build_split
from splitbed.models.registry import Partition

C, H, W = 4, 6, 6


def _conv(name: str, x: str, y: str, rng: np.random.Generator, inits: list[TensorProto]) -> onnx.NodeProto:
    inits.append(numpy_helper.from_array(rng.normal(size=(C, C, 3, 3)).astype(np.float32) * 0.2, f"{name}_w"))
    return helper.make_node("Conv", [x, f"{name}_w"], [y], name=name, pads=[1, 1, 1, 1])


def residual_model() -> onnx.ModelProto:
    """x -> c1 -> r1 -> c2 -> r2 -> c3 ; add = r1 + c3 ; out = relu(add) * k (k from a Constant node).
    Node order: 0 c1, 1 r1, 2 c2, 3 r2, 4 c3, 5 add, 6 const, 7 mul, 8 relu."""
    rng = np.random.default_rng(7)
    inits: list[TensorProto] = []
    nodes = [
        _conv("c1", "x", "c1_out", rng, inits),
        helper.make_node("Relu", ["c1_out"], ["r1_out"], name="r1"),
        _conv("c2", "r1_out", "c2_out", rng, inits),
        helper.make_node("Relu", ["c2_out"], ["r2_out"], name="r2"),
        _conv("c3", "r2_out", "c3_out", rng, inits),
        helper.make_node("Add", ["r1_out", "c3_out"], ["add_out"], name="add"),
        helper.make_node("Constant", [], ["k"], name="const",
                         value=numpy_helper.from_array(np.array(0.5, dtype=np.float32))),
        helper.make_node("Mul", ["add_out", "k"], ["mul_out"], name="mul"),
        helper.make_node("Relu", ["mul_out"], ["y"], name="relu_out"),
    ]
    g = helper.make_graph(nodes, "residual", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", C, H, W])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", C, H, W])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def residual(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "residual.onnx"
    onnx.save(residual_model(), str(path))
    return path


def test_cuts_chain_and_branches(residual: Path) -> None:
    g = onnx_graph.load(residual)
    cuts = {c.cut_id: c for c in g.candidate_cuts()}
    assert sorted(cuts) == [0, 1, 2, 3, 4, 5, 7, 8]  # node 6 computes a constant: never a cut
    assert [t.name for t in cuts[0].tensors] == ["c1_out"] and cuts[0].branches == 1
    # Inside the block the shortcut crosses too: two branches.
    for inside in (2, 3, 4):
        assert [t.name for t in cuts[inside].tensors] == ["r1_out", f"{cuts[inside].node[:2]}_out"]
        assert cuts[inside].branches == 2
    assert [t.name for t in cuts[5].tensors] == ["add_out"]
    assert [t.name for t in cuts[8].tensors] == ["y"]  # the last node: the output crosses (identity tail)
    t = cuts[3].tensors[1]
    assert t.per_sample_shape == (C, H, W) and t.dtype == "float32" and t.nbytes == C * H * W * 4
    assert cuts[3].raw_bytes == 2 * C * H * W * 4
    assert cuts[4].head_nodes == 5
    assert g.cut("c3") == cuts[4] and g.cut("4") == cuts[4]
    with pytest.raises(GraphCutError, match="no candidate cut 6"):
        g.cut(6)
    with pytest.raises(GraphCutError, match="no node named"):
        g.cut("nope")


def test_check_separates(residual: Path) -> None:
    g = onnx_graph.load(residual)
    g.check_separates(["r1_out", "r2_out"])
    with pytest.raises(GraphCutError, match="do not separate"):
        g.check_separates(["r2_out"])  # the shortcut r1_out is missing: the tail would need the input


def test_every_cut_runs_on_onnx_runtime(residual: Path) -> None:
    g = onnx_graph.load(residual)
    x = np.random.default_rng(1).normal(size=(2, C, H, W)).astype(np.float32)
    full = OrtModel(g.model).run([x])[0]
    for cut in g.candidate_cuts():
        bounds = [Boundary(t.name, t.name) for t in cut.tensors]
        sp = build_split(g, Partition(cut.cut_id, cut.node, tensors=cut.branches), bounds, f"c{cut.cut_id}")
        mid = sp.run_head(x)
        assert [a.shape[1:] for a in mid] == [c.shape for c in sp.cut]
        np.testing.assert_allclose(sp.run_tail(mid), full, rtol=1e-6, atol=1e-6)
    info = runtime_info()
    assert info["name"] == "onnxruntime" and info["version"].count(".") >= 1


def test_wire_permutation_round_trip(residual: Path) -> None:
    """A crossing tensor laid out NHWC on the wire while the graph computes NCHW (what converted Keras models do)."""
    g = onnx_graph.load(residual)
    bounds = [Boundary("r1_out", "shortcut_nhwc", (0, 2, 3, 1)), Boundary("r2_out", "r2_out")]
    head, tail = OrtModel(extract_head(g, bounds)), OrtModel(extract_tail(g, bounds))
    x = np.random.default_rng(2).normal(size=(1, C, H, W)).astype(np.float32)
    nchw = OrtModel(extract_head(g, [Boundary("r1_out", "r1_out"), Boundary("r2_out", "r2_out")])).run([x])
    wire = head.run([x])
    assert wire[0].shape == (1, H, W, C)
    np.testing.assert_array_equal(wire[0], nchw[0].transpose(0, 2, 3, 1))
    np.testing.assert_allclose(tail.run(wire)[0], OrtModel(g.model).run([x])[0], rtol=1e-6, atol=1e-6)
    sp = build_split(g, Partition(3, "r2", tensors=2), bounds, "perm")
    assert [c.shape for c in sp.cut] == [(H, W, C), (C, H, W)]
    with pytest.raises(ModelError, match="must be float32"):
        sp.run_tail([wire[0], wire[0]])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "splitbed.cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_lists_cuts(residual: Path) -> None:
    out = _cli("partitions", str(residual), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [c["cut_id"] for c in data["cuts"]] == [0, 1, 2, 3, 4, 5, 7, 8]
    assert [c["branches"] for c in data["cuts"]] == [1, 1, 2, 2, 2, 1, 1, 1]
    assert data["cuts"][3]["raw_bytes"] == 2 * C * H * W * 4 and data["cuts"][3]["keras_partitions"] == []
    assert data["inputs"][0]["shape"] == ["N", C, H, W] and data["sha256"]
    table = _cli("partitions", str(residual))
    assert table.returncode == 0 and "(all crossing tensors)" in table.stdout and "r1_out" in table.stdout
    refused = _cli("partitions", str(residual), "--layers")
    assert refused.returncode == 2 and "--json only" in refused.stderr and len(refused.stderr.splitlines()) == 1


def test_bad_files_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(OnnxModelError, match="not found"):
        onnx_graph.load(tmp_path / "missing.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(OnnxModelError, match="empty"):
        onnx_graph.load(tmp_path / "empty.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 64)
    with pytest.raises(OnnxModelError, match="not an ONNX model"):
        onnx_graph.load(tmp_path / "junk.onnx")
    model = residual_model()
    onnx.save(model, str(tmp_path / "big.onnx"))
    monkeypatch.setattr(onnx_graph, "MAX_ONNX_FILE_BYTES", 100)
    with pytest.raises(OnnxModelError, match="over the 100-byte cap"):
        onnx_graph.load(tmp_path / "big.onnx")
    monkeypatch.undo()
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.data", size_threshold=0)
    with pytest.raises(OnnxModelError, match="external data"):
        onnx_graph.load(tmp_path / "ext.onnx")
    broken = residual_model()
    broken.graph.node[2].input[0] = "nowhere"
    onnx.save(broken, str(tmp_path / "broken.onnx"))
    with pytest.raises(OnnxModelError, match="not a valid ONNX model|nowhere"):
        onnx_graph.load(tmp_path / "broken.onnx")
    out = _cli("partitions", str(tmp_path / "junk.onnx"))
    assert out.returncode == 2 and "Traceback" not in out.stdout + out.stderr


def test_onnx_modules_do_not_import_tensorflow(residual: Path) -> None:
    code = ("import sys; from splitbed.models.onnx import graph, extract, runtime, split, summary; "
            f"g = graph.load({str(residual)!r}); g.candidate_cuts(); summary.listing(g); "
            "print(sorted(m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"

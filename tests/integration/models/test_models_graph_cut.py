"""Graph cut on small hand-built graphs: reused layers, multi-input layers, multi-output layers, errors."""

from __future__ import annotations

import numpy as np
import pytest

from splitbed.models.errors import GraphCutError
from splitbed.models.graph import build_head, build_tail, cut_graph


def _shared_layer_model():  # type: ignore[no-untyped-def]
    """x -> a -> shared -> b -> shared -> add(first shared, second shared) -> out: `shared` is called twice."""
    import keras

    x = keras.Input((8,), name="x")
    a = keras.layers.Dense(8, name="a")(x)
    shared = keras.layers.Dense(8, name="shared")
    s1 = shared(a)
    b = keras.layers.Dense(8, name="b")(s1)
    s2 = shared(b)
    added = keras.layers.Add(name="add")([s1, s2])
    left, right = keras.ops.split(added, 2, axis=-1)  # a two-output operation
    out = keras.layers.Concatenate(name="cat")([right, left])
    return keras.Model(x, out, name="toy")


def _run(model, layer: str):  # type: ignore[no-untyped-def]
    cut = cut_graph(model, layer)
    head, tail = build_head(model, cut, "h"), build_tail(model, cut, "t")
    x = np.random.default_rng(0).normal(size=(3, 8)).astype("float32")
    mid = head(x)
    mid = list(mid) if isinstance(mid, (list, tuple)) else [mid]
    assert len(mid) == len(cut.crossing)
    full = np.asarray(model(x))
    np.testing.assert_array_equal(np.asarray(tail(mid if len(mid) > 1 else mid[0])), full)
    return cut


def test_cut_between_two_calls_of_a_shared_layer() -> None:
    model = _shared_layer_model()
    cut = _run(model, "b")
    # The first call's output feeds both `b` (head) and `add` (tail): it crosses along with b's output.
    assert [c.name for c in cut.crossing] == ["shared@0", "b"]
    # The tail re-applies the same layer object (weights shared), not a copy.
    tail_layers = {cut.nodes[i].layer for i in cut.tail}
    assert model.get_layer("shared") in tail_layers


def test_cut_after_multi_input_layer() -> None:
    cut = _run(_shared_layer_model(), "add")
    assert [c.name for c in cut.crossing] == ["add"]


def test_cut_at_a_shared_layer_is_refused() -> None:
    with pytest.raises(GraphCutError, match="called 2 times"):
        cut_graph(_shared_layer_model(), "shared")


def test_unknown_layer() -> None:
    with pytest.raises(GraphCutError, match="no layer 'nope'"):
        cut_graph(_shared_layer_model(), "nope")


def test_multi_output_operation_names_its_outputs() -> None:
    model = _shared_layer_model()
    split_op = next(op for op in model.operations if len(op._inbound_nodes[0].outputs) == 2)
    cut = _run(model, split_op.name)
    assert [c.name for c in cut.crossing] == [f"{split_op.name}:0", f"{split_op.name}:1"]

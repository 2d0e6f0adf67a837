"""Why splitbed walks the graph: the testbed contribution's Keras 2 recipe and a naive rebuild are unreliable in Keras 3.

`keras.Input(tensor=t)` returns `t` itself and takes over its history, so the testbed contribution's
`Model(Input(tensor=split_layer.output), model.outputs)` only runs for single-tensor cuts, only when the local
model was built first, and never inside a residual block. Re-applying the later layers one by one to a single
tensor loses the shortcut. These tests build fresh architectures (the recipe rewrites the graph it touches).
If one starts passing in a future Keras, docs/MODELS.md needs revisiting."""

from __future__ import annotations

import numpy as np
import pytest

from splitbed.models.loading import build_architecture

X = np.random.default_rng(1).normal(size=(1, 224, 224, 3)).astype("float32") * 50


def _seed_recipe(model, layer: str, local_first: bool):  # type: ignore[no-untyped-def]
    import keras

    split_layer = model.get_layer(name=layer)
    if local_first:
        local_model = keras.Model(model.inputs, split_layer.output)
        remote_model = keras.Model(keras.Input(tensor=split_layer.output), model.outputs)
    else:
        remote_model = keras.Model(keras.Input(tensor=split_layer.output), model.outputs)
        local_model = keras.Model(model.inputs, split_layer.output)
    return remote_model(local_model(X))


def test_seed_recipe_depends_on_construction_order() -> None:
    # Keras's message varies ("not connected to inputs", "name input_layer is used 2 times"): any ValueError.
    with pytest.raises(ValueError):
        _seed_recipe(build_architecture("vgg16"), "block3_pool", local_first=False)


@pytest.mark.parametrize("local_first", [True, False])
def test_seed_recipe_fails_inside_a_residual_block(local_first: bool) -> None:
    with pytest.raises(ValueError, match="not connected"):
        _seed_recipe(build_architecture("resnet50"), "conv4_block2_2_relu", local_first)


def test_naive_chain_rebuild_breaks_inside_a_residual_block() -> None:
    """Re-applying each later layer to the running tensor loses the shortcut: it fails at the block's Add."""
    import keras

    model = build_architecture("resnet50")
    names = [layer.name for layer in model.layers]
    start = names.index("conv4_block2_2_relu") + 1
    t = keras.Input(shape=model.get_layer("conv4_block2_2_relu").output.shape[1:])
    with pytest.raises((ValueError, TypeError, NotImplementedError)):  # Add gets one tensor instead of two
        for layer in model.layers[start:]:
            t = layer(t)


def test_graph_walk_handles_the_same_cut(resnet50) -> None:  # type: ignore[no-untyped-def]
    from splitbed.models import split

    sm = split(resnet50, "conv4_block2_2_relu")
    assert [c.name for c in sm.cut] == ["conv4_block1_out", "conv4_block2_2_relu"]
    full = np.asarray(resnet50.keras_model(X, training=False))
    np.testing.assert_allclose(sm.run_tail(sm.run_head(X, compiled=False), compiled=False), full, rtol=0,
                               atol=1e-5)

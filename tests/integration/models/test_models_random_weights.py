"""Seeded random weights (scheme 2) give informative outputs, so that comparing predictions can fail.

Scheme 1 (Keras initialisers only) let MobileNetV2's activations shrink to ~1e-11 before the pooling: its softmax
was exactly 0.001 for every class and every image. Here: every model's output is clearly non-uniform, differs
between two photos, activations stay O(1) through every layer, at the registry's input sizes too, and the record
says which scheme and which exact weights (digest) made it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from splitbed.models import calibration, calibration_cache, loading, registry, weights
from splitbed.models.calibration import calibration_images
from splitbed.models.errors import ModelError
from splitbed.models.preprocess import load_image

CLASSES = 1000
MIN_TOP_PROBABILITY = 2 / CLASSES
MIN_ENTROPY_DROP = 0.3  # nats below log(1000)
# At the native size the output must not be saturated either (scheme 1 gave ResNet50 0.99 on astronaut, class 335
# for every photo). At the registry's smallest input (32x32: one position before the pooling) scheme 2 saturates
# too (ResNet50 0.998 on chelsea) but still differs between photos: only that is required there.
MAX_NATIVE_TOP_PROBABILITY = 0.95
# The e2e correctness check compares probabilities within 1e-5: another photo must move them far more.
MIN_OTHER_PHOTO_DIFFERENCE = 1e-3
# Per-layer output standard deviation on a photo, inference mode (scheme 1 reached 5e-12 in MobileNetV2).
ACTIVATION_STD_RANGE = (1e-2, 1e2)
SMALL_SIDE = registry.MIN_INPUT_SIDE


def _probabilities(model: Any, image: Any) -> np.ndarray:
    x = load_image(image, model.spec).array
    return np.asarray(model.keras_model.predict_on_batch(x), dtype=np.float64).reshape(-1)


def _entropy(p: np.ndarray) -> float:
    return float(-(p * np.log(np.clip(p, 1e-30, 1.0))).sum())


def assert_informative(model: Any, chelsea: Any, other: Any, where: str, max_top: float = 1.0) -> None:
    first, second = _probabilities(model, chelsea), _probabilities(model, other)
    for name, p in (("chelsea", first), ("astronaut", second)):
        assert p.shape == (CLASSES,) and abs(p.sum() - 1.0) < 1e-4
        assert p.max() <= max_top, f"{where} {name}: saturated, top probability {p.max():.6f}"
        assert p.max() > MIN_TOP_PROBABILITY, f"{where} {name}: top probability {p.max():.6f} (uniform: 0.001)"
        assert _entropy(p) < np.log(CLASSES) - MIN_ENTROPY_DROP, (
            f"{where} {name}: entropy {_entropy(p):.4f} nats, uniform {np.log(CLASSES):.4f}")
    difference = float(np.abs(first - second).max())
    assert difference > MIN_OTHER_PHOTO_DIFFERENCE, f"{where}: two photos differ by only {difference:.2e}"


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    import skimage.data

    return np.asarray(skimage.data.astronaut())


@pytest.fixture(scope="module")
def models(mobilenet, resnet50, vgg16) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {"mobilenet_v2": mobilenet, "resnet50": resnet50, "vgg16": vgg16}


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50", "vgg16"])
def test_outputs_are_informative_and_input_dependent(name: str, models, chelsea_path,  # type: ignore[no-untyped-def]
                                                     astronaut) -> None:
    assert_informative(models[name], chelsea_path, astronaut, f"{name} at 224x224", MAX_NATIVE_TOP_PROBABILITY)


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50", "vgg16"])
def test_activations_stay_order_one(name: str, models, chelsea_path) -> None:  # type: ignore[no-untyped-def]
    """The root cause of scheme 1's uniform output: activations vanishing layer after layer. A kernel layer that
    feeds only a BatchNormalization is left out: the BN sets its scale."""
    import keras

    model = models[name].keras_model
    feeds_bn_only = {layer.name for layer in model.layers if layer._outbound_nodes and all(
        isinstance(node.operation, keras.layers.BatchNormalization) for node in layer._outbound_nodes)}
    layers = [layer for layer in model.layers[1:-1] if layer.name not in feeds_bn_only]
    probe = keras.Model(model.input, [layer.output for layer in layers])
    x = load_image(chelsea_path, models[name].spec).array
    low, high = ACTIVATION_STD_RANGE
    for layer, value in zip(layers, probe(x, training=False), strict=True):
        std = float(np.asarray(value).std())
        assert low < std < high, f"{name} {layer.name}: output std {std:.3g} on chelsea, outside {low}..{high}"


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50"])
@pytest.mark.parametrize("size", [(SMALL_SIDE, SMALL_SIDE), (96, 128)])
def test_other_input_sizes_stay_informative(name: str, size: tuple[int, int], models,  # type: ignore[no-untyped-def]
                                            chelsea_path, astronaut) -> None:
    assert_informative(models[name].at_input_size(*size), chelsea_path, astronaut, f"{name} at {size}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50"])
def test_largest_input_size_stays_informative(name: str, models, chelsea_path,  # type: ignore[no-untyped-def]
                                              astronaut) -> None:
    side = registry.MAX_INPUT_SIDE
    assert_informative(models[name].at_input_size(side, side), chelsea_path, astronaut, f"{name} at {side}")


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50", "vgg16"])
def test_record_names_scheme_and_exact_weights(name: str, models) -> None:  # type: ignore[no-untyped-def]
    loaded = models[name]
    assert loaded.weights.scheme == weights.RANDOM_SCHEME == 2
    assert loaded.weights.sha256 == weights.weights_sha256(loaded.keras_model)
    assert weights.WeightsInfo.from_dict(loaded.weights.to_dict()) == loaded.weights


THREADS_SCRIPT = """
import sys, warnings
warnings.simplefilter("ignore")
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
from splitbed.models import load
print("SHA256", load(sys.argv[1], "random:0").weights.sha256)
"""


def test_calibration_does_not_depend_on_thread_count(mobilenet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Calibration runs real convolutions and reductions: a process on one thread, with a cache of its own (so it
    calibrates anew), gives the same bits as this process's pool."""
    env = dict(os.environ, **{calibration_cache.CACHE_ENV: str(tmp_path / "cache")})
    done = subprocess.run([sys.executable, "-c", THREADS_SCRIPT, "mobilenet_v2"], capture_output=True, text=True,
                          timeout=240, check=True, env=env)
    assert list((tmp_path / "cache").glob("mobilenet_v2-224x224-0-*.npz")), "the subprocess did not calibrate"
    digests = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("SHA256")]
    assert digests == [mobilenet.weights.sha256]


def test_calibration_images_are_a_pure_function_of_the_seed() -> None:
    first = calibration_images(0, 2, 64, 48)
    assert first.shape == (2, 64, 48, 3) and first.dtype == np.float32
    assert np.array_equal(first, calibration_images(0, 2, 64, 48))
    assert not np.array_equal(first, calibration_images(1, 2, 64, 48))
    assert first.min() >= 0.0 and first.max() <= 255.0
    assert not np.array_equal(first[0], first[1]) and first.std() > 20.0


def test_a_damaged_calibration_cache_is_refused_with_the_fix(  # type: ignore[no-untyped-def]
        mobilenet, tmp_path, monkeypatch) -> None:
    """A cache file that is not ours, or values that do not fit the model, raise one line that says what to do.
    (A missing file is computed anew by the one-thread child: test_calibration_does_not_depend_on_thread_count.)"""
    spec = mobilenet.spec
    name = f"{calibration_cache.cache_key(spec, 0)}.npz"
    good = calibration_cache.cache_dir() / name  # the `mobilenet` fixture's load calibrated into it
    assert good.is_file(), good
    monkeypatch.setenv(calibration_cache.CACHE_ENV, str(tmp_path))
    path = tmp_path / name
    path.write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match="not a readable calibration file.*delete it"):
        calibration_cache.calibration_for(spec, 0)
    path.unlink()
    shutil.copyfile(good, path)  # the good file, as the child would write it again (without its TensorFlow start)
    values = calibration_cache.calibration_for(spec, 0)
    model = loading.seeded_build(spec, 0)
    bad = dict(values)
    key = next(k for k in bad if k.startswith("bn:"))
    bad[key] = bad[key][:-1]
    with pytest.raises(ModelError, match=f"calibration value {key} is float32"):
        calibration.apply_values(model, bad)
    stray = dict(values, **{"factor:no_such_layer": np.asarray(2.0)})
    with pytest.raises(ModelError, match="does not have"):
        calibration.apply_values(loading.seeded_build(spec, 0), stray)
    model = loading.seeded_build(spec, 0)
    calibration.apply_values(model, values)
    assert weights.weights_sha256(model) == mobilenet.weights.sha256

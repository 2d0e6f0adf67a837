"""Weights really loaded: seeded random weights identical across processes, files, bad files, auto offline."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from splitbed.models import RandomWeightsWarning, WeightsError, calibration_cache, load, registry, weights
from splitbed.models.labels import decode_predictions
from splitbed.models.preprocess import load_image
from splitbed.plugin.reference import shared_load

DIGEST_SCRIPT = """
import hashlib, sys, warnings
warnings.simplefilter("ignore")
from splitbed.models import load
digest = hashlib.sha256()
for w in load(sys.argv[1], sys.argv[2]).keras_model.get_weights():
    digest.update(w.tobytes())
print("DIGEST", digest.hexdigest())
"""


def _digest(model) -> str:  # type: ignore[no-untyped-def]
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(w.tobytes())
    return digest.hexdigest()


def _quiet_load(name: str, spec: str):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return load(name, spec)


def test_random_weights_identical_in_separate_processes(mobilenet) -> None:  # type: ignore[no-untyped-def]
    """The UE and the edge load the model in different processes: random:SEED must give the same bits."""
    procs = [subprocess.Popen([sys.executable, "-c", DIGEST_SCRIPT, "mobilenet_v2", "random:0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    digests = []
    for proc in procs:
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0
        digests += [line.split()[1] for line in out.splitlines() if line.startswith("DIGEST")]
    assert len(digests) == 2
    # Two fresh processes and this one (which built other models before) agree bit for bit.
    assert digests[0] == digests[1] == _digest(mobilenet.keras_model)


def test_other_seed_other_weights_and_global_rng_untouched(mobilenet) -> None:  # type: ignore[no-untyped-def]
    np.random.seed(1234)
    expected_next = np.random.random()
    np.random.seed(1234)
    other = _quiet_load("mobilenet_v2", "random:1")
    assert np.random.random() == expected_next  # load() put NumPy's global generator back
    assert _digest(other.keras_model) != _digest(mobilenet.keras_model)
    assert other.weights.seed == 1 and other.weights.warning


def test_file_weights_round_trip(mobilenet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "mobilenet_seed0.weights.h5"
    mobilenet.keras_model.save_weights(str(path))
    loaded = load("mobilenet_v2", str(path))
    assert loaded.weights.source == "file" and loaded.weights.warning is None
    assert loaded.weights.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert _digest(loaded.keras_model) == _digest(mobilenet.keras_model)


def test_legacy_h5_like_the_imagenet_download(mobilenet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The files Keras downloads for `imagenet` are Keras 2 HDF5 weights; a user may pass one as a path."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    path = tmp_path / "mobilenet_v2_legacy.h5"
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, mobilenet.keras_model)
    loaded = load("mobilenet_v2", f"file:{path}")
    assert loaded.weights.source == "file"
    assert _digest(loaded.keras_model) == _digest(mobilenet.keras_model)


def test_corrupt_and_wrong_files_are_clear_errors(mobilenet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_bytes(b"\x00not hdf5" * 100)
    with pytest.raises(WeightsError, match=r"cannot load mobilenet_v2 weights from .*garbage\.weights\.h5"):
        load("mobilenet_v2", str(garbage))

    good = tmp_path / "good.weights.h5"
    mobilenet.keras_model.save_weights(str(good))
    truncated = tmp_path / "truncated.weights.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsError, match="cannot load mobilenet_v2 weights"):
        load("mobilenet_v2", str(truncated))

    import keras

    tiny = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="only")])
    other = tmp_path / "tiny.weights.h5"
    tiny.save_weights(str(other))
    with pytest.raises(WeightsError, match="saved from this architecture"):
        load("mobilenet_v2", str(other))

    wrong_suffix = tmp_path / "weights.bin"
    wrong_suffix.write_bytes(good.read_bytes())
    with pytest.raises(WeightsError, match="cannot load"):
        load("mobilenet_v2", str(wrong_suffix))


def test_auto_offline_falls_back_loudly(mobilenet, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                        tmp_path: Path) -> None:
    # The calibration cache stays where the `mobilenet` fixture filled it: moving HOME (to hide ~/.keras) would
    # move it too, and calibrating anew in a child costs a TensorFlow start that this test does not check.
    monkeypatch.setenv(calibration_cache.CACHE_ENV, str(calibration_cache.cache_dir()))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    weights.network_reachable.cache_clear()
    if weights.keras_cache_file(registry.get("mobilenet_v2").imagenet_weights_file):
        pytest.skip("ImageNet weights cached in /tmp/.keras: auto would use them")
    with pytest.warns(RandomWeightsWarning, match="RANDOM WEIGHTS"):
        loaded = load("mobilenet_v2")
    assert (loaded.weights.source, loaded.weights.seed, loaded.weights.requested) == ("random", 0, "auto")
    assert _digest(loaded.keras_model) == _digest(mobilenet.keras_model)
    # A test fixture asking for the same weights shares the live Keras model, with this request's own record.
    with pytest.warns(RandomWeightsWarning, match="RANDOM WEIGHTS"):
        shared = shared_load("mobilenet_v2", "auto")
    assert shared.keras_model is mobilenet.keras_model  # the fixture's (conftest.py loads with shared_load)
    assert shared.weights == loaded.weights and shared.spec == loaded.spec


def test_decode_matches_keras_decode_predictions(mobilenet, chelsea_path) -> None:  # type: ignore[no-untyped-def]
    """Keras's own decode_predictions, fed our class index (it cannot download its copy here), agrees."""
    from keras.src.applications import imagenet_utils

    from splitbed.models.labels import CLASS_INDEX_FILE

    x = load_image(chelsea_path, mobilenet.spec).array
    preds = np.asarray(mobilenet.keras_model(x, training=False))
    import json
    from importlib import resources

    imagenet_utils.CLASS_INDEX = json.loads((resources.files("splitbed.models") / "data" /
                                             CLASS_INDEX_FILE).read_text())
    theirs = imagenet_utils.decode_predictions(preds, top=5)[0]
    ours = decode_predictions(preds, top=5)[0]
    assert [(w, n) for w, n, _ in ours] == [(w, n) for w, n, _ in theirs]
    np.testing.assert_allclose([s for *_, s in ours], [float(s) for *_, s in theirs])


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50", "vgg16"])
def test_imagenet_weights_classify_chelsea_as_a_cat(name: str, chelsea_path) -> None:  # type: ignore[no-untyped-def]
    spec = registry.get(name)
    if weights.keras_cache_file(spec.imagenet_weights_file) is None:
        pytest.skip(f"ImageNet weights {spec.imagenet_weights_file} not in the Keras cache (offline machine)")
    loaded = load(name, "imagenet")
    assert loaded.weights.source == "imagenet" and loaded.weights.warning is None
    x = load_image(chelsea_path, spec).array
    top5 = decode_predictions(np.asarray(loaded.keras_model(x, training=False)), top=5)[0]
    assert {"tabby", "tiger_cat", "Egyptian_cat"} & {label for _, label, _ in top5}

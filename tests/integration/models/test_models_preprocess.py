"""Preprocessing as the testbed contribution does it (load_img -> img_to_array -> preprocess_input), sizes, arrays, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from splitbed.models import registry
from splitbed.models.errors import ImageError
from splitbed.models.preprocess import load_image


def test_file_matches_seed_pipeline(chelsea_path: Path) -> None:
    import keras
    from keras.applications.vgg16 import preprocess_input

    spec = registry.get("vgg16")
    prepared = load_image(chelsea_path, spec)
    img = keras.utils.load_img(str(chelsea_path), target_size=(224, 224))
    seed = preprocess_input(np.expand_dims(keras.utils.img_to_array(img), axis=0))
    np.testing.assert_array_equal(prepared.array, seed)
    assert prepared.array.shape == (1, 224, 224, 3) and prepared.array.dtype == np.float32
    assert prepared.input_bytes == os.path.getsize(chelsea_path)
    assert prepared.preprocessed_bytes == 224 * 224 * 3 * 4 == 602_112


def test_modes_differ_per_application(chelsea_path: Path) -> None:
    mob = load_image(chelsea_path, registry.get("mobilenet_v2")).array
    assert mob.min() >= -1.0 and mob.max() <= 1.0  # tf mode
    caffe = load_image(chelsea_path, registry.get("resnet50")).array
    assert caffe.min() < -50 and caffe.max() > 50  # caffe mode: BGR minus ImageNet means


def test_array_equals_lossless_file(tmp_path: Path) -> None:
    import skimage.data
    from PIL import Image

    rgb = skimage.data.chelsea()
    png = tmp_path / "chelsea.png"
    Image.fromarray(rgb).save(png)
    spec = registry.get("resnet50")
    from_array = load_image(rgb, spec)
    np.testing.assert_array_equal(from_array.array, load_image(png, spec).array)
    assert from_array.input_bytes == rgb.nbytes and from_array.source == "array"
    gray = load_image(rgb[..., 0], spec)  # grayscale arrays become 3 equal channels
    assert gray.array.shape == (1, 224, 224, 3)


def test_bad_inputs(tmp_path: Path) -> None:
    spec = registry.get("mobilenet_v2")
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.jpg", spec)
    empty = tmp_path / "empty.jpg"
    empty.touch()
    with pytest.raises(ImageError, match="empty"):
        load_image(empty, spec)
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image")
    with pytest.raises(ImageError, match="not an image"):
        load_image(text, spec)
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((10, 10, 5), np.uint8), spec)
    with pytest.raises(ImageError, match="must be uint8"):
        load_image(np.zeros((10, 10, 3), np.float32), spec)
    with pytest.raises(ImageError, match="finite"):
        load_image(np.full((224, 224, 3), np.nan, np.float32), spec)
    with pytest.raises(ImageError, match="file path or a numpy array"):
        load_image(42, spec)
    with pytest.raises(ImageError, match="directory|regular file"):
        load_image(tmp_path, spec)


def test_truncated_jpeg_is_a_clear_error(tmp_path: Path, chelsea_path: Path) -> None:
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(chelsea_path.read_bytes()[:2000])
    with pytest.raises(ImageError, match="cannot decode"):
        load_image(cut, registry.get("mobilenet_v2"))

"""Model input from an image file or an array, preprocessed exactly as the model's Keras application defines.

File path follows the testbed contribution: keras.utils.load_img(path, target_size) -> img_to_array -> expand_dims ->
preprocess_input of the application (VGG16/ResNet50: caffe mode, RGB->BGR and ImageNet mean subtraction;
MobileNetV2: tf mode, scaled to [-1, 1]). The testbed contribution's "input data size" is the file's size in bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from splitbed.models import tfboot
from splitbed.models.errors import ImageError
from splitbed.models.registry import ModelSpec

MAX_IMAGE_FILE_BYTES = 64 * 1024 * 1024  # checked before anything is read
MAX_IMAGE_PIXELS = 50_000_000  # checked from the header before the pixels are decoded


@dataclass(frozen=True)
class PreparedInput:
    """A batch of one preprocessed image and the testbed contribution's two size figures."""

    array: np.ndarray  # (1, height, width, 3) float32, ready for the model (or its head)
    input_bytes: int  # file size, or the given array's nbytes
    preprocessed_bytes: int  # array.nbytes
    source: str  # file path or "array"


def preprocess_batch(batch: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """The model's preprocessing of a batch of RGB images (0..255, any numeric dtype): what the camera
    pseudo-partition's tail runs on the edge (splitbed.models.camera)."""
    return _preprocess(batch, spec)


def _preprocess(batch: np.ndarray, spec: ModelSpec) -> np.ndarray:
    prepare = getattr(spec, "prepare_batch", None)
    if prepare is not None:  # an ONNX file's own preprocessing (splitbed.models.onnx.model.OnnxFileSpec)
        return np.asarray(prepare(batch))
    keras = tfboot.keras()
    module = getattr(keras.applications, spec.keras_module)
    return np.asarray(module.preprocess_input(batch.astype("float32", copy=True)), dtype="float32")


def _check_header(path: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            width, height = img.size
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path} is not an image PIL can decode ({exc})") from exc
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from exc
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(f"{path} is {width}x{height} pixels, over the {MAX_IMAGE_PIXELS:,}-pixel cap")


def _from_file(path: Path, spec: ModelSpec, capture_only: bool = False) -> PreparedInput:
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    if not path.is_file():
        raise ImageError(f"image path is not a regular file: {path}")
    size = os.path.getsize(path)
    if size == 0:
        raise ImageError(f"image file is empty: {path}")
    if size > MAX_IMAGE_FILE_BYTES:
        raise ImageError(f"image file {path} is {size:,} bytes, over the {MAX_IMAGE_FILE_BYTES:,}-byte cap")
    _check_header(path)

    keras = tfboot.keras()
    try:
        img = keras.utils.load_img(str(path), target_size=spec.target_size)
    except Exception as exc:  # truncated or corrupt pixel data surfaces only here
        raise ImageError(f"cannot decode image {path}: {type(exc).__name__}: {exc}") from exc
    batch = np.expand_dims(keras.utils.img_to_array(img), axis=0)
    # load_img resizes a uint8 PIL image: its float32 values are whole numbers 0..255, so uint8 holds them exactly
    array = batch.astype(np.uint8) if capture_only else _preprocess(batch, spec)
    return PreparedInput(array=array, input_bytes=size, preprocessed_bytes=array.nbytes, source=str(path))


def _from_array(image: np.ndarray, spec: ModelSpec) -> PreparedInput:
    arr = image[0] if image.ndim == 4 and image.shape[0] == 1 else image
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError(f"image array must be (height, width, 3|4), (height, width) or (1, height, width, 3), "
                         f"got shape {image.shape}")
    if arr.size == 0:
        raise ImageError("image array is empty")
    if arr.shape[0] * arr.shape[1] > MAX_IMAGE_PIXELS:
        raise ImageError(f"image array has {arr.shape[0] * arr.shape[1]:,} pixels, over the cap")
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise ImageError(f"image array must hold finite numbers, got dtype {arr.dtype}")
    arr = arr[..., :3]
    if tuple(arr.shape[:2]) != spec.target_size:
        if arr.dtype != np.uint8:
            raise ImageError(f"an image array of another size than {spec.target_size} must be uint8 (it is "
                             f"resized like a file, nearest neighbour); got {arr.dtype} {arr.shape}")
        from PIL import Image

        height, width = spec.target_size
        arr = np.asarray(Image.fromarray(arr).resize((width, height), Image.Resampling.NEAREST))
    array = _preprocess(np.expand_dims(arr, axis=0), spec)
    return PreparedInput(array=array, input_bytes=int(image.nbytes), preprocessed_bytes=array.nbytes,
                         source="array")


def capture_image(path: str | os.PathLike[str], spec: ModelSpec) -> PreparedInput:
    """The camera's image for the camera pseudo-partition: the file decoded and resized exactly as load_image does,
    as a (1, height, width, 3) uint8 batch, not preprocessed (the edge preprocesses it)."""
    return _from_file(Path(path), spec, capture_only=True)


def load_image(path_or_array: str | os.PathLike[str] | np.ndarray | Any, spec: ModelSpec) -> PreparedInput:
    """Preprocessed model input from an image file (any format PIL reads) or an RGB array (0..255)."""
    if isinstance(path_or_array, np.ndarray):
        return _from_array(path_or_array, spec)
    if isinstance(path_or_array, (str, os.PathLike)):
        return _from_file(Path(path_or_array), spec)
    raise ImageError(f"load_image takes a file path or a numpy array, got {type(path_or_array).__name__}")

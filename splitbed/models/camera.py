"""The camera pseudo-partition (splitbed.models.registry.CAMERA_PARTITION): full offload of the camera image.

The UE's head is the capture alone: the uint8 RGB image at the model's input size, as a camera delivering frames
at that size gives it (the image file decoded and resized exactly as for every other partition, then not
preprocessed). The edge's tail is the model's preprocessing followed by the whole model, i.e. the tail of the
model's `input_layer` partition. The raw baseline sends that uint8 tensor as it is; the JPEG baseline codes it
with a JPEG compression profile (splitbed.format.profiles). Preprocessing the uint8 image on the edge gives the
same float32 tensor the UE would have made, so the raw baseline's predictions equal the unsplit model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from splitbed.models.registry import CAMERA_PARTITION, ModelSpec
from splitbed.models.splitter import CutTensor, SplitModel

OFFLOAD_PARTITION = "input_layer"  # its tail is the whole model
CUT_NAME = "camera_image"


@dataclass(frozen=True)
class Capture:
    """The camera head: hands the captured image on as it is (no model, no weights)."""

    layers: tuple[Any, ...] = ()
    weights: tuple[Any, ...] = ()

    def predict_on_batch(self, x: Any) -> np.ndarray:
        return np.asarray(x)


@dataclass(frozen=True)
class PreprocessAndModel:
    """The camera tail: the model's own preprocessing of the uint8 image, then the whole model."""

    spec: ModelSpec
    model: Any  # the input_layer partition's tail (Keras, or an ONNX Runtime sub-graph)

    def predict_on_batch(self, x: Any) -> Any:
        from splitbed.models.preprocess import preprocess_batch

        return self.model.predict_on_batch(preprocess_batch(np.asarray(x), self.spec))


def camera_split(loaded: Any) -> SplitModel:
    """Head and tail of the camera pseudo-partition of a loaded model (Keras, or converted to ONNX Runtime)."""
    offload = loaded.split(OFFLOAD_PARTITION)
    cut = [CutTensor(name=CUT_NAME, shape=tuple(int(d) for d in loaded.spec.input_shape), dtype="uint8")]
    return SplitModel(head=Capture(), tail=PreprocessAndModel(loaded.spec, offload.tail), cut=cut,
                      partition=CAMERA_PARTITION, graph_cut=getattr(offload, "graph_cut", None))  # type: ignore[arg-type]


def is_camera(partition_id: int) -> bool:
    return partition_id == CAMERA_PARTITION.partition_id

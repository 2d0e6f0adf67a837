"""Models and partitioning: registry, weights, graph cut into head/tail, preprocessing, ImageNet labels.

Importing this package does not import TensorFlow; building a model does. Public API (docs/ARCHITECTURE.md):
`registry.get(name)`, `registry.names()`, `load(name, weights="auto")`, `split(loaded, partition)`,
`preprocess.load_image(path_or_array, spec)`, `labels.decode_predictions(preds, top=5)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from splitbed.models import registry
from splitbed.models.errors import (
    GraphCutError,
    ImageError,
    ModelError,
    PartitionDataError,
    UnknownModelError,
    UnknownPartitionError,
    WeightsError,
)
from splitbed.models.loading import LoadedModel, load
from splitbed.models.registry import ModelSpec, Partition
from splitbed.models.weights import RandomWeightsWarning, WeightsInfo

if TYPE_CHECKING:
    from splitbed.models.splitter import CutTensor, SplitModel


def split(loaded: LoadedModel, partition: Partition | int | str) -> SplitModel:
    """Head and tail of `loaded` at a candidate partition (cached per partition); see splitbed.models.split."""
    from splitbed.models.splitter import split as _split

    return _split(loaded, partition)


def spec_for(model: str) -> ModelSpec:
    """The spec of a registered model name, or of an `.onnx` file (`splitbed.models.onnx.model.OnnxFileSpec`:
    its partitions are the graph's candidate cuts)."""
    from splitbed.models.onnx import is_onnx_path

    if is_onnx_path(model):
        from splitbed.models.onnx.model import file_spec

        return file_spec(model)
    return registry.get(model)


def __getattr__(name: str) -> Any:  # CutTensor/SplitModel live with numpy-using code; import on demand
    if name in ("CutTensor", "SplitModel"):
        from splitbed.models import splitter as split_module

        return getattr(split_module, name)
    raise AttributeError(name)


__all__ = [
    "CutTensor", "GraphCutError", "ImageError", "LoadedModel", "ModelError", "ModelSpec", "Partition",
    "PartitionDataError", "RandomWeightsWarning", "SplitModel", "UnknownModelError", "UnknownPartitionError",
    "WeightsError", "WeightsInfo", "load", "registry", "spec_for", "split",
]

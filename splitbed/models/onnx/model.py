"""ONNX models as the nodes use them: a spec (input, partitions, preprocessing) and a loaded model whose splits run
on ONNX Runtime, for an `.onnx` file or for a registered Keras model converted at first use.

- An `.onnx` file: `file_spec(path)` is an `OnnxFileSpec` (a `ModelSpec`): its partitions are the graph's
  candidate cuts (id = node index, name = node name; `splitbed partitions FILE.onnx` lists them). Preprocessing:
  a file splitbed converted from a registered model uses that model's Keras `preprocess_input` (NHWC); any other
  file gets ImageNet's mean/std normalisation of RGB values in [0, 1] (the ONNX Model Zoo's vision classifiers,
  e.g. the VGG16 of 3GPP TR 26.847), in the layout of its input (NCHW when the input has 3 channels first). The
  input must be one float32 image tensor [batch, 3, H, W] or [batch, H, W, 3] with H and W fixed.
- A registered model on ONNX Runtime (`load_converted`): the Keras spec and weights, the converted graph
  (`convert.converted`), and the same partitions with the same wire tensors as on TensorFlow.

`OnnxLoaded.split(partition)` is cached per partition, like `LoadedModel.split`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from splitbed.models.errors import ModelError
from splitbed.models.onnx.extract import Boundary
from splitbed.models.onnx.graph import MAX_CUT_ID, OnnxGraph, OnnxModelError
from splitbed.models.onnx.split import OnnxSplit, build_split
from splitbed.models.registry import ModelSpec, Partition
from splitbed.models.weights import WeightsInfo

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB in [0, 1]; the ONNX Model Zoo's (and torchvision's) normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESS_IMAGENET = "imagenet-mean-std (RGB / 255, minus mean, over std)"


@dataclass(frozen=True)
class OnnxFileSpec(ModelSpec):
    """The spec of an `.onnx` file. `input_shape` is the model input per sample as the graph has it (C, H, W or
    H, W, C); `target_size` is the image size either way."""

    path: str = ""
    layout: str = "NHWC"  # of the input image tensor
    preprocessing: str = PREPROCESS_IMAGENET  # or "keras:<module>" for a file splitbed converted
    sha256: str = ""

    @property
    def target_size(self) -> tuple[int, int]:
        s = self.input_shape
        return (s[1], s[2]) if self.layout == "NCHW" else (s[0], s[1])

    def at_input_size(self, height: int, width: int) -> ModelSpec:
        if (height, width) == self.target_size:
            return self
        raise ModelError(f"{self.path} takes only {self.target_size[0]}x{self.target_size[1]} inputs (its graph "
                         "fixes the input size)")

    def prepare_batch(self, batch: np.ndarray) -> np.ndarray:
        """Model input from a batch of RGB images (batch, H, W, 3) with values 0..255."""
        if self.preprocessing.startswith("keras:"):
            import keras

            module = getattr(keras.applications, self.preprocessing.split(":", 1)[1])
            out = np.asarray(module.preprocess_input(batch.astype("float32", copy=True)), dtype="float32")
        else:
            mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
            std = np.asarray(IMAGENET_STD, dtype=np.float32)
            out = (batch.astype(np.float32) / 255.0 - mean) / std
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2) if self.layout == "NCHW" else out, dtype=np.float32)


def _image_input(graph: OnnxGraph) -> tuple[tuple[int, int, int], str]:
    if len(graph.input_names) != 1:
        raise OnnxModelError(f"{graph.source}: {len(graph.input_names)} graph inputs; the nodes feed one image "
                             "tensor")
    t = graph.tensor(graph.input_names[0])
    dims = t.per_sample_shape
    ok = t.dtype == "float32" and dims is not None and len(dims) == 3 and all(isinstance(d, int) for d in dims)
    if ok and dims is not None and dims[0] == 3:
        return (3, int(dims[1] or 0), int(dims[2] or 0)), "NCHW"
    if ok and dims is not None and dims[2] == 3:
        return (int(dims[0] or 0), int(dims[1] or 0), 3), "NHWC"
    raise OnnxModelError(f"{graph.source}: input {t.name!r} is {t.dtype}{list(t.shape or [])}; the nodes feed one "
                         "float32 image [batch, 3, H, W] or [batch, H, W, 3] with H and W fixed")


def spec_of_graph(graph: OnnxGraph) -> OnnxFileSpec:
    from splitbed.models import registry

    shape, layout = _image_input(graph)
    source = graph.splitbed_metadata("source")
    preprocessing = PREPROCESS_IMAGENET
    if isinstance(source, dict) and source.get("model") in registry.names():
        preprocessing = f"keras:{registry.get(str(source['model'])).keras_module}"
    parts = tuple(Partition(partition_id=c.cut_id, name=c.node, tensors=c.branches)
                  for c in graph.candidate_cuts() if c.cut_id <= MAX_CUT_ID)
    if not parts:
        raise OnnxModelError(f"{graph.source}: no candidate cut")
    return OnnxFileSpec(name=graph.source, keras_module="", constructor="", input_shape=shape,
                        imagenet_weights_file="", partitions=parts, path=graph.source, layout=layout,
                        preprocessing=preprocessing, sha256=graph.sha256 or "")


_FILES: dict[tuple[str, int, int], tuple[OnnxGraph, OnnxFileSpec]] = {}
_FILES_LOCK = threading.Lock()


def _file(path: str) -> tuple[OnnxGraph, OnnxFileSpec]:
    """Graph and spec of an .onnx file, read once per process (again when its size or mtime changes)."""
    from splitbed.models.onnx.graph import load as load_graph

    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise OnnxModelError(f"ONNX file not found: {path} ({exc.strerror})") from exc
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _FILES_LOCK:
        found = _FILES.get(key)
        if found is None:
            graph = load_graph(path)
            found = (graph, spec_of_graph(graph))
            _FILES[key] = found
        return found


def file_spec(path: str) -> OnnxFileSpec:
    return _file(path)[1]


@dataclass
class OnnxLoaded:
    """A model whose head and tail run on ONNX Runtime: spec, weights record, graph and per-partition wire map."""

    spec: ModelSpec
    weights: WeightsInfo
    graph: OnnxGraph
    boundaries: dict[int, list[Boundary]]  # partition id -> crossing tensors; empty: the graph's own cuts
    converted: dict[str, Any] | None = None  # for a registered model: how its graph was obtained
    keras: Any = field(default=None, repr=False)  # the LoadedModel it was converted from (other input sizes)
    _splits: dict[int, OnnxSplit] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def partition(self, key: Partition | int | str) -> Partition:
        return self.spec.partition(key)

    def _boundaries(self, part: Partition) -> list[Boundary]:
        if self.boundaries:
            found = self.boundaries.get(part.partition_id)
            if found is None:
                raise ModelError(f"{self.graph.source}: no ONNX map for partition {part.partition_id} "
                                 f"({part.name}); delete the cached file to convert again")
            return found
        return [Boundary(t.name, t.name) for t in self.graph.cut(part.partition_id).tensors]

    def split(self, key: Partition | int | str) -> OnnxSplit:
        part = self.spec.partition(key)
        with self._lock:
            cached = self._splits.get(part.partition_id)
            if cached is None:
                tag = f"{Path(self.spec.name).stem}_p{part.partition_id}"
                cached = build_split(self.graph, part, self._boundaries(part), tag)
                self._splits[part.partition_id] = cached
            return cached

    def at_input_size(self, height: int, width: int) -> OnnxLoaded:
        spec = self.spec.at_input_size(height, width)
        if spec is self.spec:
            return self
        if self.keras is None:
            raise ModelError(f"{self.spec.name}: no other input size for an ONNX file")
        return converted_model(self.keras.at_input_size(height, width))

    def runtime_info(self) -> dict[str, Any]:
        """What runs this model's sub-graphs, for the records: ONNX Runtime's name and version, and the model file
        (with its conversion for a registered model)."""
        from splitbed.models.onnx.runtime import runtime_info

        info = runtime_info()
        info["model_file"] = self.graph.source
        info["model_sha256"] = self.graph.sha256
        if self.converted is not None:
            info["converted"] = self.converted
        return info


def load_file(path: str) -> OnnxLoaded:
    """An `.onnx` file ready for the nodes (its weights record: source `file`, the file's SHA-256)."""
    graph, spec = _file(path)
    weights = WeightsInfo(source="file", requested="onnx", path=str(path), sha256=graph.sha256)
    return OnnxLoaded(spec=spec, weights=weights, graph=graph, boundaries={})


def converted_model(loaded: Any) -> OnnxLoaded:
    """A loaded registered Keras model on ONNX Runtime (converted at first use, then from the cache)."""
    from splitbed.models.onnx.convert import converted

    conv = converted(loaded)
    info = {"cached": conv.cached, "conversion_seconds": conv.conversion_seconds,
            "versions": conv.source.get("versions"), "file": str(conv.path)}
    return OnnxLoaded(spec=loaded.spec, weights=loaded.weights, graph=conv.graph, boundaries=conv.partitions,
                      converted=info, keras=loaded)


def load_converted(name: str, weights: str = "auto", input_size: tuple[int, int] | None = None) -> OnnxLoaded:
    from splitbed.models.loading import load

    return converted_model(load(name, weights, input_size=input_size))


def onnx_spec_or_none(model: str) -> OnnxFileSpec | None:
    """The spec of an `.onnx` model name, or None for any other name."""
    from splitbed.models.onnx import is_onnx_path

    return file_spec(os.fspath(model)) if is_onnx_path(model) else None


__all__ = ["OnnxFileSpec", "OnnxLoaded", "converted_model", "file_spec", "load_converted", "load_file",
           "onnx_spec_or_none", "spec_of_graph"]

"""`split(loaded, partition) -> SplitModel`: head and tail sub-models for one candidate partition.

The head's outputs and the tail's inputs are the crossing tensors in the order of splitbed.models.graph
(producing node's level, then layer name): the same order on the UE and the edge, and in the AIPS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from splitbed.models.errors import ModelError, PartitionDataError
from splitbed.models.graph import GraphCut, build_head, build_tail, cut_graph, graph_nodes
from splitbed.models.loading import LoadedModel
from splitbed.models.registry import Partition


@dataclass(frozen=True)
class CutTensor:
    """One tensor that crosses the partition, per sample (no batch dimension)."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        """Raw bytes of one sample's tensor (the testbed contribution's "intermediate data size (Raw)")."""
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class SplitModel:
    """Head (runs on the UE) and tail (runs on the edge) for one partition of a loaded model."""

    head: Any  # keras.Model: model input -> crossing tensors (a list, in `cut` order)
    tail: Any  # keras.Model: crossing tensors (in `cut` order) -> model output
    cut: list[CutTensor]
    partition: Partition
    graph_cut: GraphCut

    @property
    def raw_bytes(self) -> int:
        """Raw bytes of all crossing tensors for one sample."""
        return sum(c.nbytes for c in self.cut)

    def run_head(self, x: Any, compiled: bool = True) -> list[np.ndarray]:
        """Head inference: always a list of arrays, one per crossing tensor, in `cut` order.

        compiled=True uses predict_on_batch (a tf.function, traced once on the first call: use it for repeated
        inference; on 2 shared cores ResNet50 took ~0.2 s per image this way against ~2 s eagerly).
        compiled=False calls the model eagerly (no tracing: cheaper for one-off checks). Both give the same bits
        here (tested).
        """
        out = self.head.predict_on_batch(x) if compiled else self.head(x, training=False)
        items = out if isinstance(out, (list, tuple)) else [out]
        return [np.asarray(t) for t in items]

    def run_tail(self, tensors: list[np.ndarray], compiled: bool = True) -> np.ndarray:
        """Tail inference from the crossing tensors (in `cut` order): the model's output (see run_head)."""
        if len(tensors) != len(self.cut):
            raise ModelError(f"tail of partition {self.partition.name!r} takes {len(self.cut)} tensors "
                             f"({', '.join(c.name for c in self.cut)}), got {len(tensors)}")
        for got, want in zip(tensors, self.cut, strict=True):
            if tuple(got.shape[1:]) != want.shape or str(got.dtype) != want.dtype:
                raise ModelError(f"tail input {want.name!r} must be {want.dtype}{list(want.shape)} per sample, "
                                 f"got {got.dtype}{list(got.shape[1:])}")
        args = tensors[0] if len(tensors) == 1 else list(tensors)
        return np.asarray(self.tail.predict_on_batch(args) if compiled else self.tail(args, training=False))


def _graph_nodes(loaded: LoadedModel) -> Any:
    if loaded._graph is None:
        loaded._graph = graph_nodes(loaded.keras_model)
    return loaded._graph


def _cut_tensor(name: str, shape: tuple[int | None, ...], dtype: str) -> CutTensor:
    if any(d is None for d in shape):
        raise ModelError(f"crossing tensor {name!r} has an unknown dimension {shape}: build the model with a "
                         "fixed input size")
    return CutTensor(name=name, shape=tuple(int(d) for d in shape if d is not None), dtype=dtype)


def build_split(loaded: LoadedModel, partition: Partition) -> SplitModel:
    """Cut and build without caching (split() caches)."""
    model = loaded.keras_model
    gcut = cut_graph(model, partition.name, _graph_nodes(loaded))
    if len(gcut.crossing) != partition.tensors:
        raise PartitionDataError(
            f"splitbed/models/data/{loaded.spec.name}.toml declares {partition.tensors} crossing tensor(s) for "
            f"{partition.name!r} but the graph has {len(gcut.crossing)}: "
            f"{', '.join(c.name for c in gcut.crossing)}")
    tag = f"{loaded.spec.name}_p{partition.partition_id}"
    head = build_head(model, gcut, name=f"{tag}_head")
    tail = build_tail(model, gcut, name=f"{tag}_tail")
    cut = [_cut_tensor(c.name, c.shape, c.dtype) for c in gcut.crossing]
    return SplitModel(head=head, tail=tail, cut=cut, partition=partition, graph_cut=gcut)


def split(loaded: LoadedModel, partition: Partition | int | str) -> SplitModel:
    """Head and tail for a candidate partition (Partition, id, name or alias), built once and then cached."""
    part = loaded.spec.partition(partition)
    with loaded._lock:
        cached = loaded._splits.get(part.partition_id)
        if cached is None:
            cached = build_split(loaded, part)
            loaded._splits[part.partition_id] = cached
        return cached

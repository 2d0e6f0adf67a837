"""`OnnxSplit`: the head and tail of an ONNX model at one partition, run on ONNX Runtime; the ONNX counterpart of
`splitbed.models.SplitModel` (same `cut`, `raw_bytes`, `run_head`, `run_tail`), so the nodes run either."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from splitbed.models.errors import ModelError
from splitbed.models.onnx.extract import Boundary, extract_head, extract_tail, wire_tensor
from splitbed.models.onnx.graph import OnnxGraph
from splitbed.models.onnx.runtime import OrtModel
from splitbed.models.registry import Partition
from splitbed.models.splitter import CutTensor


def cut_tensors(graph: OnnxGraph, boundaries: list[Boundary]) -> list[CutTensor]:
    """The wire tensors per sample; ModelError when a dimension other than the batch is not fixed."""
    out = []
    for b in boundaries:
        t = wire_tensor(graph, b)
        dims = t.per_sample_shape
        if dims is None or not all(isinstance(d, int) for d in dims):
            raise ModelError(f"{graph.source}: crossing tensor {t.name!r} has shape {t.shape}: only the first "
                             "(batch) dimension may be symbolic for a split that runs")
        out.append(CutTensor(name=t.name, shape=tuple(int(d) for d in dims if isinstance(d, int)), dtype=t.dtype))
    return out


@dataclass(frozen=True)
class OnnxSplit:
    """Head (UE) and tail (edge) sub-graphs for one partition, each in its own ONNX Runtime session."""

    head: OrtModel
    tail: OrtModel
    cut: list[CutTensor]
    partition: Partition
    boundaries: tuple[Boundary, ...]

    @property
    def raw_bytes(self) -> int:
        return sum(c.nbytes for c in self.cut)

    def run_head(self, x: Any, compiled: bool = True) -> list[np.ndarray]:
        """Head inference: one array per crossing tensor, in `cut` order (`compiled` is accepted for
        SplitModel's signature; ONNX Runtime has one path)."""
        return [np.ascontiguousarray(a) for a in self.head.run([np.asarray(x)])]

    def run_tail(self, tensors: list[np.ndarray], compiled: bool = True) -> np.ndarray:
        """Tail inference from the crossing tensors (in `cut` order): the model's (first) output."""
        if len(tensors) != len(self.cut):
            raise ModelError(f"tail of partition {self.partition.name!r} takes {len(self.cut)} tensors "
                             f"({', '.join(c.name for c in self.cut)}), got {len(tensors)}")
        for got, want in zip(tensors, self.cut, strict=True):
            if tuple(got.shape[1:]) != want.shape or str(got.dtype) != want.dtype:
                raise ModelError(f"tail input {want.name!r} must be {want.dtype}{list(want.shape)} per sample, "
                                 f"got {got.dtype}{list(got.shape[1:])}")
        return self.tail.run(list(tensors))[0]


def build_split(graph: OnnxGraph, partition: Partition, boundaries: list[Boundary], tag: str,
                threads: int | None = None) -> OnnxSplit:
    """Extract head and tail at `boundaries` and open an ONNX Runtime session for each."""
    cut = cut_tensors(graph, boundaries)
    head = OrtModel(extract_head(graph, boundaries, name=f"{tag}_head"), threads)
    tail = OrtModel(extract_tail(graph, boundaries, name=f"{tag}_tail"), threads)
    return OnnxSplit(head=head, tail=tail, cut=cut, partition=partition, boundaries=tuple(boundaries))


def split_converted(conv: Any, partition: Partition, threads: int | None = None) -> OnnxSplit:
    """A registered model's partition on ONNX Runtime, from its converted graph (`convert.converted`): the same
    crossing tensors, in the same order, names, shapes and dtypes as the Keras split."""
    boundaries = conv.partitions.get(partition.partition_id)
    if boundaries is None:
        raise ModelError(f"{conv.path}: the converted graph has no map for partition {partition.partition_id} "
                         f"({partition.name}); the data file changed since: delete the file to convert again")
    model = conv.source.get("model", "model")
    return build_split(conv.graph, partition, boundaries, tag=f"{model}_p{partition.partition_id}", threads=threads)

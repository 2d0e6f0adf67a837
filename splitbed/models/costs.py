"""Per-layer and per-partition cost figures read off the graph: output sizes, parameters, multiply-accumulates.

MACs are counted analytically from shapes for the layers that dominate compute: Conv2D (incl. grouped),
DepthwiseConv2D, SeparableConv2D and Dense. Batch norm, activations, pooling, padding and adds are not counted
(they are memory-bound and a few percent of the total). FLOPs = 2 x MACs. Per sample (batch of one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from splitbed.models.graph import CrossingTensor, GraphCut, GraphNode


@dataclass(frozen=True)
class LayerCost:
    """One call of one layer: what it outputs and what it costs."""

    name: str
    kind: str  # Keras class name
    output_shape: tuple[int | None, ...]  # first output, without batch dimension
    output_bytes: int  # all outputs, one sample
    params: int
    macs: int


def _per_sample(shape: Any) -> tuple[int | None, ...]:
    return tuple(shape[1:])


def _count(shape: tuple[int | None, ...]) -> int:
    return math.prod(d for d in shape if d is not None) if all(d is not None for d in shape) else 0


def node_macs(gnode: GraphNode) -> int:
    """Multiply-accumulates of one layer call for one sample (0 for layers not counted)."""
    if gnode.is_input or not gnode.node.input_tensors:
        return 0
    layer = gnode.layer
    kind = type(layer).__name__
    in_shape = _per_sample(gnode.node.input_tensors[0].shape)
    out_shape = _per_sample(gnode.node.outputs[0].shape)
    if kind == "Conv2D":
        kh, kw = layer.kernel_size
        groups = getattr(layer, "groups", 1) or 1
        return _count(out_shape) * kh * kw * (int(in_shape[-1] or 0) // groups)
    if kind == "DepthwiseConv2D":
        kh, kw = layer.kernel_size
        return _count(out_shape) * kh * kw
    if kind == "SeparableConv2D":
        kh, kw = layer.kernel_size
        depth_mult = layer.depth_multiplier
        spatial = _count(out_shape[:-1])
        in_c = int(in_shape[-1] or 0)
        return spatial * in_c * depth_mult * kh * kw + spatial * in_c * depth_mult * int(out_shape[-1] or 0)
    if kind == "Dense":
        return _count(out_shape) * int(in_shape[-1] or 0)
    return 0


def _output_bytes(gnode: GraphNode) -> int:
    return sum(_count(_per_sample(t.shape)) * np.dtype(str(t.dtype)).itemsize for t in gnode.node.outputs)


def layer_costs(nodes: list[GraphNode] | tuple[GraphNode, ...]) -> list[LayerCost]:
    """One LayerCost per node, in the graph's topological order."""
    return [LayerCost(name=g.layer_name, kind=type(g.layer).__name__,
                      output_shape=_per_sample(g.node.outputs[0].shape), output_bytes=_output_bytes(g),
                      params=0 if g.is_input else int(g.layer.count_params()), macs=node_macs(g))
            for g in nodes]


@dataclass(frozen=True)
class PartitionCost:
    """What one partition puts on each side and on the wire (one sample)."""

    crossing: tuple[CrossingTensor, ...]
    raw_bytes: int
    head_params: int
    tail_params: int
    head_macs: int
    tail_macs: int


def _params(nodes: tuple[GraphNode, ...], positions: tuple[int, ...]) -> int:
    layers = {id(nodes[i].layer): nodes[i].layer for i in positions if not nodes[i].is_input}
    return sum(int(layer.count_params()) for layer in layers.values())


def partition_cost(cut: GraphCut) -> PartitionCost:
    """Costs of a cut without building its sub-models (parameters of a shared layer count once per side)."""
    raw = sum(_count(c.shape) * np.dtype(c.dtype).itemsize for c in cut.crossing)
    return PartitionCost(crossing=cut.crossing, raw_bytes=raw,
                         head_params=_params(cut.nodes, cut.head), tail_params=_params(cut.nodes, cut.tail),
                         head_macs=sum(node_macs(cut.nodes[i]) for i in cut.head),
                         tail_macs=sum(node_macs(cut.nodes[i]) for i in cut.tail))

"""Per-partition table of a model (what `splitbed partitions` prints): crossing tensors, bytes, params, MACs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from splitbed.models.costs import PartitionCost, layer_costs, partition_cost
from splitbed.models.graph import cut_graph, graph_nodes
from splitbed.models.loading import build_architecture
from splitbed.models.registry import ModelSpec, Partition, get


@dataclass(frozen=True)
class PartitionRow:
    partition: Partition
    cost: PartitionCost

    def to_dict(self) -> dict[str, Any]:
        c = self.cost
        return {
            "partition_id": self.partition.partition_id,
            "name": self.partition.name,
            "aliases": list(self.partition.aliases),
            "tensors": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype,
                         "raw_bytes": _tensor_bytes(t.shape, t.dtype)} for t in c.crossing],
            "raw_bytes": c.raw_bytes,
            "head_params": c.head_params,
            "tail_params": c.tail_params,
            "head_macs": c.head_macs,
            "tail_macs": c.tail_macs,
            "head_flops": 2 * c.head_macs,
            "tail_flops": 2 * c.tail_macs,
        }


def _tensor_bytes(shape: tuple[int | None, ...], dtype: str) -> int:
    import math

    import numpy as np

    return math.prod(int(d or 0) for d in shape) * np.dtype(dtype).itemsize


def partition_rows(name: str, keras_model: Any | None = None) -> tuple[ModelSpec, list[PartitionRow]]:
    """Rows for every candidate partition, in partition-id order (builds the architecture if not given)."""
    spec = get(name)
    model = keras_model if keras_model is not None else build_architecture(name)
    nodes = graph_nodes(model)
    rows = [PartitionRow(partition=p, cost=partition_cost(cut_graph(model, p.name, nodes)))
            for p in sorted(spec.partitions, key=lambda p: p.partition_id)]
    return spec, rows


def layer_rows(name: str, keras_model: Any | None = None) -> list[dict[str, Any]]:
    """Per-layer output size, parameters and MACs in topological order (for the advisor and `--layers`)."""
    model = keras_model if keras_model is not None else build_architecture(name)
    return [{"name": c.name, "kind": c.kind, "output_shape": list(c.output_shape), "output_bytes": c.output_bytes,
             "params": c.params, "macs": c.macs} for c in layer_costs(graph_nodes(model))]

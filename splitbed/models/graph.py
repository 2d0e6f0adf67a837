"""Graph cut of a Keras 3 functional model into a head and a tail sub-model.

Why a graph walk: the testbed contribution's `Model(Input(tensor=split_layer.output), ...)` does not work in Keras 3, and
re-applying the layers after the split point one by one to a single tensor breaks on any residual block (the
`Add` needs the shortcut too). Here a partition named after layer L puts L and every node L depends on in the
head; all other nodes go to the tail. The crossing tensors are the head tensors that a tail node consumes (or
that are model outputs). The head outputs them and the tail takes one `keras.Input` per crossing tensor, then
re-applies every tail node's layer to the mapped tensors in topological order (multi-input calls such as `Add`
and reused layers included: each call of a layer is its own node).

Order of crossing tensors (documented in docs/MODELS.md): by the producing node's level (length of the longest
path from the model input), then layer name, then node index, then output index. This order depends only on
the graph, never on how Keras happened to list the layers.

This module touches Keras internals that are stable across Keras 3 (`KerasTensor._keras_history`,
`Operation._inbound_nodes`, `Node.arguments.fill_in`); they are the same ones Keras uses to run a Function.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from splitbed.models import tfboot
from splitbed.models.errors import GraphCutError

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True)
class GraphNode:
    """One call of one layer inside the model (`node`), with its place in the topological order."""

    node: Any  # keras.src.ops.node.Node
    layer_name: str
    node_index: int  # which call of the layer this is
    level: int  # longest path from a model input; inputs are level 0
    parents: tuple[int, ...]  # positions (in the topological list) of the nodes this one consumes from

    @property
    def is_input(self) -> bool:
        return bool(self.node.is_input)

    @property
    def layer(self) -> Any:
        return self.node.operation


def _history(tensor: Any) -> tuple[Any, int, int]:
    hist = getattr(tensor, "_keras_history", None)
    if hist is None or hist.operation is None:
        raise GraphCutError(f"tensor {tensor!r} has no Keras history: the model is not a functional graph")
    return hist.operation, hist.node_index, hist.tensor_index


def _node_of(tensor: Any) -> Any:
    op, node_index, _ = _history(tensor)
    return op._inbound_nodes[node_index]


def graph_nodes(model: Any) -> list[GraphNode]:
    """Every node the model's outputs depend on, in topological order (level, layer name, node index)."""
    found: dict[int, Any] = {}
    stack = [_node_of(t) for t in model.outputs]
    while stack:
        node = stack.pop()
        if id(node) in found:
            continue
        found[id(node)] = node
        stack.extend(_node_of(t) for t in node.input_tensors)
    level: dict[int, int] = {}

    def level_of(node: Any) -> int:
        # Iterative post-order with memo (no recursion limit on deep graphs; a Keras graph has no cycles).
        pending = [node]
        while pending:
            cur = pending[-1]
            if id(cur) in level:
                pending.pop()
                continue
            parents = [_node_of(t) for t in cur.input_tensors]
            missing = [p for p in parents if id(p) not in level]
            if missing:
                pending.extend(missing)
                continue
            level[id(cur)] = 1 + max((level[id(p)] for p in parents), default=-1)
            pending.pop()
        return level[id(node)]

    def index_of(node: Any) -> int:
        return int(node.operation._inbound_nodes.index(node))

    ordered = sorted(found.values(), key=lambda n: (level_of(n), n.operation.name, index_of(n)))
    position = {id(n): i for i, n in enumerate(ordered)}
    return [GraphNode(node=n, layer_name=n.operation.name, node_index=index_of(n), level=level[id(n)],
                      parents=tuple(sorted({position[id(_node_of(t))] for t in n.input_tensors})))
            for n in ordered]


@dataclass(frozen=True)
class CrossingTensor:
    """A tensor produced in the head and consumed in the tail: what goes over the network."""

    name: str  # producing layer (plus ":<output index>" / "@<call>" when the layer has several)
    shape: tuple[int | None, ...]  # without the batch dimension
    dtype: str
    tensor: Any  # the KerasTensor in the full model's graph


@dataclass(frozen=True)
class GraphCut:
    """The split of a model's nodes at one layer."""

    layer_name: str
    head: tuple[int, ...]  # positions into `nodes`
    tail: tuple[int, ...]
    crossing: tuple[CrossingTensor, ...]
    nodes: tuple[GraphNode, ...]


def _tensor_name(gnode: GraphNode, tensor_index: int, calls: int) -> str:
    """Producing layer's name; `@<call>` if the model calls that layer more than once, `:<k>` if it has k outputs."""
    name = gnode.layer_name
    if calls > 1:
        name += f"@{gnode.node_index}"
    if len(gnode.node.outputs) > 1:
        name += f":{tensor_index}"
    return name


def cut_graph(model: Any, layer_name: str, nodes: list[GraphNode] | None = None) -> GraphCut:
    """Cut `model` after `layer_name`: head = that layer's node and its ancestors (and every model input)."""
    nodes = nodes if nodes is not None else graph_nodes(model)
    targets = [i for i, g in enumerate(nodes) if g.layer_name == layer_name]
    if not targets:
        raise GraphCutError(f"model {model.name!r} has no layer {layer_name!r} on the path to its outputs")
    if len(targets) > 1:
        raise GraphCutError(f"layer {layer_name!r} is called {len(targets)} times in {model.name!r}: a "
                            "partition after a shared layer is ambiguous")
    head: set[int] = {i for i, g in enumerate(nodes) if g.is_input}
    stack = [targets[0]]
    while stack:
        i = stack.pop()
        if i not in head:
            head.add(i)
            stack.extend(nodes[i].parents)
    tail = [i for i in range(len(nodes)) if i not in head]

    producer: dict[int, tuple[int, int]] = {}  # id(tensor) -> (node position, output index)
    for i in head:
        for k, t in enumerate(nodes[i].node.outputs):
            producer[id(t)] = (i, k)
    crossing_ids: dict[int, Any] = {}
    for i in tail:
        for t in nodes[i].node.input_tensors:
            if id(t) in producer:
                crossing_ids[id(t)] = t
    for t in model.outputs:
        if id(t) in producer:
            crossing_ids[id(t)] = t
    calls = Counter(g.layer_name for g in nodes)
    order = sorted(crossing_ids, key=lambda tid: (producer[tid][0], producer[tid][1]))
    crossing = tuple(
        CrossingTensor(name=_tensor_name(nodes[producer[tid][0]], producer[tid][1],
                                         calls[nodes[producer[tid][0]].layer_name]),
                       shape=tuple(crossing_ids[tid].shape[1:]), dtype=str(crossing_ids[tid].dtype),
                       tensor=crossing_ids[tid])
        for tid in order)
    return GraphCut(layer_name=layer_name, head=tuple(sorted(head)), tail=tuple(tail), crossing=crossing,
                    nodes=tuple(nodes))


def _single_or_list(items: list[Any]) -> Any:
    return items[0] if len(items) == 1 else items


def build_head(model: Any, cut: GraphCut, name: str) -> Any:
    """Sub-model from the model inputs to the crossing tensors (in cut order), sharing the model's layers."""
    keras = tfboot.keras()
    return keras.Model(inputs=_single_or_list(list(model.inputs)),
                       outputs=[c.tensor for c in cut.crossing], name=name)


def build_tail(model: Any, cut: GraphCut, name: str) -> Any:
    """Sub-model from one new Input per crossing tensor to the model outputs, re-applying the tail's layers."""
    keras = tfboot.keras()
    tensor_map: dict[int, Any] = {}
    inputs: list[Any] = []
    for k, c in enumerate(cut.crossing):
        new_input = keras.Input(shape=c.shape, dtype=c.dtype, name=f"cut{k}_{_UNSAFE.sub('_', c.name)}")
        tensor_map[id(c.tensor)] = new_input
        inputs.append(new_input)
    for i in cut.tail:
        gnode = cut.nodes[i]
        missing = [t for t in gnode.node.input_tensors if id(t) not in tensor_map]
        if missing:  # cannot happen for a cut made by cut_graph; guards hand-made cuts
            raise GraphCutError(f"tail layer {gnode.layer_name!r} needs a tensor that is neither a crossing "
                                "tensor nor computed earlier in the tail")
        args, kwargs = gnode.node.arguments.fill_in(tensor_map)
        outputs = keras.tree.flatten(gnode.layer(*args, **kwargs))
        for ref, new in zip(gnode.node.outputs, outputs, strict=True):
            tensor_map[id(ref)] = new
    outputs = [tensor_map[id(t)] for t in model.outputs]
    return keras.Model(inputs=_single_or_list(inputs), outputs=_single_or_list(outputs), name=name)

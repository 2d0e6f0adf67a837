"""Head and tail sub-graphs of an ONNX graph at a cut, with `onnx.utils.Extractor` (the class behind
`onnx.utils.extract_model`, which 3GPP TR 26.847 clause 5.3.9 uses; in memory instead of file to file).

A crossing tensor may have a wire layout other than its layout inside the graph: a Keras model converted by
tf2onnx computes in NCHW inside while its Keras tensors (what the Keras runtime sends and expects) are NHWC. A
`Boundary` names the graph tensor, the name it has on the wire, and the permutation from the graph's layout to
the wire's; the head then ends with a Transpose per permuted tensor, and the tail starts with the inverse one,
so that an ONNX Runtime head can feed a TensorFlow tail and the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from splitbed.models.errors import GraphCutError
from splitbed.models.onnx.graph import OnnxGraph, OnnxModelError, OnnxTensor


@dataclass(frozen=True)
class Boundary:
    """One crossing tensor: `tensor` in the graph, `wire` its name on the wire, `perm` graph layout -> wire
    layout (None: the same layout)."""

    tensor: str
    wire: str
    perm: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "wire": self.wire, "perm": None if self.perm is None else list(self.perm)}

    @classmethod
    def from_dict(cls, raw: Any) -> Boundary:
        if not isinstance(raw, dict) or not isinstance(raw.get("tensor"), str) or not isinstance(raw.get("wire"), str):
            raise OnnxModelError(f"bad boundary entry {raw!r} in splitbed metadata")
        perm = raw.get("perm")
        if perm is not None and (not isinstance(perm, list) or sorted(perm) != list(range(len(perm)))):
            raise OnnxModelError(f"bad permutation {perm!r} in splitbed metadata")
        return cls(raw["tensor"], raw["wire"], None if perm is None else tuple(int(p) for p in perm))


def wire_tensor(graph: OnnxGraph, boundary: Boundary) -> OnnxTensor:
    """The crossing tensor as it goes over the wire (name and shape after the permutation)."""
    inner = graph.tensor(boundary.tensor)
    if boundary.perm is None:
        return OnnxTensor(boundary.wire, inner.shape, inner.dtype)
    if inner.shape is None or len(inner.shape) != len(boundary.perm):
        raise OnnxModelError(f"{graph.source}: tensor {boundary.tensor!r} has shape {inner.shape}, which "
                             f"permutation {list(boundary.perm)} does not fit")
    return OnnxTensor(boundary.wire, tuple(inner.shape[p] for p in boundary.perm), inner.dtype)


def _value_info(tensor: OnnxTensor) -> Any:
    import numpy as np
    import onnx

    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(tensor.dtype))
    shape = None if tensor.shape is None else list(tensor.shape)
    return onnx.helper.make_tensor_value_info(tensor.name, elem, shape)


def _inverse(perm: tuple[int, ...]) -> list[int]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return inv


def _finish(model: Any, graph: OnnxGraph, name: str) -> Any:
    import onnx

    model.graph.name = name
    del model.metadata_props[:]
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise GraphCutError(f"{graph.source}: the extracted {name} is not a valid ONNX model: "
                            f"{str(exc).splitlines()[0][:300]}") from exc
    return model


def _identity_outputs(model: Any, names: list[str]) -> None:
    """Graph outputs that are also graph inputs (an identity head or tail) go through an Identity node, which
    every runtime accepts."""
    import onnx

    inputs = {i.name for i in model.graph.input}
    for out in model.graph.output:
        if out.name in inputs:
            fresh = f"{out.name}__identity"
            model.graph.node.append(onnx.helper.make_node("Identity", [out.name], [fresh], name=fresh))
            out.name = fresh


def extract_head(graph: OnnxGraph, boundaries: list[Boundary], name: str = "head") -> Any:
    """Graph inputs -> crossing tensors (in `boundaries` order, named and laid out as on the wire)."""
    import onnx

    graph.check_separates([b.tensor for b in boundaries])
    extractor = onnx.utils.Extractor(graph.model)
    model = extractor.extract_model(list(graph.input_names), [b.tensor for b in boundaries])
    _identity_outputs(model, [b.tensor for b in boundaries])
    outputs = list(model.graph.output)
    del model.graph.output[:]
    taken = {i.name for i in model.graph.input} | {o for n in model.graph.node for o in n.output}
    for b, out in zip(boundaries, outputs, strict=True):
        if b.perm is None and out.name == b.wire:
            model.graph.output.append(out)
            continue
        wire_name = b.wire if b.wire not in taken else f"{b.wire}__wire"
        taken.add(wire_name)
        if b.perm is not None:
            node = onnx.helper.make_node("Transpose", [out.name], [wire_name], name=f"{wire_name}__out",
                                         perm=list(b.perm))
        else:
            node = onnx.helper.make_node("Identity", [out.name], [wire_name], name=f"{wire_name}__out")
        model.graph.node.append(node)
        wire = wire_tensor(graph, b)
        model.graph.output.append(_value_info(OnnxTensor(wire_name, wire.shape, wire.dtype)))
    return _finish(model, graph, name)


def extract_tail(graph: OnnxGraph, boundaries: list[Boundary], name: str = "tail") -> Any:
    """Crossing tensors (in `boundaries` order, as on the wire) -> graph outputs."""
    import onnx

    graph.check_separates([b.tensor for b in boundaries])
    extractor = onnx.utils.Extractor(graph.model)
    model = extractor.extract_model([b.tensor for b in boundaries], list(graph.output_names))
    _identity_outputs(model, list(graph.output_names))
    if any(b.perm is not None or b.wire != b.tensor for b in boundaries):
        del model.graph.input[:]
        prologue = []
        taken = {o for n in model.graph.node for o in n.output}
        for b in boundaries:
            # Input names are internal (inputs are fed by position): a wire name the tail also computes (tf2onnx
            # recomputing the NHWC Transpose for one of its readers) gets a suffix.
            wire_name = b.wire if b.wire not in taken else f"{b.wire}__wire"
            taken.add(wire_name)
            wire = wire_tensor(graph, b)
            model.graph.input.append(_value_info(OnnxTensor(wire_name, wire.shape, wire.dtype)))
            if wire_name == b.tensor:
                continue
            if b.perm is None:
                prologue.append(onnx.helper.make_node("Identity", [wire_name], [b.tensor], name=f"{wire_name}__in"))
            else:
                prologue.append(onnx.helper.make_node("Transpose", [wire_name], [b.tensor], name=f"{wire_name}__in",
                                                      perm=_inverse(b.perm)))
        nodes = [*prologue, *model.graph.node]
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return _finish(model, graph, name)

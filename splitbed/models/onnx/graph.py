"""An ONNX graph and its candidate cuts (what `splitbed partitions FILE.onnx` lists).

A cut after node N (its id is N's index in the graph's node list, the numbering 3GPP TR 26.847 clause 5.3.9 uses,
e.g. "node 5" of the ONNX Model Zoo VGG16) has the same meaning as a Keras partition (docs/MODELS.md): the head
computes N and every node N depends on; the tail computes every other node. The crossing tensors are the head's
tensors (and graph inputs) that a tail node reads, plus any graph output the head already produced. Removing
them separates the graph's inputs from its outputs. A chain crosses one tensor per cut; inside a residual block
the shortcut crosses too: the number of crossing tensors is the "number of branches" TR 26.847 tabulates per
node.

Constants (initializers and nodes computed from constants only) never cross: extraction copies them into
whichever side reads them. The first dimension of every tensor is taken as the batch dimension: sizes are per
sample, like the Keras tables.

Cuts are computed with bit sets over the node list (descendants per node), so a graph of thousands of nodes is
listed in well under a second; MAX_GRAPH_NODES bounds the work.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from splitbed.models.errors import GraphCutError, ModelError

MAX_ONNX_FILE_BYTES = 2**31 - 1  # protobuf's own limit for one message; checked before the file is read
MAX_GRAPH_NODES = 50_000  # bounds the cut enumeration (bit sets of this many bits per node)
MAX_CUT_ID = 65_535  # the AIPS partition_id is a u16 (docs/FORMAT.md)
METADATA_PREFIX = "splitbed."  # metadata_props keys splitbed writes into the files it converts


class OnnxModelError(ModelError):
    """An ONNX file that cannot be used: missing, too large, malformed, external data, or a cut that is not one."""


@dataclass(frozen=True)
class OnnxTensor:
    """A tensor of the graph: name, declared shape (batch dimension first; a str is a symbolic dimension, None
    unknown) and numpy dtype name."""

    name: str
    shape: tuple[int | str | None, ...] | None  # None: rank unknown
    dtype: str

    @property
    def per_sample_shape(self) -> tuple[int | str | None, ...] | None:
        return None if self.shape is None else self.shape[1:]

    @property
    def nbytes(self) -> int | None:
        """Raw bytes of one sample, or None when a non-batch dimension is not known."""
        dims = self.per_sample_shape
        if dims is None or not all(isinstance(d, int) for d in dims):
            return None
        return math.prod(int(d) for d in dims if isinstance(d, int)) * np.dtype(self.dtype).itemsize

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": None if self.shape is None else list(self.shape),
                "per_sample_shape": None if self.per_sample_shape is None else list(self.per_sample_shape),
                "dtype": self.dtype, "raw_bytes": self.nbytes}


@dataclass(frozen=True)
class OnnxCut:
    """One candidate cut: after node `cut_id` (its index in the graph's node list)."""

    cut_id: int
    node: str  # the node's name (its first output's name when the node has none)
    op_type: str
    tensors: tuple[OnnxTensor, ...]  # crossing tensors: graph inputs first, then by producing node, output index
    head_nodes: int  # non-constant nodes in the head

    @property
    def branches(self) -> int:
        """Number of crossing tensors (TR 26.847's "number of branches" at a node)."""
        return len(self.tensors)

    @property
    def raw_bytes(self) -> int | None:
        sizes = [t.nbytes for t in self.tensors]
        return None if any(s is None for s in sizes) else sum(int(s) for s in sizes if s is not None)

    def to_dict(self) -> dict[str, Any]:
        return {"cut_id": self.cut_id, "node": self.node, "op_type": self.op_type, "branches": self.branches,
                "tensors": [t.to_dict() for t in self.tensors], "raw_bytes": self.raw_bytes,
                "head_nodes": self.head_nodes}


def _dim(d: Any) -> int | str | None:
    if d.HasField("dim_value"):
        return int(d.dim_value)
    if d.HasField("dim_param"):
        return str(d.dim_param)
    return None


def _subgraph_reads(node: Any) -> set[str]:
    """Outer-scope tensors a node's sub-graphs (If/Loop/Scan bodies) read implicitly."""
    import onnx

    reads: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else \
            list(attr.graphs) if attr.type == onnx.AttributeProto.GRAPHS else []
        for g in graphs:
            defined = {i.name for i in g.input} | {i.name for i in g.initializer}
            for inner in g.node:
                for name in [*inner.input, *_subgraph_reads(inner)]:
                    if name and name not in defined:
                        reads.add(name)
                defined.update(inner.output)
    return reads


@dataclass
class OnnxGraph:
    """A loaded, checked and shape-inferred ONNX model, with its tensors and node dependencies."""

    model: Any  # onnx.ModelProto (shape-inferred)
    source: str  # file path, or a description
    file_bytes: int | None = None
    sha256: str | None = None
    _tensors: dict[str, OnnxTensor] = field(default_factory=dict, repr=False)
    _cuts: list[OnnxCut] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        graph = self.model.graph
        if len(graph.node) > MAX_GRAPH_NODES:
            raise OnnxModelError(f"{self.source}: {len(graph.node):,} nodes, over the {MAX_GRAPH_NODES:,} "
                                 "splitbed enumerates cuts for")
        self.initializers = {t.name for t in graph.initializer}
        self.nodes = list(graph.node)
        self.producer: dict[str, tuple[int, int]] = {}
        for i, node in enumerate(self.nodes):
            for k, out in enumerate(node.output):
                if out:
                    self.producer[out] = (i, k)
        self.reads: list[list[str]] = [[n for n in [*node.input, *sorted(_subgraph_reads(node))] if n]
                                       for node in self.nodes]
        for vi in [*graph.input, *graph.output, *graph.value_info]:
            self._tensors[vi.name] = self._tensor_from_value_info(vi)
        self.input_names = [vi.name for vi in graph.input if vi.name not in self.initializers]
        self.output_names = [vi.name for vi in graph.output]
        # Constants: initializers and everything computed from constants only (Constant nodes have no inputs).
        self.constant: set[str] = set(self.initializers)
        self.constant_node = [False] * len(self.nodes)
        for i, node in enumerate(self.nodes):
            if all(name in self.constant for name in self.reads[i]):
                self.constant_node[i] = True
                self.constant.update(o for o in node.output if o)
        known = set(self.input_names) | self.initializers | set(self.producer)
        for i, names in enumerate(self.reads):
            missing = [n for n in names if n not in known]
            if missing:
                raise OnnxModelError(f"{self.source}: node {i} ({self.node_name(i)}) reads {missing[0]!r}, which "
                                     "no node, input or initializer defines")
            if any(n in self.producer and self.producer[n][0] >= i for n in names):
                raise OnnxModelError(f"{self.source}: node {i} ({self.node_name(i)}) reads a tensor produced "
                                     "later: the node list is not topologically sorted (the ONNX spec requires it)")

    @staticmethod
    def _tensor_from_value_info(vi: Any) -> OnnxTensor:
        import onnx

        ttype = vi.type.tensor_type
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(ttype.elem_type)).name
        except (KeyError, TypeError, ValueError):
            dtype = "unknown"
        shape = tuple(_dim(d) for d in ttype.shape.dim) if ttype.HasField("shape") else None
        return OnnxTensor(vi.name, shape, dtype)

    def node_name(self, i: int) -> str:
        node = self.nodes[i]
        return node.name or (node.output[0] if node.output else f"node{i}")

    def tensor(self, name: str) -> OnnxTensor:
        """The tensor's declared or inferred type; OnnxModelError when shape inference could not type it."""
        found = self._tensors.get(name)
        if found is None or found.dtype == "unknown":
            raise OnnxModelError(f"{self.source}: tensor {name!r} has no known type (ONNX shape inference could not "
                                 "infer it): it cannot be a crossing tensor")
        return found

    @property
    def metadata(self) -> dict[str, str]:
        return {p.key: p.value for p in self.model.metadata_props}

    def splitbed_metadata(self, key: str) -> Any:
        """A JSON value splitbed wrote into metadata_props (`splitbed.<key>`), or None."""
        raw = self.metadata.get(METADATA_PREFIX + key)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise OnnxModelError(f"{self.source}: metadata {METADATA_PREFIX + key} is not JSON: {exc}") from exc

    # -- cuts -------------------------------------------------------------------------------------------------

    def _descendants(self) -> list[int]:
        """Bit set per node: itself and every node that (transitively) reads its outputs; constant nodes none."""
        consumers: dict[str, list[int]] = {}
        for i, names in enumerate(self.reads):
            for n in names:
                consumers.setdefault(n, []).append(i)
        self.consumers = consumers
        desc = [0] * len(self.nodes)
        for i in range(len(self.nodes) - 1, -1, -1):
            if self.constant_node[i]:
                continue
            bits = 1 << i
            for out in self.nodes[i].output:
                for c in consumers.get(out, ()):
                    bits |= desc[c]
            desc[i] = bits
        return desc

    def candidate_cuts(self) -> list[OnnxCut]:
        """One cut after every non-constant node, in node order (computed once)."""
        if self._cuts is not None:
            return self._cuts
        desc = self._descendants()
        compute = [i for i in range(len(self.nodes)) if not self.constant_node[i]]
        all_cuts = 0
        for i in compute:
            all_cuts |= 1 << i
        outputs = set(self.output_names)
        crossing: dict[int, list[tuple[tuple[int, int], str]]] = {i: [] for i in compute}

        def add(mask: int, order: tuple[int, int], name: str) -> None:
            while mask:
                low = mask & -mask
                crossing[low.bit_length() - 1].append((order, name))
                mask ^= low

        for pos, name in enumerate(self.input_names):
            readers = [c for c in self.consumers.get(name, ()) if not self.constant_node[c]]
            inside = all_cuts
            for c in readers:
                inside &= desc[c]
            add(all_cuts if name in outputs else all_cuts & ~inside, (-1, pos), name)
        for name, (p, k) in self.producer.items():
            if name in self.constant:
                continue
            head_of = desc[p]  # the cuts whose head computes this tensor
            if name in outputs:
                add(head_of, (p, k), name)
                continue
            inside = all_cuts
            for c in self.consumers.get(name, []):
                inside &= desc[c]
            add(head_of & ~inside, (p, k), name)
        ancestors_count = self._ancestor_counts(compute)
        self._cuts = [OnnxCut(cut_id=i, node=self.node_name(i), op_type=self.nodes[i].op_type,
                              tensors=tuple(self._crossing_tensor(n) for _, n in sorted(crossing[i])),
                              head_nodes=ancestors_count[i])
                      for i in compute]
        return self._cuts

    def _crossing_tensor(self, name: str) -> OnnxTensor:
        found = self._tensors.get(name)
        return found if found is not None else OnnxTensor(name, None, "unknown")

    def _ancestor_counts(self, compute: list[int]) -> dict[int, int]:
        anc: dict[int, int] = {}
        for i in compute:
            bits = 1 << i
            for n in self.reads[i]:
                if n in self.producer and not self.constant_node[self.producer[n][0]]:
                    bits |= anc[self.producer[n][0]]
            anc[i] = bits
        return {i: bin(b).count("1") for i, b in anc.items()}

    def cut(self, key: int | str) -> OnnxCut:
        """A candidate cut by id (node index; a numeric string counts) or by unique node name."""
        cuts = self.candidate_cuts()
        if isinstance(key, str) and key.strip().isdigit():
            key = int(key.strip())
        if isinstance(key, int) and not isinstance(key, bool):
            for c in cuts:
                if c.cut_id == key:
                    return c
            raise GraphCutError(f"{self.source}: no candidate cut {key} (ids are node indices of non-constant "
                                f"nodes, 0..{len(self.nodes) - 1}; list them with `splitbed partitions FILE.onnx`)")
        named = [c for c in cuts if c.node == key]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise GraphCutError(f"{self.source}: {len(named)} nodes are named {key!r}; use the cut id "
                                f"({', '.join(str(c.cut_id) for c in named)})")
        raise GraphCutError(f"{self.source}: no node named {key!r} (`splitbed partitions FILE.onnx` lists the cuts)")

    def check_separates(self, tensor_names: list[str]) -> None:
        """GraphCutError unless computing the graph outputs from these tensors needs no graph input or other
        non-constant tensor outside them (i.e. they are a cut)."""
        given = set(tensor_names)
        for name in tensor_names:
            if name not in self.producer and name not in self.input_names:
                raise GraphCutError(f"{self.source}: no tensor {name!r} in the graph")
        stack = [n for n in self.output_names if n not in given]
        seen: set[str] = set()
        while stack:
            name = stack.pop()
            if name in seen or name in given or name in self.constant:
                continue
            seen.add(name)
            if name in self.input_names:
                raise GraphCutError(f"{self.source}: tensors {sorted(given)} do not separate the graph: its "
                                    f"outputs still need input {name!r}")
            stack.extend(self.reads[self.producer[name][0]])


def _refuse_external_data(model: Any, source: str) -> None:
    import onnx

    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise OnnxModelError(f"{source}: weights are stored in external data files (tensor {t.name!r}); "
                                 "splitbed reads self-contained .onnx files only: save the model with "
                                 "onnx.save(model, path, save_as_external_data=False)")


def from_model(model: Any, source: str, file_bytes: int | None = None, sha256: str | None = None) -> OnnxGraph:
    """An OnnxGraph from an in-memory ModelProto: checked, then shape-inferred."""
    import onnx

    _refuse_external_data(model, source)
    try:
        onnx.checker.check_model(model)
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as exc:
        raise OnnxModelError(f"{source}: not a valid ONNX model: {str(exc).splitlines()[0][:300]}") from exc
    return OnnxGraph(model=inferred, source=source, file_bytes=file_bytes, sha256=sha256)


def load(path: str | os.PathLike[str]) -> OnnxGraph:
    """Read an ONNX file (size capped before reading, no external data), check and shape-infer it."""
    import hashlib

    import onnx

    p = Path(path)
    if not p.exists():
        raise OnnxModelError(f"ONNX file not found: {p}")
    if not p.is_file():
        raise OnnxModelError(f"ONNX path is not a regular file: {p}")
    size = p.stat().st_size
    if size == 0:
        raise OnnxModelError(f"ONNX file is empty: {p}")
    if size > MAX_ONNX_FILE_BYTES:
        raise OnnxModelError(f"ONNX file {p} is {size:,} bytes, over the {MAX_ONNX_FILE_BYTES:,}-byte cap "
                             "(protobuf's limit)")
    data = p.read_bytes()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise OnnxModelError(f"{p} is not an ONNX model (protobuf decode failed: {type(exc).__name__})") from exc
    if not model.graph.node and not model.graph.output:
        raise OnnxModelError(f"{p} holds no ONNX graph")
    return from_model(model, str(p), file_bytes=size, sha256=hashlib.sha256(data).hexdigest())

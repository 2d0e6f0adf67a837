"""The candidate-cut table of an ONNX graph (what `splitbed partitions FILE.onnx` prints), and, for a file splitbed
converted from a registered Keras model, which cut each Keras partition is."""

from __future__ import annotations

from typing import Any

from splitbed.models.onnx.graph import OnnxGraph


def keras_partitions(graph: OnnxGraph) -> dict[int, list[dict[str, Any]]]:
    """cut id -> the Keras partitions of a converted file whose crossing tensors are exactly that cut's
    ({} for other files). The input partition has no cut (no node computes it) and is not listed."""
    from splitbed.models import registry
    from splitbed.models.onnx.convert import partition_map

    mapping = partition_map(graph)
    source = graph.splitbed_metadata("source") or {}
    model = source.get("model") if isinstance(source, dict) else None
    if not mapping or model not in registry.names():
        return {}
    spec = registry.get(str(model))
    by_set: dict[frozenset[str], list[int]] = {}
    for cut in graph.candidate_cuts():
        by_set.setdefault(frozenset(t.name for t in cut.tensors), []).append(cut.cut_id)
    found: dict[int, list[dict[str, Any]]] = {}
    for pid, row in mapping.items():
        cuts = by_set.get(frozenset(b.tensor for b in row), [])
        try:
            part = spec.partition(pid)
        except KeyError:
            continue
        for cut_id in cuts[:1]:  # the first node whose cut this is (later ones are, e.g., identity reshapes)
            found.setdefault(cut_id, []).append({"partition_id": pid, "name": part.name,
                                                 "wire": [b.wire for b in row]})
    return found


def listing(graph: OnnxGraph) -> dict[str, Any]:
    """JSON-able: the file, its inputs and outputs, and every candidate cut (with its Keras partition if any)."""
    matches = keras_partitions(graph)
    cuts = []
    for cut in graph.candidate_cuts():
        row = cut.to_dict()
        row["keras_partitions"] = matches.get(cut.cut_id, [])
        cuts.append(row)
    return {"model": graph.source, "file_bytes": graph.file_bytes, "sha256": graph.sha256,
            "opset": [{"domain": o.domain or "ai.onnx", "version": o.version} for o in graph.model.opset_import],
            "producer": f"{graph.model.producer_name} {graph.model.producer_version}".strip(),
            "inputs": [graph.tensor(n).to_dict() for n in graph.input_names],
            "outputs": [graph.tensor(n).to_dict() for n in graph.output_names],
            "nodes": len(graph.nodes), "converted_from": graph.splitbed_metadata("source"), "cuts": cuts}

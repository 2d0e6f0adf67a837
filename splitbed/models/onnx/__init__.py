"""ONNX models: candidate cuts of any ONNX graph, head/tail sub-graphs, ONNX Runtime, Keras -> ONNX conversion.

Why: 3GPP TR 26.847 (clause 5.3.9) splits ONNX models with `onnx.utils.extract_model` and tabulates tensor sizes
and branches per node; engineers bring `.onnx` files, and phones run mobile runtimes rather than TensorFlow.
Modules, bottom up (docs/MODELS.md, "ONNX"):

- `graph`: load an ONNX file (capped, checked, shape-inferred) and enumerate its candidate cuts;
- `extract`: head and tail sub-graphs with `onnx.utils.Extractor` (what `extract_model` runs);
- `runtime`: ONNX Runtime sessions (CPU) and the runtime's name and version for the records;
- `convert`: the built-in Keras models converted with tf2onnx at first use, cached, with the map from each Keras
  partition to ONNX tensor names;
- `split`: `OnnxSplit` (head, tail, cut, run_head, run_tail), the ONNX counterpart of `splitbed.models.SplitModel`.

Importing this package imports neither onnx, onnxruntime nor TensorFlow.
"""

from __future__ import annotations

ONNX_SUFFIX = ".onnx"


def is_onnx_path(model: str) -> bool:
    """True when a model name designates an ONNX file rather than a registered Keras model."""
    return model.lower().endswith(ONNX_SUFFIX)

"""ONNX Runtime sessions (CPU) for heads and tails, and what the records say about the runtime.

One session per sub-graph, created from the in-memory model (no temporary files). The session keeps ONNX
Runtime's default graph optimisations (ORT_ENABLE_ALL: constant folding, node fusions, CPU layout transforms), the
same as an application on a phone would; `runtime_info()` records the level with the version. Thread pools: ONNX
Runtime's default (one intra-op thread per physical core), like TensorFlow's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from splitbed.models.errors import ModelError

RUNTIME_NAME = "onnxruntime"
PROVIDER = "CPUExecutionProvider"
OPTIMIZATION = "ORT_ENABLE_ALL"
INFERENCE_CALL = "onnxruntime InferenceSession.run (CPUExecutionProvider, ORT_ENABLE_ALL), after one warm-up run"


def runtime_info() -> dict[str, Any]:
    """Name, version, provider and optimisation level of the ONNX Runtime that runs heads and tails here."""
    import onnxruntime as ort

    return {"name": RUNTIME_NAME, "version": ort.__version__, "provider": PROVIDER,
            "graph_optimization": OPTIMIZATION, "call": INFERENCE_CALL}


def _session(model: Any, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise here
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=[PROVIDER])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
        raise ModelError(f"ONNX Runtime cannot load {model.graph.name!r}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:300]}") from exc


@dataclass
class OrtModel:
    """An ONNX sub-graph ready to run: `run(arrays)` feeds the graph inputs in order, returns the outputs in order."""

    model: Any  # onnx.ModelProto
    threads: int | None = None
    _session: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._session = _session(self.model, self.threads)
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if len(arrays) != len(self.input_names):
            raise ModelError(f"{self.model.graph.name} takes {len(self.input_names)} inputs "
                             f"({', '.join(self.input_names)}), got {len(arrays)}")
        feeds = {name: np.ascontiguousarray(a) for name, a in zip(self.input_names, arrays, strict=True)}
        return [np.asarray(o) for o in self._session.run(self.output_names, feeds)]

    def predict_on_batch(self, x: Any) -> Any:
        """Keras's calling convention (an array, or a list for several inputs; an array back for one output, a
        list for several), so that code written for Keras sub-models runs ONNX Runtime ones unchanged."""
        outs = self.run(list(x) if isinstance(x, (list, tuple)) else [x])
        return outs[0] if len(outs) == 1 else outs

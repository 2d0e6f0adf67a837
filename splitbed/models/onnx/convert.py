"""The built-in Keras models as ONNX graphs: converted with tf2onnx at first use, cached, never downloaded.

Converter: tf2onnx (`tf2onnx.convert.from_function`, opset OPSET) on the Keras model's `stateless_call` with the
weights as graph inputs, which are then attached as initializers; then ONNX Runtime's basic offline optimisation
folds the weight transposes and fuses standard patterns (see `_tf2onnx_stateless` and `_fold` for why not
`tf2onnx.convert.from_keras`: VGG16 ran out of memory). Keras 3's own `model.export(path, format="onnx")` calls
tf2onnx too on the TensorFlow backend (same memory problem) and refuses a model that has never been called.

How a Keras partition finds its ONNX tensors: tf2onnx names graph tensors after TensorFlow ops and fuses layers
(a Conv2D and its BatchNormalization become one ONNX Conv), so a Keras layer's output may not exist by name in a
plain conversion. splitbed therefore converts a probe model whose outputs are the model's output plus every
crossing tensor of every registered partition (Keras names them after their layers). tf2onnx then keeps each of
them as a tensor, in NHWC like Keras (tf2onnx computes convolutions in NCHW inside and transposes; ONNX Runtime's
basic optimisation moves those transposes, so some of these tensors stay NHWC in the graph and others are an
NCHW tensor followed by a Transpose). After conversion the extra outputs (and unused Transposes) are removed, and
each Keras crossing tensor is mapped to a `Boundary`: the ONNX tensor inside, its wire name (the Keras tensor
name) and the permutation NCHW -> NHWC when the tensor inside is NCHW. The
map is stored in the file's metadata (`splitbed.partitions`, JSON), so the file alone says how to run any
registered partition of the model on ONNX Runtime with the same wire tensors as the Keras runtime. Cost of the
probe outputs: a fusion across a partition point is not made (e.g. a BatchNormalization whose output is a
candidate stays an Add after its Conv), and the NHWC tensors at partition points add Transposes: ONNX Runtime
compute measured on these graphs includes them.

Cache: `$SPLITBED_ONNX_CACHE` or `$XDG_CACHE_HOME/splitbed/onnx` (default `~/.cache/splitbed/onnx`), one file per
key; the key hashes the model, its input size, the weights' identity (SHA-256 of the weight values) and the
versions of tf2onnx, onnx, ONNX Runtime, TensorFlow and Keras, the opset and CONVERSION_SCHEME. Writes are atomic (temporary
file, then rename) under an exclusive lock, so the UE and edge processes converting at once produce one file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splitbed.models import cachedirs
from splitbed.models.errors import GraphCutError
from splitbed.models.onnx.extract import Boundary
from splitbed.models.onnx.graph import METADATA_PREFIX, OnnxGraph, OnnxModelError

CONVERTER = "tf2onnx.convert.from_function (Keras Model.stateless_call, weights as inputs)"
OFFLINE_OPTIMIZATION = "onnxruntime ORT_ENABLE_BASIC"
OPSET = 17
CONVERSION_SCHEME = 1  # bump when the probe/mapping recipe changes: old cache entries are then not reused
CACHE_ENV = "SPLITBED_ONNX_CACHE"
NHWC_FROM_NCHW = (0, 2, 3, 1)


def cache_dir() -> Path:
    return cachedirs.cache_dir("onnx", CACHE_ENV)


def converter_versions() -> dict[str, Any]:
    """What made a converted file; part of the cache key and of every record of an ONNX Runtime side."""
    from splitbed.models import tfboot

    keras, tf = tfboot.keras(), tfboot.tensorflow()  # quietly, before tf2onnx imports TensorFlow its own way
    import onnx
    import onnxruntime as ort
    import tf2onnx

    return {"converter": CONVERTER, "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
            "onnxruntime": ort.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "opset": OPSET, "offline_optimization": OFFLINE_OPTIMIZATION, "scheme": CONVERSION_SCHEME}


def weights_identity(loaded: Any) -> str:
    """SHA-256 of the weight values (random weights already carry it; ImageNet and file weights are hashed)."""
    from splitbed.models.weights import weights_sha256

    return str(loaded.weights.sha256 or weights_sha256(loaded.keras_model))


def cache_key(loaded: Any, versions: dict[str, Any] | None = None) -> str:
    versions = versions if versions is not None else converter_versions()
    ident = {"model": loaded.spec.name, "input_shape": list(loaded.spec.input_shape),
             "weights_sha256": weights_identity(loaded), "versions": versions}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Converted:
    """A built-in model as ONNX: the file, its graph, the partition map, and how it was obtained."""

    path: Path
    graph: OnnxGraph
    partitions: dict[int, list[Boundary]]  # Keras partition id -> crossing tensors, in Keras cut order
    source: dict[str, Any]  # model, weights, versions, conversion seconds (metadata `splitbed.source`)
    cached: bool  # True: read from the cache; False: converted in this call
    load_seconds: float  # reading (and, when not cached, converting) in this call

    @property
    def conversion_seconds(self) -> float:
        return float(self.source.get("conversion_seconds", 0.0))


def _probe_and_map(loaded: Any) -> tuple[Any, dict[int, list[str]], list[str]]:
    """The probe model (outputs: model output + every crossing tensor) and each partition's crossing names."""
    from splitbed.models import tfboot
    from splitbed.models.graph import cut_graph, graph_nodes

    keras = tfboot.keras()

    model = loaded.keras_model
    nodes = graph_nodes(model)
    input_ids = {id(t) for t in model.inputs}
    output_ids = {id(t) for t in model.outputs}
    extra: dict[str, Any] = {}
    names: dict[int, list[str]] = {}
    for part in loaded.spec.partitions:
        crossing = cut_graph(model, part.name, nodes).crossing
        names[part.partition_id] = [c.name for c in crossing]
        for c in crossing:
            if id(c.tensor) not in input_ids and id(c.tensor) not in output_ids:
                extra.setdefault(c.name, c.tensor)
    probe = keras.Model(model.inputs, [*model.outputs, *extra.values()], name=f"{model.name}_onnx_probe")
    got = list(probe.output_names)[len(model.outputs):]
    if got != list(extra):
        raise GraphCutError(f"{loaded.spec.name}: probe outputs are named {got[:5]}..., not after the crossing "
                            f"tensors {list(extra)[:5]}...: a layer called twice cannot be mapped to ONNX")
    return probe, names, list(extra)


def _strip_probe_outputs(model: Any, extra: list[str]) -> dict[str, Boundary]:
    """Remove the probe's extra graph outputs; the Boundary each Keras tensor name maps to."""
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    producer = {out: node for node in model.graph.node for out in node.output}
    keep = [o for o in model.graph.output if o.name not in set(extra)]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    mapping: dict[str, Boundary] = {}
    dropped = []
    for name in extra:
        node = producer.get(name)
        if node is None:
            raise OnnxModelError(f"tf2onnx produced no tensor {name!r}")
        unused = consumers.get(name, 0) == 0
        perm = tuple(next((a.ints for a in node.attribute if a.name == "perm"), ()))
        if node.op_type == "Transpose" and perm == NHWC_FROM_NCHW:
            # Cut at the NCHW tensor: other NCHW readers of it (tf2onnx does not always route them through this
            # Transpose) then stay on the tail side, and a reader of the Transpose recomputes it there.
            mapping[name] = Boundary(tensor=node.input[0], wire=name, perm=perm)
            if unused:
                dropped.append(node)
        elif node.op_type == "Identity" and unused:
            mapping[name] = Boundary(tensor=node.input[0], wire=name)
            dropped.append(node)
        else:
            mapping[name] = Boundary(tensor=name, wire=name)
    for node in dropped:
        model.graph.node.remove(node)
    return mapping


def _tf2onnx_stateless(probe: Any, input_shape: tuple[int, ...]) -> Any:
    """tf2onnx conversion with the weights as graph inputs, then turned into initializers.

    Why not `tf2onnx.convert.from_keras(model)`: it freezes the weights into the TensorFlow graph and runs
    Grappler's constant folding on it; for VGG16 (553 MB of weights) that took over 20 GB of memory here and was
    killed. Tracing `Model.stateless_call` with the weights as inputs gives tf2onnx a graph without big constants
    (VGG16 converts in about a second); the weight values are then attached once as initializers."""
    import numpy as np

    from splitbed.models import tfboot
    from splitbed.models.loading import INPUT_NAME

    tf = tfboot.tensorflow()  # quietly, before tf2onnx imports TensorFlow its own way
    import tf2onnx
    from onnx import numpy_helper

    trainable = list(probe.trainable_variables)
    variables = trainable + list(probe.non_trainable_variables)
    specs = [tf.TensorSpec((None, *input_shape), tf.float32, name=INPUT_NAME)]
    specs += [tf.TensorSpec(v.shape, v.dtype, name=f"w{i}") for i, v in enumerate(variables)]
    count = len(trainable)
    names = list(probe.output_names)

    @tf.function(input_signature=specs)
    def call(x: Any, *weights: Any) -> dict[str, Any]:
        outputs, _ = probe.stateless_call(list(weights[:count]), list(weights[count:]), x, training=False)
        return dict(zip(names, outputs if isinstance(outputs, (list, tuple)) else [outputs], strict=True))

    try:
        model, _ = tf2onnx.convert.from_function(call, input_signature=specs, opset=OPSET)
    except Exception as exc:  # tf2onnx raises ValueError/KeyError/RuntimeError from deep inside
        raise OnnxModelError(f"tf2onnx could not convert {probe.name}: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:300] if str(exc) else ''}") from exc
    values = {f"w{i}": v for i, v in enumerate(variables)}
    inputs = list(model.graph.input)
    del model.graph.input[:]
    for vi in inputs:
        if vi.name in values:
            model.graph.initializer.append(numpy_helper.from_array(np.asarray(values[vi.name].value), vi.name))
        else:
            model.graph.input.append(vi)
    if [vi.name for vi in model.graph.input] != [INPUT_NAME] or sorted(o.name for o in model.graph.output) != sorted(names):
        raise OnnxModelError(f"tf2onnx gave inputs {[vi.name for vi in model.graph.input]} and outputs "
                             f"{[o.name for o in model.graph.output][:4]}..., expected [{INPUT_NAME!r}] and the "
                             "probe's outputs")
    return model


def _fold(model: Any, workdir: Path) -> Any:
    """ONNX Runtime's basic (hardware-independent) offline optimisation: constant folding (the weight
    transposes tf2onnx adds for weights given as inputs) and standard fusions such as Conv+BatchNormalization.
    The result holds standard ONNX operators only; graph outputs (the probe's crossing tensors) are kept."""
    import onnx
    import onnxruntime as ort

    src = workdir / f".fold-{os.getpid()}-in.onnx"
    dst = workdir / f".fold-{os.getpid()}-out.onnx"
    try:
        onnx.save(model, str(src))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(dst)
        options.log_severity_level = 3
        ort.InferenceSession(str(src), sess_options=options, providers=["CPUExecutionProvider"])
        folded = onnx.load(str(dst))
    finally:
        src.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)
    if any(n.domain not in ("", "ai.onnx") for n in folded.graph.node):
        raise OnnxModelError("ONNX Runtime's basic optimisation produced non-standard operators "
                             f"{sorted({n.domain + '.' + n.op_type for n in folded.graph.node if n.domain})}")
    return folded


def _convert(loaded: Any, versions: dict[str, Any], workdir: Path) -> Any:
    """The probe model converted, folded, stripped of its extra outputs, with splitbed metadata."""
    import onnx

    from splitbed.models.loading import INPUT_NAME

    start = time.perf_counter()
    probe, names, extra = _probe_and_map(loaded)
    model = _fold(_tf2onnx_stateless(probe, loaded.spec.input_shape), workdir)
    mapping = _strip_probe_outputs(model, extra)
    input_name = model.graph.input[0].name
    output_name = model.graph.output[0].name
    partitions: dict[int, list[Boundary]] = {}
    for pid, crossing in names.items():
        row = []
        for name in crossing:
            if name == INPUT_NAME:
                row.append(Boundary(tensor=input_name, wire=name))
            elif name not in mapping:  # the model output (the last partition)
                row.append(Boundary(tensor=output_name, wire=name))
            else:
                row.append(mapping[name])
        partitions[pid] = row
    seconds = time.perf_counter() - start
    source = {"model": loaded.spec.name, "input_shape": list(loaded.spec.input_shape),
              "weights": loaded.weights.to_dict(), "weights_sha256": weights_identity(loaded),
              "versions": versions, "conversion_seconds": round(seconds, 3),
              "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "keras_output": output_name, "keras_input": input_name}
    onnx.helper.set_model_props(model, {
        METADATA_PREFIX + "source": json.dumps(source, sort_keys=True),
        METADATA_PREFIX + "partitions": json.dumps({str(pid): [b.to_dict() for b in row]
                                                     for pid, row in sorted(partitions.items())}),
    })
    model.producer_name = f"splitbed ({CONVERTER} {versions['tf2onnx']})"
    return model


def partition_map(graph: OnnxGraph) -> dict[int, list[Boundary]]:
    """The Keras partition map a converted file carries ({} for any other ONNX file)."""
    raw = graph.splitbed_metadata("partitions")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise OnnxModelError(f"{graph.source}: metadata {METADATA_PREFIX}partitions must be a JSON object")
    try:
        return {int(pid): [Boundary.from_dict(b) for b in row] for pid, row in raw.items()}
    except (ValueError, TypeError) as exc:
        raise OnnxModelError(f"{graph.source}: bad metadata {METADATA_PREFIX}partitions: {exc}") from exc


def _check(graph: OnnxGraph, partitions: dict[int, list[Boundary]]) -> None:
    """Every mapped partition must be a real cut of the graph (raises GraphCutError otherwise)."""
    for row in partitions.values():
        graph.check_separates([b.tensor for b in row])


def converted(loaded: Any) -> Converted:
    """The ONNX form of a loaded built-in model: from the cache, else converted now and cached."""
    import onnx

    from splitbed.models.onnx.graph import load as load_graph

    start = time.perf_counter()
    versions = converter_versions()
    key = cache_key(loaded, versions)
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{loaded.spec.name}-{key}.onnx"
    cached = True
    with open(directory / f".{loaded.spec.name}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process converting the same key: wait for its file
        if not path.exists():
            cached = False
            model = _convert(loaded, versions, directory)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            onnx.save(model, str(tmp))
            tmp.replace(path)
    graph = load_graph(path)
    partitions = partition_map(graph)
    _check(graph, partitions)
    source = graph.splitbed_metadata("source") or {}
    return Converted(path=path, graph=graph, partitions=partitions, source=source, cached=cached,
                     load_seconds=time.perf_counter() - start)

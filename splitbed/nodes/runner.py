"""Thin adapter over splitbed.models for the nodes: load each model once, build and warm each head/tail once,
run them with `predict_on_batch` (a compiled call: ~20 ms for MobileNetV2 here, where eager `model(x)` took
~140 ms and `predict` ~75 ms of mostly overhead), and check tensors against the cut before running a tail.

Inference runtime (one small interface, `predict_on_batch` on the head and tail): TensorFlow (Keras sub-models)
by default; `engine="onnxruntime"` runs a registered model's converted ONNX graph on ONNX Runtime instead, and an
`.onnx` model name always runs on ONNX Runtime (splitbed.models.onnx). `runtime_info(model)` says which, for the
records.

TensorFlow is imported on first use. One `ModelRunner` is shared by every session of a process; building and
running models is serialised by its lock (Keras graph building is not thread-safe, and a serialised run keeps
one session's inference time free of another's compute). Time spent waiting for that lock is reported apart.

A runner may emulate a device (splitbed.devices): it calibrates each model when it first loads it, times each
partition's sub-model on its side (the head on a UE, the tail on an edge) when it builds the plan, and runs that
sub-model under the plan (stretched to the device's time, or measured and modelled). Each plan keeps the outcome
of its last run for the record (read it with `lock` held, right after the run).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from splitbed.devices import DeviceError
from splitbed.devices.emulation import CPU_CLOCK, WALL_CLOCK, DeviceEmulator, Outcome
from splitbed.devices.emulation import Plan as DevicePlan
from splitbed.devices.figures import DeviceFigures, HeadMemory, device_figures
from splitbed.nodes.errors import ConfigurationError, ProtocolError

INFERENCE_CALL = "keras Model.predict_on_batch (compiled), after one warm-up call per sub-model"
ENGINES = ("tensorflow", "onnxruntime")
MAX_INPUT_SIZES = 8  # other input sizes one node builds per model (each a whole model in memory)


@dataclass(frozen=True)
class CutInfo:
    """One crossing tensor as the nodes need it: its position (= AIPS tensor_id), name, per-sample shape and
    dtype. On the wire the tensor carries the batch dimension first: (batch, *shape)."""

    tensor_id: int
    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def raw_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass
class PartPlan:
    """A partition ready to run: the cached SplitModel and its cut, and how long building it took."""

    partition_id: int
    name: str
    split: Any
    cut: list[CutInfo]
    build_ms: float
    build_reported: bool = False  # the first inference on this plan reports build_ms, later ones 0
    input_size: tuple[int, int] | None = None  # None: the model's own size; else a variable-input build
    device: DevicePlan | None = None      # the runner's device applied to this side's sub-model (None: no device)
    last_outcome: Outcome | None = None   # the last run of this side's sub-model under `device`
    head_memory: HeadMemory | None = None  # the head's weights and largest activation (model tensors, batch 1)


@dataclass
class ModelRunner:
    weights: str = "auto"
    lock: threading.Lock = field(default_factory=threading.Lock)
    engine: str = "tensorflow"  # inference runtime of registered models (ENGINES); .onnx files: onnxruntime
    device: DeviceEmulator | None = None  # the device this node emulates (None: the host, nothing timed)
    _loaded: dict[tuple[str, tuple[int, int] | None], Any] = field(default_factory=dict)
    _plans: dict[tuple[str, int, tuple[int, int] | None], PartPlan] = field(default_factory=dict)
    _calls: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigurationError(f"inference runtime {self.engine!r}; choose one of {', '.join(ENGINES)}")

    def _load_new(self, model: str) -> Any:
        from splitbed.models.onnx import is_onnx_path

        if is_onnx_path(model):
            from splitbed.models.onnx.model import load_file

            return load_file(model)
        from splitbed.models import load

        loaded = load(model, self.weights)
        if self.engine == "onnxruntime":
            from splitbed.models.onnx.model import converted_model

            return converted_model(loaded)
        return loaded

    def runtime_info(self, model: str) -> dict[str, Any]:
        """Which inference runtime runs `model`'s sub-models here, and its version (loads the model)."""
        loaded = self.load(model)
        if hasattr(loaded, "runtime_info"):
            return dict(loaded.runtime_info())
        from splitbed.models import tfboot

        return {"name": "tensorflow", "version": tfboot.tensorflow().__version__,
                "keras": tfboot.keras().__version__, "call": INFERENCE_CALL}

    def inference_call(self, model: str) -> str:
        """How `model`'s sub-models are called (each RESULT says it: looked up once per model)."""
        call = self._calls.get(model)
        if call is None:
            call = self._calls[model] = str(self.runtime_info(model)["call"])
        return call

    def load(self, model: str, input_size: tuple[int, int] | None = None) -> Any:
        """The LoadedModel for `model` (built on first use, with this runner's weights), at `input_size`
        (height, width) for a variable-input model (same weights, copied from the model's own size)."""
        size = self._size(model, input_size)
        loaded = self._loaded.get((model, size))
        if loaded is None:
            from splitbed.models.errors import ModelError

            built = sum(1 for name, other in self._loaded if name == model and other is not None)
            if size is not None and built >= MAX_INPUT_SIZES:
                raise ConfigurationError(f"{model} is already built at {built} other input sizes, the most one node "
                                         f"keeps (each is a whole model in memory); use one of those")
            try:
                if size is None and self.device is not None:
                    self.device.check_model(model)  # a device without this model's latency: refuse before loading
                loaded = self._load_new(model) if size is None else self.load(model).at_input_size(*size)
            except (ModelError, DeviceError) as exc:
                raise ConfigurationError(str(exc)) from exc
            if size is None and self.device is not None and self.device.active:
                self.device.calibrate(model, *model_calls(share_model(loaded)))
            self._loaded[(model, size)] = loaded
        return loaded

    def _size(self, model: str, input_size: Any) -> tuple[int, int] | None:
        """None for the model's own size, else the (height, width) asked for."""
        if input_size is None:
            return None
        size = (int(input_size[0]), int(input_size[1]))
        return None if size == self.spec(model).target_size else size

    def weights_info(self, model: str) -> dict[str, Any]:
        return dict(self.load(model).weights.to_dict())

    def spec(self, model: str, input_size: Any = None) -> Any:
        from splitbed.models import spec_for
        from splitbed.models.errors import ModelError

        try:
            spec = spec_for(model)
            return spec if input_size is None else spec.at_input_size(int(input_size[0]), int(input_size[1]))
        except ModelError as exc:
            raise ConfigurationError(str(exc)) from exc

    def partition(self, model: str, key: int | str) -> Any:
        from splitbed.models.errors import ModelError

        try:
            return self.spec(model).partition(key)
        except ModelError as exc:
            raise ConfigurationError(str(exc)) from exc

    def plan(self, model: str, key: int | str, input_size: Any = None) -> PartPlan:
        """Head and tail for a partition (at `input_size` for a variable-input model), built and warmed on first
        use (call with `lock` held)."""
        part = self.partition(model, key)
        size = self._size(model, input_size)
        cached = self._plans.get((model, part.partition_id, size))
        if cached is not None:
            return cached
        start = time.perf_counter()
        loaded = self.load(model, size)
        split = _split(loaded, part.partition_id)
        cut = [CutInfo(i, str(c.name), tuple(c.shape), np.dtype(c.dtype).name) for i, c in enumerate(split.cut)]
        zeros = [np.zeros((1, *c.shape), dtype=c.dtype) for c in cut]
        split.head.predict_on_batch(np.zeros((1, *loaded.spec.input_shape), dtype=np.float32))
        split.tail.predict_on_batch(zeros if len(zeros) > 1 else zeros[0])
        built = PartPlan(part.partition_id, part.name, split, cut, (time.perf_counter() - start) * 1000,
                         input_size=size)
        if self.device is not None:
            built.device = self._device_plan(model, built, loaded, zeros)
            if self.device.side == "ue":
                built.head_memory = head_memory(split.head)
        self._plans[(model, part.partition_id, size)] = built
        return built

    def _device_plan(self, model: str, built: PartPlan, loaded: Any, zeros: list[np.ndarray]) -> DevicePlan:
        """Time this side's sub-model on the host, alternating with the full model at the same input size, and
        plan it on the device. A model converted to ONNX is timed on the Keras model it came from (share_model)."""
        assert self.device is not None
        source = share_model(loaded)
        split = built.split if source is loaded else _split(source, built.partition_id)
        if source is not loaded:
            zeros = [np.zeros((1, *c.shape), dtype=c.dtype) for c in split.cut]
        x = np.zeros((1, *source.spec.input_shape), dtype=np.float32)
        if self.device.side == "ue":
            call = lambda: split.head.predict_on_batch(x)  # noqa: E731
        else:
            arrays = zeros if len(zeros) > 1 else zeros[0]
            call = lambda: split.tail.predict_on_batch(arrays)  # noqa: E731
        # an ONNX file's graph runs on ONNX Runtime only, whose thread pools spin after a call: its CPU time is not
        # the call's own (WALL_MIN_SHARE)
        clock = WALL_CLOCK if hasattr(source, "graph") else CPU_CLOCK
        try:
            plan = self.device.plan(model, call, model_calls(source)[0], clock)
        except DeviceError as exc:
            raise ConfigurationError(str(exc)) from exc
        if source is not loaded and plan.share_method is not None:
            plan = replace(plan, share_method=plan.share_method + CONVERTED_SHARE)
        return plan

    @staticmethod
    def device_run(plan: PartPlan) -> dict[str, Any] | None:
        """The last run's outcome under an emulating device, small enough for every RESULT (None when nothing is
        emulated: the run is then the measured tail time itself)."""
        outcome = plan.last_outcome
        if plan.device is None or plan.device.mechanism == "none" or outcome is None:
            return None
        return {"measured_ms": outcome.measured_ms, "emulated_ms": outcome.emulated_ms, "late_ms": outcome.late_ms,
                "late_cause": outcome.late_cause}

    def device_figures(self, plan: PartPlan) -> DeviceFigures | None:
        """This side's device block for the record of the last run on `plan` (None without a device)."""
        if self.device is None or plan.device is None:
            return None
        return device_figures(self.device.profile, self.device.side, plan.device, plan.last_outcome)

    def plan_for(self, model: str, partition_id: int, arrays: list[np.ndarray]) -> PartPlan:
        """The plan to run received tensors on: a built plan of this partition whose cut shapes match them (an
        input size the local node PREPAREd), else the model's own size (check_tensors then says what differs).
        Never builds a new size from received data: sizes come only from PREPARE (call with `lock` held)."""
        shapes = [tuple(a.shape[1:]) for a in arrays]
        for (name, pid, _), plan in self._plans.items():
            if name == model and pid == partition_id and [c.shape for c in plan.cut] == shapes:
                return plan
        return self.plan(model, partition_id)

    @staticmethod
    def run_head(plan: PartPlan, array: np.ndarray) -> list[np.ndarray]:
        """The head's outputs; under a UE device, returns when the device's head would have finished."""
        if plan.device is not None:
            out, plan.last_outcome = DeviceEmulator.run(plan.device, lambda: plan.split.head.predict_on_batch(array))
        else:
            out = plan.split.head.predict_on_batch(array)
        arrays = list(out) if isinstance(out, (list, tuple)) else [out]
        return [np.ascontiguousarray(a) for a in arrays]

    @staticmethod
    def check_tensors(plan: PartPlan, arrays: list[np.ndarray], max_batch: int | None = None) -> list[np.ndarray]:
        """The arrays, cast to the tail's dtypes, if they fit the cut (and hold at most `max_batch` samples: the
        tail's activations grow with the batch, outside any decode budget); a specific error if they do not."""
        if len(arrays) != len(plan.cut):
            raise ProtocolError("tensor_mismatch", f"partition {plan.name} (id {plan.partition_id}) takes "
                                f"{len(plan.cut)} tensors, got {len(arrays)}", fatal=False)
        fitted = []
        for cut, array in zip(plan.cut, arrays, strict=True):
            if array.ndim != len(cut.shape) + 1 or tuple(array.shape[1:]) != cut.shape or array.shape[0] < 1:
                raise ProtocolError("tensor_mismatch", f"tensor {cut.tensor_id} ({cut.name}) of partition "
                                    f"{plan.name} must have shape [batch, {', '.join(map(str, cut.shape))}], got "
                                    f"{list(array.shape)}", fatal=False)
            if max_batch is not None and array.shape[0] > max_batch:
                raise ProtocolError("tensor_mismatch", f"tensor {cut.tensor_id} ({cut.name}) holds a batch of "
                                    f"{array.shape[0]} samples; this node runs at most {max_batch} per inference "
                                    "(remote node option --max-batch)", fatal=False)
            fitted.append(array if array.dtype == cut.dtype else array.astype(cut.dtype))
        return fitted

    @staticmethod
    def run_tail(plan: PartPlan, arrays: list[np.ndarray]) -> np.ndarray:
        """The tail's output; under an edge device, stretched or measured-and-modelled like a head."""
        inputs = arrays if len(arrays) > 1 else arrays[0]
        if plan.device is not None:
            out, plan.last_outcome = DeviceEmulator.run(plan.device, lambda: plan.split.tail.predict_on_batch(inputs))
        else:
            out = plan.split.tail.predict_on_batch(inputs)
        return np.asarray(out)


def _split(loaded: Any, partition_id: int) -> Any:
    """A loaded model's split at a partition, the camera pseudo-partition included (splitbed.models.camera)."""
    from splitbed.models.camera import camera_split, is_camera

    return camera_split(loaded) if is_camera(partition_id) else loaded.split(partition_id)


CONVERTED_SHARE = ("; timed on the Keras model this ONNX graph was converted from (same partition): ONNX "
                   "Runtime's thread pools spin after a call, so its own CPU times are not the calls'")


def share_model(loaded: Any) -> Any:
    """What a device's calibration and shares are timed on: the model itself, or for a registered model converted
    to ONNX Runtime the Keras model it came from (whose process CPU times are its calls' own)."""
    keras_model = getattr(loaded, "keras", None)
    return loaded if keras_model is None else keras_model


def model_calls(loaded: Any) -> tuple[Any, Any]:
    """(the whole model, an identity model) called on a zero input the way sub-models are called, on the runtime
    that runs them (Keras, or ONNX Runtime): the host's full-model time, and the per-call overhead a device does
    not share."""
    x = np.zeros((1, *loaded.spec.input_shape), dtype=np.float32)
    if hasattr(loaded, "graph"):  # splitbed.models.onnx.model.OnnxLoaded
        from onnx import TensorProto, helper

        from splitbed.models.onnx.runtime import OrtModel

        full = OrtModel(loaded.graph.model)
        io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(x.shape)) for n in ("x", "y")]
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", io[:1], io[1:])
        opset = [helper.make_opsetid("", 13)]
        identity = OrtModel(helper.make_model(graph, opset_imports=opset, ir_version=loaded.graph.model.ir_version))
        return (lambda: full.run([x])), (lambda: identity.run([x]))
    import keras

    entry = keras.Input(shape=tuple(loaded.spec.input_shape))
    keras_identity = keras.Model(entry, entry)
    return (lambda: loaded.keras_model.predict_on_batch(x)), (lambda: keras_identity.predict_on_batch(x))


HEAD_MEMORY_METHOD = ("from the head sub-model: weights = sum of its weight tensors' bytes; largest activation = "
                      "the largest single layer output for one sample (float32 unless the layer says otherwise); "
                      "the node process's RSS is reported apart (local_resources.peak_rss_bytes)")


def head_memory(head: Any) -> HeadMemory:
    """What the head needs in memory as model tensors: its weights and its largest activation, batch 1."""
    if not hasattr(head, "layers"):  # an ONNX Runtime sub-graph (splitbed.models.onnx.runtime.OrtModel)
        return _onnx_head_memory(head.model)
    weights = int(sum(int(np.prod(w.shape, dtype=np.int64)) * np.dtype(w.dtype).itemsize for w in head.weights))
    largest, name = 0, ""
    for layer in head.layers:
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        size = 0
        for tensor in outputs:
            shape = [int(d) for d in tuple(tensor.shape)[1:] if d is not None]
            size += int(np.prod(shape, dtype=np.int64)) * np.dtype(str(tensor.dtype)).itemsize
        if size > largest:
            largest, name = size, layer.name
    return HeadMemory(weights_bytes=weights, largest_activation_bytes=largest, largest_activation_layer=name,
                      method=HEAD_MEMORY_METHOD)


def _onnx_head_memory(proto: Any) -> HeadMemory:
    from onnx import helper, numpy_helper

    weights = sum(int(numpy_helper.to_array(t).nbytes) for t in proto.graph.initializer)
    largest, name = 0, ""
    for info in [*proto.graph.value_info, *proto.graph.output]:
        kind = info.type.tensor_type
        dims = [d.dim_value for d in kind.shape.dim][1:]  # batch first; symbolic dims read 0 and are skipped
        size = int(np.prod([d for d in dims if d > 0], dtype=np.int64)) * np.dtype(
            helper.tensor_dtype_to_np_dtype(kind.elem_type)).itemsize
        if size > largest:
            largest, name = size, info.name
    return HeadMemory(weights_bytes=weights, largest_activation_bytes=largest, largest_activation_layer=name,
                      method=HEAD_MEMORY_METHOD.replace("the head sub-model", "the head's ONNX graph").replace(
                          "layer output", "tensor (value_info)"))

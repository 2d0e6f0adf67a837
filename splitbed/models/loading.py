"""Build a registered model with resolved weights: `load(name, weights="auto") -> LoadedModel`."""

from __future__ import annotations

import dataclasses
import random
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from splitbed.models import registry, tfboot
from splitbed.models import weights as wts
from splitbed.models.errors import WeightsError
from splitbed.models.registry import ModelSpec, Partition

if TYPE_CHECKING:
    from splitbed.models.splitter import SplitModel

INPUT_NAME = "input_layer"  # Keras 3's name; given explicitly so a second model in the process keeps it


@dataclass
class LoadedModel:
    """A full Keras model, its registry entry and the record of its weights; caches its splits."""

    keras_model: Any
    spec: ModelSpec
    weights: wts.WeightsInfo
    _splits: dict[int, SplitModel] = field(default_factory=dict, repr=False)
    _graph: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def partition(self, key: Partition | int | str) -> Partition:
        return self.spec.partition(key)

    def split(self, key: Partition | int | str) -> SplitModel:
        """Head and tail for a partition; built once per partition and then reused."""
        from splitbed.models.splitter import split

        return split(self, key)

    def at_input_size(self, height: int, width: int) -> LoadedModel:
        """The same model (same weights, copied) built for another input size; a model with variable_input only
        (ModelError otherwise). Its splits cut the same layers; the crossing tensors have other shapes."""
        spec = self.spec.at_input_size(height, width)
        if spec is self.spec:
            return self
        model = _build(spec, None)
        model.set_weights(self.keras_model.get_weights())
        return LoadedModel(keras_model=model, spec=spec, weights=self.weights)


def _build(spec: ModelSpec, keras_weights: str | None) -> Any:
    keras = tfboot.keras()
    module = getattr(keras.applications, spec.keras_module)
    constructor = getattr(module, spec.constructor)
    input_tensor = keras.Input(shape=spec.input_shape, name=INPUT_NAME)
    built = constructor(weights=keras_weights, input_tensor=input_tensor)
    # Applications built on an input_tensor take a list of one input; re-wrap (same layers, same graph) so
    # that model(x) takes a plain array without Keras's structure warning.
    return keras.Model(inputs=input_tensor, outputs=built.outputs[0], name=built.name)


def build_architecture(name: str) -> Any:
    """The model's graph with untrained (unseeded) weights: for shapes, sizes, parameter and MAC counts only."""
    return _build(registry.get(name), None)


def _build_random(spec: ModelSpec, seed: int) -> Any:
    """Seeded initialisers, then calibration from `seed` (wts.RANDOM_SCHEME): bit-identical weights in every
    process (tested with real subprocesses) whose outputs depend on the input (raw Keras initialisers gave
    MobileNetV2 an exactly uniform softmax)."""
    from splitbed.models.calibration import calibrate

    model = seeded_build(spec, seed)
    calibrate(model, spec, seed)
    return model


def seeded_build(spec: ModelSpec, seed: int) -> Any:
    """The model with Keras's initialisers seeded by `seed`, before calibration.

    keras.utils.set_random_seed also seeds Python's and NumPy's global generators: put those back after.
    """
    import numpy as np

    keras = tfboot.keras()
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        keras.utils.set_random_seed(seed)
        return _build(spec, None)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def _build_from_file(spec: ModelSpec, path: str) -> Any:
    import warnings

    model = _build(spec, None)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.load_weights(path)
        # Keras warns (instead of failing) when parts of a file do not match and keeps fresh weights there.
        partial = [str(w.message) for w in caught if "freshly-initialized" in str(w.message)]
        if partial:
            raise WeightsError(f"{len(partial)} part(s) of the model kept fresh weights, e.g. {partial[0][:200]}")
    except Exception as exc:  # Keras raises ValueError/OSError/KeyError depending on what is wrong
        raise WeightsError(f"cannot load {spec.name} weights from {path}: {type(exc).__name__}: {exc} "
                           "(expected a Keras weights file saved from this architecture: .weights.h5, or the "
                           "legacy .h5 that Keras applications download)") from exc
    return model


def _build_imagenet(spec: ModelSpec, info: wts.WeightsInfo) -> tuple[Any, wts.WeightsInfo]:
    try:
        model = _build(spec, "imagenet")
    except Exception as exc:  # download refused, corrupt cache file (hash mismatch), ...
        raise WeightsError(f"cannot get ImageNet weights for {spec.name} ({spec.imagenet_weights_file}): "
                           f"{type(exc).__name__}: {exc}. Offline, put the file in ~/.keras/models/, pass a "
                           "local weights file, or use random:SEED") from exc
    cached = wts.keras_cache_file(spec.imagenet_weights_file)
    return model, wts.WeightsInfo(source="imagenet", requested=info.requested,
                                  path=str(cached) if cached else info.path)


def load(name: str, weights: str = "auto", input_size: tuple[int, int] | None = None) -> LoadedModel:
    """Build model `name` with the given weights (auto, imagenet, random:SEED or a file path); `input_size`
    (height, width) builds a variable-input model at another size (LoadedModel.at_input_size)."""
    spec = registry.get(name)
    info = wts.resolve(weights, spec.imagenet_weights_file)
    if info.source == "random":
        assert info.seed is not None
        model = _build_random(spec, info.seed)
    elif info.source == "file":
        assert info.path is not None
        model = _build_from_file(spec, info.path)
    else:
        try:
            model, info = _build_imagenet(spec, info)
        except WeightsError as exc:
            if info.requested != "auto":
                raise
            # auto: the host answered but the download (or the cached file) failed: fall back, loudly.
            info = wts.random_info(info.requested, 0, f"ImageNet weights could not be loaded ({exc})")
            model = _build_random(spec, 0)
    if info.source == "random":
        info = dataclasses.replace(info, sha256=wts.weights_sha256(model))
    wts.announce(info, spec.name)
    loaded = LoadedModel(keras_model=model, spec=spec, weights=info)
    return loaded if input_size is None else loaded.at_input_size(*input_size)

"""What the network's answers are compared with: the same model, weights and input, run in the test process.

- `unsplit(image)`: the whole model's probabilities (the correctness reference);
- `head(partition, image)`: the tensors the local node should send (the capture reference);
- `through_format(partition, image, compression)`: the tail's output after the tensors went through the
  format's encoder and decoder here, i.e. what a lossy compression profile should give.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections import OrderedDict
from functools import cached_property
from typing import Any

import numpy as np

MAX_LOADED_MODELS = 2
# Models with seeded random weights alive in this process, by (model, seed, scheme): a second fixture asking for the
# same weights shares the Keras model instead of building it again. Weak: sharing never keeps a model in memory.
_RANDOM_LIVE: weakref.WeakValueDictionary[tuple[str, int | None, int | None], Any] = weakref.WeakValueDictionary()


def shared_load(model: str, weights: str) -> Any:
    """`splitbed.models.load(model, weights)` for test fixtures: `random:SEED` weights (or `auto` resolving to them)
    reuse the Keras model of a LoadedModel still alive in this process with the same seed and scheme. Those
    weights are bit-identical in every process (their hash is checked by tests/integration/models), so the result
    does not depend on which fixture loaded first; the record (WeightsInfo) is this request's own."""
    from splitbed.models import load, registry
    from splitbed.models import weights as wts
    from splitbed.models.loading import LoadedModel

    spec = registry.get(model)
    info = wts.resolve(weights, spec.imagenet_weights_file)
    if info.source != "random":
        return load(model, weights)
    key = (model, info.seed, info.scheme)
    live = _RANDOM_LIVE.get(key)
    if live is None:
        loaded = load(model, weights)
    else:
        wts.announce(info, spec.name)
        loaded = LoadedModel(keras_model=live.keras_model, spec=live.spec,
                             weights=dataclasses.replace(info, sha256=live.weights.sha256))
    _RANDOM_LIVE[key] = loaded
    return loaded


class Reference:
    """One model loaded in the test process with the nodes' weights spec (same seed or file: same weights)."""

    def __init__(self, model: str, weights: str) -> None:
        self.model = model
        self.loaded = shared_load(model, weights)
        self._inputs: dict[str, Any] = {}
        self._unsplit: dict[str, np.ndarray] = {}

    @cached_property
    def weights(self) -> dict[str, Any]:
        return self.loaded.weights.to_dict()

    def same_weights_as(self, record_weights: dict[str, Any]) -> bool:
        """True when a record's weights are these (source, seed and file hash agree)."""
        return all(record_weights.get(k) == self.weights.get(k) for k in ("source", "seed", "sha256"))

    def input(self, image: str) -> np.ndarray:
        """The preprocessed input exactly as the local node makes it (same file, same preprocessing)."""
        if image not in self._inputs:
            from splitbed.models import preprocess
            from splitbed.nodes.images import resolve_image

            self._inputs[image] = preprocess.load_image(resolve_image(image), self.loaded.spec).array
        return self._inputs[image]

    def unsplit(self, image: str) -> np.ndarray:
        """Probabilities of the whole model (1000,) for the image."""
        if image not in self._unsplit:
            out = self.loaded.keras_model.predict_on_batch(self.input(image))
            self._unsplit[image] = np.asarray(out, dtype=np.float64).reshape(-1)
        return self._unsplit[image]

    def head(self, partition: str, image: str) -> list[np.ndarray]:
        return [np.asarray(a) for a in self.loaded.split(partition).run_head(self.input(image))]

    def through_format(self, partition: str, image: str, compression: str) -> tuple[list[np.ndarray], np.ndarray]:
        """(decoded tensors, tail probabilities) after encoding the head's tensors with `compression` and
        decoding them with the format's Decoder, here, without a network."""
        from splitbed.format import Aips, Decoder, TensorsDecoded, encode_aips, encode_data_bytes

        split = self.loaded.split(partition)
        arrays = self.head(partition, image)
        aips = Aips.for_arrays(1, split.partition.partition_id, arrays, profile=compression)
        decoder = Decoder()
        decoder.feed(encode_aips(aips))
        decoder.feed(encode_data_bytes(aips, arrays))
        decoded = [e for e in decoder.events() if isinstance(e, TensorsDecoded)]
        if len(decoded) != 1:
            raise AssertionError(f"the format round trip of {partition} with {compression} gave {decoded!r}")
        tensors = [np.asarray(t) for t in decoded[0].tensors]
        probabilities = np.asarray(split.run_tail(tensors), dtype=np.float64).reshape(-1)
        return tensors, probabilities


class ReferencePool:
    """At most MAX_LOADED_MODELS references in memory (VGG16 alone holds ~0.6 GB)."""

    def __init__(self, weights: str) -> None:
        self.weights = weights
        self._refs: OrderedDict[str, Reference] = OrderedDict()

    def get(self, model: str) -> Reference:
        ref = self._refs.get(model)
        if ref is None:
            while len(self._refs) >= MAX_LOADED_MODELS:
                self._refs.popitem(last=False)
            ref = self._refs[model] = Reference(model, self.weights)
        self._refs.move_to_end(model)
        return ref


def top_k(probabilities: np.ndarray, k: int = 5) -> list[int]:
    """Class indices of the k highest scores, best first; ties broken by the lower index (as a stable sort)."""
    return [int(i) for i in np.argsort(-probabilities, kind="stable")[:k]]


UNIT_ROUNDOFF = {"float16": 2.0**-11, "bfloat16": 2.0**-8, "float32": 2.0**-24, "float64": 2.0**-53}


def error_bound_violations(compression: str, sent: np.ndarray, received: np.ndarray) -> int:
    """How many elements break the compression profile's documented error bound (docs/FORMAT.md, section 7):
    exact for lossless profiles; fp16 |x-y| <= max(2^-11|x|, 2^-25); bf16 |x-y| <= max(2^-8|x|, 2^-134);
    int8 |x-y| <= scale (1/2 + 2^-40) + u|y| with scale = (hi - lo) / 255 over the tensor's range widened to 0."""
    from splitbed.format import get_profile

    x = np.asarray(sent, dtype=np.float64)
    y = np.asarray(received, dtype=np.float64)
    if x.shape != y.shape:
        raise AssertionError(f"shapes differ: sent {x.shape}, received {y.shape}")
    profile = get_profile(compression)
    error = np.abs(x - y)
    if profile.lossless:
        return int(np.count_nonzero(np.asarray(sent) != np.asarray(received)))
    transform = profile.transform.name
    if transform == "fp16":
        bound = np.maximum(2.0**-11 * np.abs(x), 2.0**-25)
    elif transform == "bf16":
        bound = np.maximum(2.0**-8 * np.abs(x), 2.0**-134)
    elif transform == "int8":
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        scale = (hi - lo) / 255.0 if hi > lo else 1.0
        bound = scale * (0.5 + 2.0**-40) + UNIT_ROUNDOFF[np.asarray(sent).dtype.name] * np.abs(y)
    else:
        raise AssertionError(f"no documented error bound known here for compression {compression!r}")
    return int(np.count_nonzero(error > bound))

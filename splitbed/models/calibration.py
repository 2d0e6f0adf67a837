"""Make seeded random weights informative (scheme 2 of `random:SEED`; docs/MODELS.md, "Random weights").

Why: Keras's default initialisers with BatchNorm left at moving mean 0 / variance 1 let activations shrink layer
after layer (MobileNetV2's depthwise kernels are drawn with Glorot fans of 9*C instead of 9: about 1/sqrt(C) per
block), so MobileNetV2's softmax came out exactly uniform and ResNet50's one-hot on the same class for every
image: an end-to-end correctness check on such outputs cannot fail.

Here, after a seeded build, one forward pass in training mode on a calibration batch drawn from SEED
(dead-leaves images: overlapping discs with power-law radii, a standard synthetic stand-in for natural image
statistics) sets:
- every BatchNormalization's moving mean and variance to the batch statistics of its input (in training mode each
  BN already normalises with exactly those, so one pass calibrates every BN, however deep);
- every kernel layer not feeding a BN (VGG16's convolutions and dense layers) a scale so its output has unit
  standard deviation (zero biases and ReLU/pooling/flatten are positively homogeneous, so scales compose along
  the chain and one pass suffices);
- the softmax layer's kernel and bias so that its logits, centred on the calibration batch's mean, have standard
  deviation LOGIT_STD: the image-dependent part of the logits decides the ranking, not a fixed per-class offset.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from splitbed.models import tfboot
from splitbed.models.errors import ModelError
from splitbed.models.registry import ModelSpec

CALIBRATION_IMAGES = 2
LOGIT_STD = 1.0  # centred logits' std on the calibration batch: photos gave top-1 0.02..0.7, entropy 2..6.3 nats
# A channel nearly constant on the calibration batch would be amplified up to 1/sqrt(epsilon) on other images.
VARIANCE_FLOOR = 1e-2  # relative to the layer's mean channel variance
DISCS = 600
DISC_RADIUS = (0.01, 0.4)  # fraction of the image side
DISC_RADIUS_EXPONENT = 3.0  # density r^-3: scale-invariant, like natural images
CHROMA = 0.35  # colour spread around each disc's grey level (photos' channels are strongly correlated)
STREAM_KEY = 0x5B17  # separates this generator's stream from any other use of SEED


def calibration_images(seed: int, count: int, height: int, width: int) -> np.ndarray:
    """`count` RGB dead-leaves images (0..255 float32, (count, height, width, 3)), a pure function of `seed`."""
    rng = np.random.Generator(np.random.PCG64([seed, STREAM_KEY]))
    rows, cols = np.arange(height)[:, None], np.arange(width)[None, :]
    side = max(height, width)
    low, high = DISC_RADIUS
    power = 1.0 - DISC_RADIUS_EXPONENT
    images = np.empty((count, height, width, 3), np.float32)
    for image in images:
        image[:] = rng.uniform(0.0, 255.0, 3)
        radius = ((high**power - low**power) * rng.uniform(size=DISCS) + low**power) ** (1.0 / power) * side
        cy, cx = rng.uniform(0.0, height, DISCS), rng.uniform(0.0, width, DISCS)
        grey = rng.uniform(0.0, 255.0, DISCS)
        colour = np.clip(grey[:, None] + rng.normal(0.0, 255.0 * CHROMA, (DISCS, 3)), 0.0, 255.0)
        for r, y, x, rgb in zip(radius, cy, cx, colour, strict=True):
            y0, y1 = max(0, int(y - r)), min(height, int(y + r) + 1)
            x0, x1 = max(0, int(x - r)), min(width, int(x + r) + 1)
            if y0 < y1 and x0 < x1:
                inside = (rows[y0:y1] - y) ** 2 + (cols[:, x0:x1] - x) ** 2 <= r * r
                image[y0:y1, x0:x1][inside] = rgb
    return images


def _producer(tensor: Any) -> Any:
    return tensor._keras_history.operation


def _inputs(layer: Any) -> list[Any]:
    if len(layer._inbound_nodes) != 1:
        raise ModelError(f"calibration: layer {layer.name} is called {len(layer._inbound_nodes)} times; the "
                         "random-weights scheme supports layers called once")
    return list(layer._inbound_nodes[0].input_tensors)


def _consumers(layer: Any) -> list[Any]:
    return [node.operation for node in layer._outbound_nodes]


def _homogeneous(layer: Any) -> bool:
    """f(c*x) = c*f(x) for c > 0: what lets a kernel's scale pass through to the next kernel layer."""
    keras = tfboot.keras()

    kind = type(layer).__name__
    if kind in {"MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten",
                "ZeroPadding2D", "Reshape", "Add"}:
        return True
    if isinstance(layer, keras.layers.ReLU):
        return layer.max_value is None and not layer.negative_slope and not layer.threshold
    if isinstance(layer, keras.layers.Activation):
        return getattr(layer.activation, "__name__", "") in ("relu", "linear")
    return False


def _upstream_scale(tensor: Any, scales: dict[str, float]) -> float:
    """Factor by which the rescaled kernels upstream multiply `tensor` (1 after a BN or at the model input)."""
    keras = tfboot.keras()

    layer = _producer(tensor)
    if isinstance(layer, (keras.layers.InputLayer, keras.layers.BatchNormalization)):
        return 1.0
    if layer.name in scales:
        return scales[layer.name]
    found = {_upstream_scale(t, scales) for t in _inputs(layer)}
    if len(found) != 1:
        raise ModelError(f"calibration: {layer.name} adds branches of different scales {sorted(found)}")
    scale = found.pop()
    if scale != 1.0 and not _homogeneous(layer):
        raise ModelError(f"calibration: a rescaled kernel's output passes {layer.name} ({type(layer).__name__}), "
                         "which is not positively homogeneous")
    return scale


def _spread(layer: Any, values: np.ndarray) -> float:
    spread = float(values.std(dtype=np.float64))
    if not np.isfinite(spread) or spread <= 0.0:
        raise ModelError(f"calibration: {layer.name}'s output is constant on the calibration batch (std {spread})")
    return spread


def _is_softmax(layer: Any) -> bool:
    return getattr(getattr(layer, "activation", None), "__name__", "") == "softmax"


def calibrate(model: Any, spec: ModelSpec, seed: int) -> None:
    """Set `model`'s BN statistics and free kernel scales from one pass on the calibration batch drawn from `seed`.

    The pass runs in a child process on one TensorFlow thread (splitbed.models.calibration_cache): TensorFlow's
    reductions add in an order that depends on its thread pool, so the same pass gave other bits on 1 and 2
    threads on one host, and the UE and edge nodes (each pinned to one CPU) would have run other weights than a
    process on both cores. The values are cached per model, input size, seed and library versions."""
    from splitbed.models.calibration_cache import calibration_for

    apply_values(model, calibration_for(spec, seed))


def _bn_keys(name: str) -> tuple[str, str]:
    return f"bn:{name}:mean", f"bn:{name}:variance"


def apply_values(model: Any, values: dict[str, np.ndarray]) -> None:
    """Assign what `calibration_values` computed (from this process or a child) to a freshly seeded build."""
    keras = tfboot.keras()

    expected: set[str] = set()
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            mean_key, variance_key = _bn_keys(layer.name)
            expected |= {mean_key, variance_key}
            layer.moving_mean.assign(_shaped(values, mean_key, tuple(layer.moving_mean.shape)))
            layer.moving_variance.assign(_shaped(values, variance_key, tuple(layer.moving_variance.shape)))
    for layer in model.layers:
        key = f"factor:{layer.name}"
        if key not in values:
            continue
        expected.add(key)
        factor = float(_shaped(values, key, (), np.float64))  # a Python float, as when computed in process
        # TensorFlow multiplies the float32 kernel by float32(factor), as NumPy's float32 array * Python float
        # did (one IEEE rounding per product: the same bits), without VGG16's 0.5 GB of copies to and from NumPy.
        layer.kernel.assign(layer.kernel.value * factor)
        if _is_softmax(layer):
            bias_key = f"bias:{layer.name}"
            expected.add(bias_key)
            layer.bias.assign(_shaped(values, bias_key, tuple(layer.bias.shape)))
    unknown = set(values) - expected
    if unknown:
        raise ModelError(f"calibration values name layers {sorted(unknown)[:3]} that {model.name} does not have")


def _shaped(values: dict[str, np.ndarray], key: str, shape: tuple[int, ...],
            dtype: type[np.generic] = np.float32) -> np.ndarray:
    if key not in values:
        raise ModelError(f"calibration values lack {key}")
    value = values[key]
    if value.shape != shape or value.dtype != dtype:
        raise ModelError(f"calibration value {key} is {value.dtype}{list(value.shape)}, expected "
                         f"{np.dtype(dtype)}{list(shape)}")
    return value


def calibration_values(model: Any, spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    """BN statistics, kernel factors and the softmax bias from one pass on the calibration batch of `seed` through
    a freshly seeded `model` (left unchanged: `apply_values` assigns them)."""
    from splitbed.models.preprocess import load_image

    keras = tfboot.keras()

    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    kernel_types = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    free = [layer for layer in model.layers if isinstance(layer, kernel_types)
            and not (_consumers(layer) and all(isinstance(c, keras.layers.BatchNormalization)
                                               for c in _consumers(layer)))]
    for layer in free:
        if _is_softmax(layer) and not layer.use_bias:
            raise ModelError(f"calibration: the softmax layer {layer.name} has no bias to centre its logits with")
        if layer.use_bias and np.any(np.asarray(layer.bias)):
            raise ModelError(f"calibration: {layer.name} has a non-zero initial bias")
        if not _is_softmax(layer) and getattr(layer.activation, "__name__", "") not in ("relu", "linear"):
            raise ModelError(f"calibration: {layer.name} has activation {layer.activation}, not relu/linear/softmax")
    height, width = spec.target_size
    batch = np.concatenate([load_image(image, spec).array
                            for image in calibration_images(seed, CALIBRATION_IMAGES, height, width)])
    wanted = [layer.input for layer in bns] + [layer.input if _is_softmax(layer) else layer.output
                                               for layer in free]
    probe = keras.Model(model.input, wanted)
    values = [np.asarray(v) for v in probe(batch, training=True)]
    out: dict[str, np.ndarray] = {}
    for bn, value in zip(bns, values[:len(bns)], strict=True):
        axes = tuple(range(value.ndim - 1))
        mean = value.mean(axis=axes, dtype=np.float64)
        variance = value.var(axis=axes, dtype=np.float64)
        variance = np.maximum(variance, VARIANCE_FLOOR * variance.mean())
        mean_key, variance_key = _bn_keys(bn.name)
        out[mean_key], out[variance_key] = mean.astype(np.float32), variance.astype(np.float32)
    scales: dict[str, float] = {}
    for layer, value in zip(free, values[len(bns):], strict=True):
        upstream = _upstream_scale(layer.input, scales)
        kernel = np.asarray(layer.kernel)
        if _is_softmax(layer):
            logits = upstream * (value.reshape(len(value), -1).astype(np.float64) @ kernel.astype(np.float64))
            offset = logits.mean(axis=0)
            factor = LOGIT_STD / _spread(layer, logits - offset)
            out[f"bias:{layer.name}"] = (-offset * factor).astype(np.float32)
        else:
            factor = 1.0 / (upstream * _spread(layer, value))
            scales[layer.name] = upstream * factor
        out[f"factor:{layer.name}"] = np.asarray(factor, dtype=np.float64)
    return out

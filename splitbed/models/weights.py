"""Which weights a model gets, and the small JSON-able record of that choice (embedded in every metrics record).

Specs: `imagenet` (Keras download + cache, for users online), a path to a local weights file (`file:` prefix
optional), `random:SEED` (seeded initialisers, then calibrated from SEED: RANDOM_SCHEME, see
splitbed.models.calibration; bit-identical in every process, so the UE and the edge get the same model), or
`auto`: ImageNet if the Keras cache has the file or the download host answers within a short timeout, else
`random:0` with a loud warning that every result records. Set SPLITBED_OFFLINE=1 to skip the network check (tests
do, so that no run ever reaches outside the machine).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import warnings
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from netem.fields import Checker
from splitbed.models.errors import WeightsError

_check = Checker(WeightsError)

log = logging.getLogger(__name__)

WeightsSource = Literal["imagenet", "file", "random"]
# Where Keras downloads application weights from (keras/src/applications/*.py, WEIGHTS_PATH).
KERAS_WEIGHTS_HOST = "storage.googleapis.com"
NETWORK_PROBE_TIMEOUT_S = 2.0
MAX_SEED = 2**32 - 1
OFFLINE_ENV = "SPLITBED_OFFLINE"
# What `random:SEED` means, recorded in every WeightsInfo of random weights (docs/MODELS.md, "Random weights"):
# 1 = Keras's seeded initialisers only (records without a `scheme` field; MobileNetV2's output was exactly uniform),
# 2 = the same, then BatchNorm statistics and free kernel scales calibrated on a seeded dead-leaves batch.
RANDOM_SCHEME = 2


class RandomWeightsWarning(UserWarning):
    """Results were computed with random weights: sizes and times hold, predictions and accuracy do not."""


@dataclass(frozen=True)
class WeightsInfo:
    """How a model's weights were obtained; `warning` is set whenever predictions are meaningless."""

    source: WeightsSource
    requested: str  # what the caller asked for, e.g. "auto"
    seed: int | None = None
    path: str | None = None
    sha256: str | None = None  # file: the file's bytes; random: the weight values (weights_sha256)
    warning: str | None = None
    scheme: int | None = None  # random weights: RANDOM_SCHEME of the code that made them

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeightsInfo:
        fields = {"source", "requested", "seed", "path", "sha256", "warning", "scheme"}
        _check.keys("WeightsInfo", data, fields, noun="WeightsInfo fields")
        _check.choice("WeightsInfo source", data.get("source"), ("imagenet", "file", "random"))
        return cls(**data)


def keras_cache_file(filename: str) -> Path | None:
    """The ImageNet weights file in the Keras cache (KERAS_HOME or ~/.keras, then /tmp/.keras), if present."""
    homes = [Path(os.environ["KERAS_HOME"])] if os.environ.get("KERAS_HOME") else []
    homes += [Path.home() / ".keras", Path("/tmp/.keras")]
    for home in homes:
        candidate = home / "models" / filename
        if candidate.is_file() and candidate.stat().st_size > 0:
            return candidate
    return None


@cache
def network_reachable(host: str = KERAS_WEIGHTS_HOST, port: int = 443,
                      timeout_s: float = NETWORK_PROBE_TIMEOUT_S) -> bool:
    """Whether `host` accepts a TCP connection within `timeout_s` (DNS included; never blocks longer)."""
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=probe, name="splitbed-net-probe", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return bool(result and result[0])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(model: Any) -> str:
    """SHA-256 of a built model's weight values (float bytes in `get_weights()` order), one variable at a time.

    Recorded for random weights: calibration runs real convolutions, so another CPU kernel (oneDNN off, another
    instruction set) can change the last bits; equal digests mean bit-identical models.
    """
    import numpy as np

    from splitbed.models import tfboot

    tf = tfboot.tensorflow()
    digest = hashlib.sha256()
    for variable in model.weights:
        # NumPy's view of the variable's current tensor (C-contiguous, the bytes `tobytes()` gave): VGG16's
        # 0.55 GB are hashed in place instead of copied twice (`np.asarray(variable)` copies, `tobytes` again).
        digest.update(np.asarray(tf.convert_to_tensor(getattr(variable, "value", variable))).data)
    return digest.hexdigest()


def _parse_seed(text: str, spec: str) -> int:
    try:
        seed = int(text, 10)
    except ValueError:
        raise WeightsError(f"bad weights spec {spec!r}: the random seed after 'random:' must be an integer") from None
    return _check.integer(f"weights spec {spec!r}: the random seed", seed, low=0, high=MAX_SEED)


def random_warning(seed: int, why: str) -> str:
    return (f"RANDOM WEIGHTS (random:{seed}): {why}. Tensor sizes, byte counts and timings are valid; "
            "predictions, labels and accuracy figures are meaningless.")


def random_info(requested: str, seed: int, why: str) -> WeightsInfo:
    """The record of `random:SEED` weights made by this code's scheme."""
    return WeightsInfo(source="random", requested=requested, seed=seed, warning=random_warning(seed, why),
                       scheme=RANDOM_SCHEME)


def check_spec(spec: str) -> None:
    """WeightsError unless `spec` is auto, imagenet, random[:SEED] or an existing Keras weights file (.h5,
    .weights.h5 or .keras); cheap (no hashing, no network): for validating jobs and scenarios early."""
    if not isinstance(spec, str) or not spec.strip():
        raise WeightsError("weights spec must be a non-empty string (auto, imagenet, random:SEED or a path)")
    spec = spec.strip()
    if spec in ("auto", "imagenet", "random"):
        return
    if spec.startswith("random:"):
        _parse_seed(spec.partition(":")[2], spec)
        return
    path = Path(spec[len("file:"):] if spec.startswith("file:") else spec).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights {spec!r}: no such regular file (weights must be auto, imagenet, random:SEED "
                           "or the path of a Keras weights file, .weights.h5 or legacy .h5)")
    if path.suffix not in (".h5", ".keras"):
        raise WeightsError(f"weights file {spec!r} is not a Keras weights file (.weights.h5, .h5 or .keras)")


def resolve(spec: str, imagenet_file: str) -> WeightsInfo:
    """Decide where weights come from (no TensorFlow); `imagenet_file` is the model's Keras cache file name.

    For `imagenet` the record's path is the cached file when present (else Keras downloads it on load).
    """
    spec = _check.string("weights spec", spec, non_empty=True, fix="auto, imagenet, random:SEED or a path").strip()
    if spec == "auto":
        cached = keras_cache_file(imagenet_file)
        if cached is not None:
            return WeightsInfo(source="imagenet", requested=spec, path=str(cached))
        if network_reachable():
            return WeightsInfo(source="imagenet", requested=spec)
        why = (f"ImageNet weights {imagenet_file} are not in the Keras cache (KERAS_HOME or ~/.keras/models) "
               f"and {KERAS_WEIGHTS_HOST} is not reachable")
        return random_info(spec, 0, why)
    if spec == "imagenet":
        cached = keras_cache_file(imagenet_file)
        return WeightsInfo(source="imagenet", requested=spec, path=str(cached) if cached else None)
    if spec == "random" or spec.startswith("random:"):
        seed = _parse_seed(spec.partition(":")[2], spec) if ":" in spec else 0
        return random_info(spec, seed, "random weights were requested")
    path = Path(spec[len("file:"):] if spec.startswith("file:") else spec).expanduser()
    if not path.exists():
        raise WeightsError(f"weights file not found: {path} (weights must be auto, imagenet, random:SEED or the "
                           "path of a Keras weights file, .weights.h5 or legacy .h5)")
    if not path.is_file():
        raise WeightsError(f"weights path is not a regular file: {path}")
    resolved = path.resolve()
    return WeightsInfo(source="file", requested=spec, path=str(resolved), sha256=file_sha256(resolved))


def announce(info: WeightsInfo, model: str) -> None:
    """Make random weights loud: a Python warning (pytest shows it) and a log record."""
    if info.warning:
        warnings.warn(f"{model}: {info.warning}", RandomWeightsWarning, stacklevel=3)
        log.warning("%s: %s", model, info.warning)

"""Random-weights calibration computed on one TensorFlow thread, in a child process, and cached.

Why a child: TensorFlow fixes its thread pools when it starts, and its reductions add in an order that depends on
them; the calibration pass (splitbed.models.calibration) must give the same bits in every process that loads
`random:SEED` (a test's reference on both cores, the UE and edge nodes each pinned to one CPU, a container with a
CPU quota). One thread is the one setting every host can reproduce. Why a cache: the child costs a TensorFlow
start and a model build; the values are small (BN statistics, one factor per free kernel, the softmax bias).

Cache: `$SPLITBED_CALIBRATION_CACHE` or `$XDG_CACHE_HOME/splitbed/calibration` (default
`~/.cache/splitbed/calibration`), one NumPy `.npz` per model, input size, seed, scheme and library versions, read
with `allow_pickle=False`. An unwritable cache directory only costs the child at every load.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from splitbed.models import cachedirs
from splitbed.models.errors import ModelError
from splitbed.models.registry import ModelSpec

CACHE_ENV = "SPLITBED_CALIBRATION_CACHE"
CHILD_TIMEOUT_S = 900
MAX_CACHE_FILE_BYTES = 64 * 1024 * 1024  # VGG16's values are about 0.1 MB; anything this large is not ours


def cache_dir() -> Path:
    return cachedirs.cache_dir("calibration", CACHE_ENV)


def cache_key(spec: ModelSpec, seed: int) -> str:
    from splitbed.models import tfboot
    from splitbed.models.weights import RANDOM_SCHEME

    keras, tf = tfboot.keras(), tfboot.tensorflow()

    height, width = spec.target_size
    identity = f"{spec.name} {height}x{width} seed={seed} scheme={RANDOM_SCHEME} tf={tf.__version__} " \
               f"keras={keras.__version__} numpy={np.__version__}"
    return f"{spec.name}-{height}x{width}-{seed}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def calibration_for(spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    """The calibration values of `spec` at `seed`: from the cache, else computed now by a one-thread child."""
    key = cache_key(spec, seed)
    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock_path = directory / f".{key}.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process computing the same key: wait for its file
            path = directory / f"{key}.npz"
            if not path.exists():
                _compute(spec, seed, path)
            return _read(path)
    except PermissionError:
        with tempfile.TemporaryDirectory(prefix="splitbed-calibration-") as scratch:
            path = Path(scratch) / f"{key}.npz"
            _compute(spec, seed, path)
            return _read(path)


def _compute(spec: ModelSpec, seed: int, path: Path) -> None:
    height, width = spec.target_size
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    try:
        done = subprocess.run([sys.executable, "-m", "splitbed.models.calibration_cache", spec.name, str(height),
                               str(width), str(seed), str(tmp)], capture_output=True, text=True, env=env,
                              timeout=CHILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"calibrating random weights of {spec.name} took over {CHILD_TIMEOUT_S} s (one "
                         "TensorFlow thread in a child process): is the host overloaded?") from None
    if done.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelError(f"calibrating random weights of {spec.name} failed in its child process "
                         f"(exit {done.returncode}): {last}")
    tmp.replace(path)


def _read(path: Path) -> dict[str, np.ndarray]:
    if path.stat().st_size > MAX_CACHE_FILE_BYTES:
        raise ModelError(f"{path} is {path.stat().st_size} bytes, not a calibration file: delete it")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is not a readable calibration file ({exc}): delete it") from None


def main(argv: list[str]) -> int:
    """Child: seeded build and calibration pass on one TensorFlow thread; writes the values to argv[4]."""
    from splitbed.models import registry, tfboot

    name, height, width, seed, out = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), argv[4]
    tf = tfboot.tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from splitbed.models.calibration import calibration_values
    from splitbed.models.loading import seeded_build

    spec = registry.get(name).at_input_size(height, width)
    model = seeded_build(spec, seed)
    save: Any = np.savez  # numpy's stub types **kwds as its own flags
    save(out, **calibration_values(model, spec, seed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

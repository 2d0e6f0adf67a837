"""The one way splitbed starts TensorFlow and Keras. Model loading, preprocessing, graph cutting, the nodes' GPU
query and the doctor all go through here, and node processes are started with `QUIET_ENV`, so no module imports
TensorFlow its own way.

TensorFlow 2.16+ prints, on every import, an absl banner ("All log messages before absl::InitializeLog() ..."),
a oneDNN notice and a CPU-instruction notice straight to file descriptor 2, from C++, before its own log level
(TF_CPP_MIN_LOG_LEVEL) is read: no environment variable silences them. They say nothing a user can act on and
bury the lines that matter, so the first import runs with fd 2 pointed at a temporary file, and every line that
is not one of those notices is written back to the real stderr afterwards (nothing else is lost). Turning oneDNN
off (TF_ENABLE_ONEDNN_OPTS=0) would also silence it, but would change the measured compute times: not an option.
Later messages stay at errors only unless the user chose a level (TF_CPP_MIN_LOG_LEVEL wins).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from typing import Any

QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}

NOTICE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:. ]+\d+ (port\.cc|cpu_feature_guard\.cc):\d+\] .*"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.)$"
)
_lock = threading.Lock()
_threads: int | None = None  # TensorFlow's intra- and inter-op pool sizes for this process, when set


class ThreadsError(RuntimeError):
    """TensorFlow had started with other pool sizes: they cannot change in a running process."""


def use_threads(count: int) -> None:
    """Size this process's TensorFlow thread pools as a node pinned to `count` CPUs sizes its own.

    Why: TensorFlow's reductions add in an order set by its pools, so on some CPUs the same model gives other bits
    on 1 thread than on 2; a reference computed in this process then differs from the node's tensors in the last
    bits. Must run before TensorFlow executes its first op (it raises ThreadsError otherwise)."""
    global _threads
    _threads = count
    if "tensorflow" in sys.modules:
        _apply_threads()


def _apply_threads() -> None:
    if _threads is None:
        return
    import tensorflow as tf

    threading_config = tf.config.threading
    if (threading_config.get_intra_op_parallelism_threads(), threading_config.get_inter_op_parallelism_threads()) \
            == (_threads, _threads):
        return
    try:
        threading_config.set_intra_op_parallelism_threads(_threads)
        threading_config.set_inter_op_parallelism_threads(_threads)
    except RuntimeError as exc:
        raise ThreadsError(f"TensorFlow started before its thread pools were sized to {_threads}: {exc}") from None


def quiet() -> None:
    """Import tensorflow and keras (once per process) with their start-up notices dropped."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return
    with _lock:
        if "keras" in sys.modules and "tensorflow" in sys.modules:
            return
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                import keras  # noqa: F401
                import tensorflow  # noqa: F401
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                replay(captured.read().decode("utf-8", "replace"))
        _apply_threads()


def replay(text: str) -> None:
    """Write back every captured line that is not a start-up notice."""
    kept = [line for line in text.splitlines() if line.strip() and not NOTICE.match(line)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")
        sys.stderr.flush()


def tensorflow() -> Any:
    """The tensorflow module, imported quietly."""
    quiet()
    import tensorflow as tf

    return tf


def keras() -> Any:
    """The keras module (Keras 3 on TensorFlow), imported quietly."""
    quiet()
    import keras as keras_module

    return keras_module

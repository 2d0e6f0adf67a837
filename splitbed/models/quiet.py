"""Import TensorFlow without its start-up notices reaching the user.

TensorFlow 2.16+ prints, on every import, an absl banner ("All log messages before absl::InitializeLog() ..."),
a oneDNN notice and a CPU-instruction notice straight to file descriptor 2, from C++, before its own log level
(TF_CPP_MIN_LOG_LEVEL) is read: no environment variable silences them. They say nothing a user can act on and
bury the lines that matter, so the import runs with fd 2 pointed at a temporary file, and every line that is not
one of those notices is written back to the real stderr afterwards (nothing else is lost). Turning oneDNN off
(TF_ENABLE_ONEDNN_OPTS=0) would also silence it, but would change the measured compute times: not an option.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading

NOTICE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:. ]+\d+ (port\.cc|cpu_feature_guard\.cc):\d+\] .*"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.)$"
)
_lock = threading.Lock()


def quiet_tensorflow() -> None:
    """Import tensorflow and keras (once per process) with their start-up notices dropped; keep TensorFlow's
    own later messages at errors only unless the user chose a level (TF_CPP_MIN_LOG_LEVEL)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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


def replay(text: str) -> None:
    """Write back every captured line that is not a start-up notice."""
    kept = [line for line in text.splitlines() if line.strip() and not NOTICE.match(line)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")
        sys.stderr.flush()

"""What a user sees on stderr from a command that loads a model: no TensorFlow/oneDNN start-up notices, and the
random-weights warning exactly once, in the one wording of splitbed.models.weights (a real subprocess, as
users run it: the notices come from C++ straight to file descriptor 2)."""

from __future__ import annotations

import subprocess
import sys

NOTICES = ("oneDNN", "cpu_feature_guard", "absl::InitializeLog", "To enable the following instructions")


def test_a_model_command_prints_no_tensorflow_notices_and_the_weights_warning_once() -> None:
    done = subprocess.run([sys.executable, "-m", "splitbed.cli", "advise", "--model", "mobilenet_v2", "--profile",
                           "lte", "--repeats", "1", "-p", "input_layer", "-p", "predictions", "--weights",
                           "random:0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not [n for n in NOTICES if n in done.stderr], done.stderr
    warnings = [line for line in done.stderr.splitlines() if "RANDOM WEIGHTS" in line]
    assert warnings == ["splitbed: warning: RANDOM WEIGHTS (random:0): random weights were requested. Tensor "
                        "sizes, byte counts and timings are valid; predictions, labels and accuracy figures are "
                        "meaningless."], done.stderr
    assert "RANDOM WEIGHTS" not in done.stdout and "random weights" not in done.stdout.lower()

"""`import splitbed.models` (registry, weights, labels) must not pay for TensorFlow."""

from __future__ import annotations

import subprocess
import sys


def test_package_import_does_not_import_tensorflow() -> None:
    code = ("import sys, splitbed.models, splitbed.models.labels, splitbed.models.weights, "
            "splitbed.models.graph, splitbed.models.costs, splitbed.models.summary, splitbed.models.preprocess; "
            "splitbed.models.registry.get('vgg16'); "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"

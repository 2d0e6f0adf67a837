"""Where the models layer caches what it derives (ONNX conversions, random-weights calibration): an explicit
environment variable, else `$XDG_CACHE_HOME/splitbed/<name>`, else `~/.cache/splitbed/<name>`."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(name: str, env: str) -> Path:
    explicit = os.environ.get(env)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "splitbed" / name

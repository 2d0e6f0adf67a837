"""Where splitbed caches what it derives (ONNX conversions, random-weights calibration, the built-in images' JPEG
files, the container image's root file system): an explicit environment variable where the cache has one, else
`$XDG_CACHE_HOME/splitbed/<name>`, else `~/.cache/splitbed/<name>`. One rule, so that every cache moves together
when XDG_CACHE_HOME is set (the XDG Base Directory Specification)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(name: str, env: str | None = None) -> Path:
    """The cache directory `name` (not created here); `env` names the variable that overrides it, if any."""
    explicit = os.environ.get(env) if env else None
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "splitbed" / name

"""One cache-directory rule (splitbed.models.cachedirs) for every cache splitbed keeps: the ONNX conversions, the
calibration values, the built-in images' JPEG files and the container image's root file system all move together
with XDG_CACHE_HOME, and the caches that have their own variable honour it first."""

from __future__ import annotations

from pathlib import Path

import pytest

from splitbed.models import cachedirs, calibration_cache
from splitbed.models.onnx import convert
from splitbed.nodes import images
from splitbed.runtime.image import recipe

CACHES = {"onnx": convert.cache_dir, "calibration": calibration_cache.cache_dir, "images": images.cache_dir,
          "docker": recipe.cache_dir}


def test_every_cache_lives_under_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for env in (convert.CACHE_ENV, calibration_cache.CACHE_ENV):
        monkeypatch.delenv(env, raising=False)
    for name, where in CACHES.items():
        assert where() == tmp_path / "xdg" / "splitbed" / name == cachedirs.cache_dir(name), name


def test_without_xdg_cache_home_the_caches_are_under_the_home(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    for env in (convert.CACHE_ENV, calibration_cache.CACHE_ENV):
        monkeypatch.delenv(env, raising=False)
    for name, where in CACHES.items():
        assert where() == tmp_path / ".cache" / "splitbed" / name, name


def test_a_cache_with_its_own_variable_honours_it_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(convert.CACHE_ENV, str(tmp_path / "mine"))
    monkeypatch.setenv(calibration_cache.CACHE_ENV, "")  # empty: not set
    assert convert.cache_dir() == tmp_path / "mine"
    assert calibration_cache.cache_dir() == tmp_path / "xdg" / "splitbed" / "calibration"
    assert images.cache_dir() == tmp_path / "xdg" / "splitbed" / "images"  # no variable of its own

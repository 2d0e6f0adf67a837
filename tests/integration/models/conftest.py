"""Models built once per test session (random:0 weights: offline here; ImageNet tests skip with a reason)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

# Never probe the internet from tests: `auto` resolves offline.
os.environ.setdefault("SPLITBED_OFFLINE", "1")

CHELSEA_JPG = Path(__file__).resolve().parents[3] / "fixtures" / "images" / "chelsea.jpg"


def _load(name: str):  # type: ignore[no-untyped-def]
    from splitbed.models import RandomWeightsWarning
    from splitbed.plugin.reference import shared_load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return shared_load(name, "random:0")  # the same Keras model as a test reference's, when one is alive


@pytest.fixture(scope="session")
def mobilenet():  # type: ignore[no-untyped-def]
    return _load("mobilenet_v2")


@pytest.fixture(scope="session")
def resnet50():  # type: ignore[no-untyped-def]
    return _load("resnet50")


@pytest.fixture(scope="session")
def vgg16():  # type: ignore[no-untyped-def]
    return _load("vgg16")


@pytest.fixture(scope="session")
def chelsea_path() -> Path:
    assert CHELSEA_JPG.is_file(), f"fixture image missing: {CHELSEA_JPG}"
    return CHELSEA_JPG

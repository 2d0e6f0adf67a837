"""Weights resolution without TensorFlow: specs, auto fallback, cache lookup, network probe, WeightsInfo."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest

from splitbed.models import weights
from splitbed.models.errors import WeightsError

VGG_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """No real Keras cache and no real network in these tests."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    weights.network_reachable.cache_clear()
    yield
    weights.network_reachable.cache_clear()


def test_random_specs() -> None:
    assert weights.resolve("random", VGG_FILE).seed == 0
    info = weights.resolve("random:42", VGG_FILE)
    assert (info.source, info.seed, info.requested) == ("random", 42, "random:42")
    assert info.warning and "RANDOM WEIGHTS (random:42)" in info.warning


@pytest.mark.parametrize("spec", ["random:", "random:x", "random:-1", f"random:{2**32}", "random:1.5"])
def test_bad_seed_is_a_clear_error(spec: str) -> None:
    with pytest.raises(WeightsError, match="seed"):
        weights.resolve(spec, VGG_FILE)


@pytest.mark.parametrize("spec", ["", "   "])
def test_empty_spec(spec: str) -> None:
    with pytest.raises(WeightsError, match="non-empty"):
        weights.resolve(spec, VGG_FILE)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="weights file not found: .*nope.weights.h5"):
        weights.resolve(str(tmp_path / "nope.weights.h5"), VGG_FILE)
    with pytest.raises(WeightsError, match="not a regular file"):
        weights.resolve(str(tmp_path), VGG_FILE)


def test_file_spec_records_path_and_sha256(tmp_path: Path) -> None:
    path = tmp_path / "w.weights.h5"
    path.write_bytes(b"not really weights, but resolve only hashes")
    for spec in (str(path), f"file:{path}"):
        info = weights.resolve(spec, VGG_FILE)
        assert info.source == "file" and info.path == str(path.resolve()) and info.warning is None
        assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_auto_offline_without_cache_is_random_zero_with_warning() -> None:
    info = weights.resolve("auto", VGG_FILE)
    assert (info.source, info.seed, info.requested) == ("random", 0, "auto")
    assert info.warning and "not in the Keras cache" in info.warning and "meaningless" in info.warning


def test_auto_uses_cached_imagenet_file(tmp_path: Path) -> None:
    cached = tmp_path / "keras_home" / "models" / VGG_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x" * 10)
    info = weights.resolve("auto", VGG_FILE)
    assert (info.source, info.path, info.warning) == ("imagenet", str(cached), None)
    assert weights.resolve("imagenet", VGG_FILE).path == str(cached)


def test_empty_cached_file_does_not_count(tmp_path: Path) -> None:
    cached = tmp_path / "keras_home" / "models" / VGG_FILE
    cached.parent.mkdir(parents=True)
    cached.touch()
    assert weights.resolve("auto", VGG_FILE).source == "random"


def test_network_probe_offline_env_says_no() -> None:
    assert weights.network_reachable() is False


def test_network_probe_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(weights.OFFLINE_ENV)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert weights.network_reachable("127.0.0.1", port, 1.0) is True
    # The listener is closed: the same port now refuses (the answer is cached per process: clear it).
    weights.network_reachable.cache_clear()
    assert weights.network_reachable("127.0.0.1", port, 1.0) is False


def test_weights_info_is_json_round_trippable() -> None:
    info = weights.resolve("random:3", VGG_FILE)
    text = json.dumps(info.to_dict())
    assert weights.WeightsInfo.from_dict(json.loads(text)) == info
    with pytest.raises(WeightsError, match="unknown WeightsInfo fields"):
        weights.WeightsInfo.from_dict({**info.to_dict(), "extra": 1})
    with pytest.raises(WeightsError, match="source is .*; it must be one of imagenet, file, random"):
        weights.WeightsInfo.from_dict({**info.to_dict(), "source": "magic"})

"""Shipped ImageNet class index: byte-identical to the file Keras pins, and decode_predictions."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from splitbed.models import labels
from splitbed.models.errors import ModelError


def test_class_index_is_the_file_keras_pins_by_md5() -> None:
    # Keras's own source names the MD5 of imagenet_class_index.json; read it without importing TensorFlow.
    spec = importlib.util.find_spec("keras")
    assert spec is not None and spec.submodule_search_locations
    source = Path(next(iter(spec.submodule_search_locations))) / "src" / "applications" / "imagenet_utils.py"
    pinned = re.search(r'file_hash="([0-9a-f]{32})"', source.read_text())
    assert pinned is not None
    shipped = (resources.files("splitbed.models") / "data" / labels.CLASS_INDEX_FILE).read_bytes()
    assert hashlib.md5(shipped).hexdigest() == pinned.group(1)  # noqa: S324 - comparing to Keras's MD5 pin


def test_known_classes() -> None:
    index = labels.class_index()
    assert len(index) == 1000
    assert index[281] == ("n02123045", "tabby")
    assert index[285] == ("n02124075", "Egyptian_cat")
    assert labels.label(0) == "tench"
    assert len({wnid for wnid, _ in index}) == 1000


def test_decode_predictions_orders_by_score() -> None:
    preds = np.zeros((2, 1000), dtype="float32")
    preds[0, [281, 285, 282]] = [0.5, 0.3, 0.2]
    preds[1, 7] = 1.0
    decoded = labels.decode_predictions(preds, top=3)
    assert [d[1] for d in decoded[0]] == ["tabby", "Egyptian_cat", "tiger_cat"]
    assert decoded[0][0] == ("n02123045", "tabby", pytest.approx(0.5))
    assert decoded[1][0][1] == "cock" and len(decoded[1]) == 3


@pytest.mark.parametrize("shape", [(1000,), (1, 999), (1, 2, 1000)])
def test_decode_predictions_rejects_bad_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ModelError, match="shape"):
        labels.decode_predictions(np.zeros(shape))


def test_decode_predictions_rejects_bad_top() -> None:
    with pytest.raises(ModelError, match="top must be"):
        labels.decode_predictions(np.zeros((1, 1000)), top=0)
    with pytest.raises(ModelError, match="class id"):
        labels.label(1000)

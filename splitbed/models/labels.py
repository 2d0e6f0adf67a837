"""ImageNet class labels shipped with the package and a Keras-compatible `decode_predictions`.

Keras downloads imagenet_class_index.json at first use; splitbed runs offline, so the same file (byte-identical:
its MD5 is the one Keras pins, checked by a test) lives in splitbed/models/data/. Provenance: docs/MODELS.md.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from splitbed.models.errors import ModelError

NUM_CLASSES = 1000
CLASS_INDEX_FILE = "imagenet_class_index.json"


@cache
def class_index() -> tuple[tuple[str, str], ...]:
    """(wnid, label) for class 0..999, e.g. class_index()[281] == ("n02123045", "tabby")."""
    text = (resources.files("splitbed.models") / "data" / CLASS_INDEX_FILE).read_text(encoding="utf-8")
    raw = json.loads(text)
    if sorted(raw, key=int) != [str(i) for i in range(NUM_CLASSES)]:
        raise ModelError(f"{CLASS_INDEX_FILE} must map '0'..'999' to [wnid, label]")
    return tuple((str(raw[str(i)][0]), str(raw[str(i)][1])) for i in range(NUM_CLASSES))


def label(class_id: int) -> str:
    """Human-readable label of an ImageNet class id."""
    if not 0 <= class_id < NUM_CLASSES:
        raise ModelError(f"ImageNet class id must be in 0..{NUM_CLASSES - 1}, got {class_id}")
    return class_index()[class_id][1]


def decode_predictions(preds: Any, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """Per sample, the `top` classes as (wnid, label, score), best first: Keras's decode_predictions, offline."""
    arr = np.asarray(preds)
    if arr.ndim != 2 or arr.shape[1] != NUM_CLASSES:
        raise ModelError(f"decode_predictions expects a batch of predictions of shape (samples, {NUM_CLASSES}), "
                         f"got shape {arr.shape}")
    if not 1 <= top <= NUM_CLASSES:
        raise ModelError(f"top must be in 1..{NUM_CLASSES}, got {top}")
    index = class_index()
    results = []
    for row in arr:
        best = np.argsort(row, kind="stable")[-top:][::-1]
        results.append([(index[i][0], index[i][1], float(row[i])) for i in best])
    return results

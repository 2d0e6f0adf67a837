"""Numerical check that a split is the same function as the full model: max |tail(head(x)) - full(x)|."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from splitbed.models.loading import LoadedModel
from splitbed.models.registry import Partition
from splitbed.models.splitter import split

TOLERANCE = 1e-5  # max abs difference allowed on the softmax output


@dataclass(frozen=True)
class Equivalence:
    partition: Partition
    max_abs_diff: float
    top1_full: int
    top1_split: int

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= TOLERANCE and self.top1_full == self.top1_split

    @property
    def exact(self) -> bool:
        return self.max_abs_diff == 0.0


def equivalence(loaded: LoadedModel, x: np.ndarray, partitions: Iterable[Partition | int | str] | None = None,
                compiled: bool = False) -> list[Equivalence]:
    """Run the full model once and every (or the given) partition's head then tail on the same input.

    Eager by default (no tf.function tracing per sub-model); compiled=True checks the predict_on_batch path.
    """
    full = np.asarray(loaded.keras_model.predict_on_batch(x) if compiled else loaded.keras_model(x, training=False))
    results = []
    for key in partitions if partitions is not None else loaded.spec.partitions:
        part = loaded.spec.partition(key)
        sm = split(loaded, part)
        out = sm.run_tail(sm.run_head(x, compiled), compiled)
        results.append(Equivalence(partition=part, max_abs_diff=float(np.max(np.abs(out - full))),
                                   top1_full=int(np.argmax(full[0])), top1_split=int(np.argmax(out[0]))))
    return results

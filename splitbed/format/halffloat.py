"""Exact and fast float16 -> float32/float64 widening: numpy's own cast runs element by element in software
on this class of CPU (~10 ns per element); a 65,536-entry table of numpy's own exact conversions, indexed
by the float16 bits, gives the same bits about 10x faster. (The narrowing cast stays numpy's: a bit-twiddling
version was no faster here, its temporaries cost as much as the cast.)
"""

from __future__ import annotations

import functools

import numpy as np


@functools.cache
def _widening_table(dtype: np.dtype) -> np.ndarray:
    return np.arange(65536, dtype="<u2").view("<f2").astype(dtype)


def widen_float16(half: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float16 values (any shape) as `dtype` (float32 or float64), bit-identical to numpy's cast."""
    return np.take(_widening_table(np.dtype(dtype)), half.view("<u2"))

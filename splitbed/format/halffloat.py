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


#: Elements widened at a time: np.take turns its uint16 indices into an intp copy (8 bytes per element), so a
#: whole tensor at once would allocate twice a float32 result in scratch.
CHUNK = 1 << 16


def widen_float16(half: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float16 values (any shape) as `dtype` (float32 or float64), bit-identical to numpy's cast."""
    table = _widening_table(np.dtype(dtype))
    bits = half.reshape(-1).view("<u2")
    out = np.empty(bits.size, table.dtype)
    for start in range(0, bits.size, CHUNK):
        np.take(table, bits[start:start + CHUNK], out=out[start:start + CHUNK])
    return out.reshape(half.shape)

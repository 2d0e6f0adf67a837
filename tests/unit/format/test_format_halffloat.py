"""The fast float16 widening equals numpy's own cast, bit for bit, for all 65,536 float16 values."""

from __future__ import annotations

import numpy as np
import pytest

from splitbed.format.halffloat import widen_float16


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_widening_table_is_numpy_cast(dtype: type) -> None:
    half = np.arange(65536, dtype=np.uint16).view(np.float16).reshape(256, 256)
    got = widen_float16(half, np.dtype(dtype))
    assert got.shape == (256, 256) and got.dtype == dtype
    assert got.tobytes() == half.astype(dtype).tobytes()

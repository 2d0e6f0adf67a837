"""Tensor element types and their one-byte wire codes (docs/FORMAT.md, "Data type codes")."""

from __future__ import annotations

import sys
from enum import IntEnum

import ml_dtypes
import numpy as np

from splitbed.format.errors import ErrorCode, FormatError


class DType(IntEnum):
    """Wire code of a tensor element type. 0 is reserved; codes 14-255 are undefined."""

    FLOAT32 = 1
    FLOAT16 = 2
    BFLOAT16 = 3
    FLOAT64 = 4
    INT8 = 5
    UINT8 = 6
    INT16 = 7
    UINT16 = 8
    INT32 = 9
    UINT32 = 10
    INT64 = 11
    UINT64 = 12
    BOOL = 13

    @property
    def numpy(self) -> np.dtype:
        """The little-endian numpy dtype of the tensor data on the wire."""
        return _NUMPY[self]

    @property
    def itemsize(self) -> int:
        return _NUMPY[self].itemsize

    @property
    def is_float(self) -> bool:
        return self in _FLOATS

    @classmethod
    def from_numpy(cls, dtype: np.dtype | type | str) -> DType:
        """The wire code for a numpy dtype; FormatError(unknown_dtype) for types the format cannot carry."""
        dt = np.dtype(dtype)
        if dt.byteorder == ">" or (dt.byteorder == "=" and sys.byteorder == "big"):
            dt = dt.newbyteorder("<")
        for code, candidate in _NUMPY.items():
            if dt == candidate:
                return code
        raise FormatError(ErrorCode.UNKNOWN_DTYPE, f"numpy dtype {dt} has no wire code; "
                          f"supported: {', '.join(c.name.lower() for c in cls)}")

    @classmethod
    def from_code(cls, code: int) -> DType:
        try:
            return cls(code)
        except ValueError:
            raise FormatError(ErrorCode.UNKNOWN_DTYPE,
                              f"dtype code {code} is not defined (defined: 1-{max(cls)})") from None


_NUMPY: dict[DType, np.dtype] = {
    DType.FLOAT32: np.dtype("<f4"),
    DType.FLOAT16: np.dtype("<f2"),
    DType.BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    DType.FLOAT64: np.dtype("<f8"),
    DType.INT8: np.dtype("i1"),
    DType.UINT8: np.dtype("u1"),
    DType.INT16: np.dtype("<i2"),
    DType.UINT16: np.dtype("<u2"),
    DType.INT32: np.dtype("<i4"),
    DType.UINT32: np.dtype("<u4"),
    DType.INT64: np.dtype("<i8"),
    DType.UINT64: np.dtype("<u8"),
    DType.BOOL: np.dtype("?"),
}
_FLOATS = frozenset({DType.FLOAT32, DType.FLOAT16, DType.BFLOAT16, DType.FLOAT64})

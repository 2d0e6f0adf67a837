"""Element transforms of the compression profiles: identity, float16/bfloat16 casts, int8 affine, byte shuffle.

A transform maps a tensor (C-contiguous, little-endian) to a flat byte buffer whose length the AIPS fixes
(`encoded_length`), plus a few parameter bytes that travel in the data unit's tensor entry. `inverse` turns
those bytes back into a read-only array of the AIPS dtype and shape. Error bounds are in docs/FORMAT.md.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import ml_dtypes
import numpy as np

from splitbed.format import halffloat
from splitbed.format.dtypes import DType
from splitbed.format.errors import ErrorCode, FormatError

Buffer = bytes | bytearray | memoryview

_INT8_PARAMS = struct.Struct(">db")  # scale float64, zero_point int8
#: Elements the int8 inverse dequantises at a time (its binary64 scratch buffer is 8 bytes per element).
INT8_CHUNK = 1 << 16
_FLOATS = frozenset({DType.FLOAT16, DType.BFLOAT16, DType.FLOAT32, DType.FLOAT64})


def byte_view(arr: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array as a flat memoryview, without copying."""
    try:
        return arr.data.cast("B")
    except (TypeError, ValueError, NotImplementedError):  # dtypes the buffer protocol cannot name (bfloat16)
        return arr.reshape(-1).view(np.uint8).data


def to_wire_order(arr: np.ndarray) -> np.ndarray:
    """The array as the wire carries it: C-contiguous (a copy only when it is not). Byte order needs no
    work: DType.numpy dtypes are explicitly little-endian, so numpy converts on big-endian hosts."""
    return np.ascontiguousarray(arr)


def frozen(arr: np.ndarray) -> np.ndarray:
    """Decoded tensors are read-only: they may share memory with the unit buffer or other events."""
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, slots=True)
class Transform:
    """Base: identity. Subclasses override the four methods below."""

    name: str = "identity"
    lossless: bool = True
    param_length: int = 0
    dtypes: frozenset[DType] = frozenset(DType)

    def encoded_length(self, dtype: DType, num_elements: int) -> int:
        """Bytes the transform produces for a tensor of this dtype and element count."""
        return num_elements * dtype.itemsize

    def forward(self, arr: np.ndarray, dtype: DType) -> tuple[bytes, memoryview]:
        """(parameter bytes, transformed bytes) for a C-contiguous little-endian array."""
        if dtype is DType.BOOL and arr.size and int(arr.view(np.uint8).max()) > 1:
            raise FormatError(ErrorCode.VALUE_OUT_OF_RANGE, "bool array holds bytes other than 0 and 1")
        return b"", byte_view(arr)

    def check_params(self, params: bytes) -> None:
        """FormatError(bad_params) when the per-inference parameters are unusable."""

    def inverse_bytes(self, dtype: DType, num_elements: int) -> int:
        """Most bytes `inverse` allocates at once (output and scratch) beyond its input (memory budgets count
        it): the identity returns a view."""
        return 0

    def inverse(self, data: Buffer, params: bytes, dtype: DType, shape: tuple[int, ...]) -> np.ndarray:
        """A view of `data` (no copy): read-only when `data` is (the decoder passes read-only views)."""
        arr = np.ndarray(shape, dtype.numpy, data)
        if dtype is DType.BOOL and int(arr.view(np.uint8).max()) > 1:
            raise FormatError(ErrorCode.INVALID_BOOL, "bool tensor holds bytes other than 0x00 and 0x01")
        return arr


@dataclass(frozen=True, slots=True)
class CastTransform(Transform):
    """Round to a 2-byte float (round to nearest even); finite values that would overflow are refused."""

    target: np.dtype = np.dtype("<f2")
    overflow_at: float = 65520.0  # smallest magnitude that rounds to infinity in `target`

    def encoded_length(self, dtype: DType, num_elements: int) -> int:
        return num_elements * 2

    def forward(self, arr: np.ndarray, dtype: DType) -> tuple[bytes, memoryview]:
        magnitude = np.abs(arr)
        overflowed = 0
        if arr.dtype.itemsize > 2:  # a 2-byte source is float16 -> fp16 or bfloat16 -> bf16: nothing overflows
            overflowed = int(np.count_nonzero(magnitude >= self.overflow_at)) - int(np.count_nonzero(np.isinf(arr)))
        if overflowed:
            worst = float(np.max(magnitude[np.isfinite(magnitude)]))
            raise FormatError(ErrorCode.VALUE_OUT_OF_RANGE,
                              f"profile {self.name}: {overflowed} finite values of magnitude >= "
                              f"{self.overflow_at:g} would round to infinity in {np.dtype(self.target).name} "
                              f"(largest here {worst:g}); refused, not clipped")
        with np.errstate(over="ignore", invalid="ignore"):
            cast = arr.astype(self.target)
        return b"", byte_view(to_wire_order(cast))

    def inverse_bytes(self, dtype: DType, num_elements: int) -> int:
        return num_elements * dtype.itemsize + min(num_elements, halffloat.CHUNK) * 8  # + widening's index scratch

    def inverse(self, data: Buffer, params: bytes, dtype: DType, shape: tuple[int, ...]) -> np.ndarray:
        half = np.frombuffer(data, dtype=self.target, count=math.prod(shape))
        if self.target == np.float16 and dtype in (DType.FLOAT32, DType.FLOAT64):
            return frozen(halffloat.widen_float16(half, dtype.numpy).reshape(shape))
        return frozen(half.astype(dtype.numpy).reshape(shape))


def _finfo_max(dtype: np.dtype) -> float:
    return float(ml_dtypes.finfo(dtype).max)


@dataclass(frozen=True, slots=True)
class Int8AffineTransform(Transform):
    """Per-tensor affine quantisation q = clip(rint(x/scale) + zero_point, -128, 127).

    The range [lo, hi] always includes 0 (so zero_point is an int8 and 0.0 is exact); scale = (hi-lo)/255.
    Parameters in the tensor entry: scale (float64 big-endian), zero_point (int8).
    """

    def encoded_length(self, dtype: DType, num_elements: int) -> int:
        return num_elements

    def forward(self, arr: np.ndarray, dtype: DType) -> tuple[bytes, memoryview]:
        # min and max propagate NaN and reach +-inf, so finite extremes prove every value finite.
        src = arr if arr.dtype != ml_dtypes.bfloat16 else arr.astype(np.float32)
        lo, hi = min(float(src.min()), 0.0), max(float(src.max()), 0.0)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise FormatError(ErrorCode.VALUE_OUT_OF_RANGE, "profile int8 needs finite values (NaN/inf found)")
        span = hi - lo
        if not math.isfinite(span):
            raise FormatError(ErrorCode.VALUE_OUT_OF_RANGE, f"profile int8: range {lo:g}..{hi:g} overflows")
        scale = span / 255.0 if span > 0 else 1.0
        scale = max(scale, float(np.finfo(np.float64).tiny))
        zero_point = int(np.clip(round(-128.0 - lo / scale), -128, 127))
        q = src.astype(np.float64)
        q /= scale
        np.rint(q, out=q)
        q += zero_point
        np.clip(q, -128, 127, out=q)
        return _INT8_PARAMS.pack(scale, zero_point), byte_view(q.astype(np.int8))

    def check_params(self, params: bytes) -> None:
        scale, _ = _INT8_PARAMS.unpack(params)
        if not (math.isfinite(scale) and scale > 0):
            raise FormatError(ErrorCode.BAD_PARAMS, f"int8 scale must be finite and > 0, got {scale!r}")

    def inverse_bytes(self, dtype: DType, num_elements: int) -> int:
        return num_elements * dtype.itemsize + min(num_elements, INT8_CHUNK) * 8

    def inverse(self, data: Buffer, params: bytes, dtype: DType, shape: tuple[int, ...]) -> np.ndarray:
        scale, zero_point = _INT8_PARAMS.unpack(params)
        count = math.prod(shape)
        q = np.frombuffer(data, dtype=np.int8, count=count)
        # Keep dequantised values finite in narrow dtypes: rounding at the range ends may step past max.
        limit = _finfo_max(dtype.numpy)
        clip = max(128 + zero_point, 127 - zero_point) * scale > limit
        out = np.empty(count, dtype.numpy)
        # Dequantise in binary64 a chunk at a time: a whole-tensor binary64 copy is 8 bytes per element on top
        # of the output (a 4 KB int8-zstd unit at the decoded-size cap grew a node by 1.4 GiB).
        x = np.empty(min(count, INT8_CHUNK), np.float64)
        for start in range(0, count, INT8_CHUNK):
            part = x[:min(INT8_CHUNK, count - start)]
            np.copyto(part, q[start:start + len(part)])
            part -= zero_point
            with np.errstate(over="ignore"):  # a hostile scale may overflow binary64; clamped below
                part *= scale
            if clip:
                np.clip(part, -limit, limit, out=part)
            np.copyto(out[start:start + len(part)], part, casting="unsafe")
        return frozen(out.reshape(shape))


@dataclass(frozen=True, slots=True)
class ShuffleTransform(Transform):
    """Byte shuffle: byte k of every element, then byte k+1, ... (groups exponents together for zstd)."""

    def forward(self, arr: np.ndarray, dtype: DType) -> tuple[bytes, memoryview]:
        _, raw = Transform.forward(self, arr, dtype)
        size = dtype.itemsize
        if size == 1:
            return b"", raw
        grid = np.frombuffer(raw, dtype=np.uint8).reshape(-1, size)
        return b"", byte_view(np.ascontiguousarray(grid.T))

    def inverse_bytes(self, dtype: DType, num_elements: int) -> int:
        return num_elements * dtype.itemsize if dtype.itemsize > 1 else 0

    def inverse(self, data: Buffer, params: bytes, dtype: DType, shape: tuple[int, ...]) -> np.ndarray:
        size = dtype.itemsize
        if size == 1:
            return Transform.inverse(self, data, params, dtype, shape)
        count = math.prod(shape)
        planes = np.frombuffer(data, dtype=np.uint8, count=count * size).reshape(size, count)
        flat = np.ascontiguousarray(planes.T).reshape(-1)
        return Transform.inverse(self, flat.data.toreadonly(), params, dtype, shape)


IDENTITY = Transform()
FLOAT16 = CastTransform(name="fp16", lossless=False, target=np.dtype("<f2"),
                        dtypes=frozenset({DType.FLOAT16, DType.FLOAT32, DType.FLOAT64}))
BFLOAT16 = CastTransform(name="bf16", lossless=False, target=np.dtype(ml_dtypes.bfloat16),
                         overflow_at=float(np.array(0x7F7F8000, np.uint32).view(np.float32)),
                         dtypes=frozenset({DType.BFLOAT16, DType.FLOAT32}))
INT8_AFFINE = Int8AffineTransform(name="int8", lossless=False, param_length=_INT8_PARAMS.size, dtypes=_FLOATS)
SHUFFLE = ShuffleTransform(name="shuffle")
# The identity on uint8 only: the JPEG coder's input, an RGB image as a camera delivers it.
IMAGE = Transform(name="identity", dtypes=frozenset({DType.UINT8}))

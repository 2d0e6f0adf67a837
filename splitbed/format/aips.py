"""The AI Parameter Set (AIPS): what the receiver needs to interpret the tensors of later data units.

Layout of the AIPS unit's value (docs/FORMAT.md, "AIPS unit"), all integers big-endian:
    format_version u8 | ai_parameter_set_id u16 | partition_id u16 | num_tensors u16 |
    num_tensors x (tensor_id u16 | dtype u8 | rank u8 | rank x dimension u32 | compression_profile_id u8)
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from splitbed.format.dtypes import DType
from splitbed.format.errors import ErrorCode, FormatError
from splitbed.format.limits import (
    FORMAT_VERSION,
    MAX_DIMENSION,
    MAX_INFERRED_LENGTH,
    MAX_RANK,
    MAX_TENSORS,
)
from splitbed.format.profiles import get_profile
from splitbed.format.tlv import UnitType, tlv_header

_AIPS_HEAD = struct.Struct(">BHHH")
_TENSOR_HEAD = struct.Struct(">HBB")
_U16_MAX = 0xFFFF


def _check_u16(name: str, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= _U16_MAX:
        raise FormatError(ErrorCode.BAD_FIELD, f"{name} must be an integer in 0..65535, got {value!r}")


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One tensor of an AIPS: id, element type, shape and the compression profile its payload uses."""

    tensor_id: int
    dtype: DType
    shape: tuple[int, ...]
    compression_profile_id: int = 0

    def __post_init__(self) -> None:
        _check_u16("tensor_id", self.tensor_id)
        object.__setattr__(self, "dtype", DType(self.dtype))
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if len(self.shape) > MAX_RANK:
            raise FormatError(ErrorCode.RANK_TOO_LARGE,
                              f"tensor {self.tensor_id}: rank {len(self.shape)} exceeds the limit {MAX_RANK}")
        for dim in self.shape:
            if dim == 0:
                raise FormatError(ErrorCode.ZERO_DIMENSION,
                                  f"tensor {self.tensor_id}: shape {self.shape} has a zero dimension")
            if not 1 <= dim <= MAX_DIMENSION:
                raise FormatError(ErrorCode.BAD_FIELD,
                                  f"tensor {self.tensor_id}: dimension {dim} outside 1..{MAX_DIMENSION}")
        if self.inferred_length > MAX_INFERRED_LENGTH:
            raise FormatError(ErrorCode.DIMENSION_OVERFLOW,
                              f"tensor {self.tensor_id}: shape {self.shape} x {self.dtype.itemsize} bytes "
                              f"= {self.inferred_length} bytes exceeds {MAX_INFERRED_LENGTH}")
        profile = get_profile(self.compression_profile_id)
        if not profile.applies_to(self.dtype):
            raise FormatError(ErrorCode.PROFILE_NOT_APPLICABLE,
                              f"tensor {self.tensor_id}: profile {profile.name} does not apply to "
                              f"{self.dtype.name.lower()} (only to {profile.dtypes_text})")
        problem = profile.coder.shape_problem(self.shape)
        if problem is not None:
            raise FormatError(ErrorCode.PROFILE_NOT_APPLICABLE, f"tensor {self.tensor_id}: profile {profile.name}: "
                              f"{problem}")

    @property
    def num_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def inferred_length(self) -> int:
        """Bytes of the decoded tensor: product of the dimensions x element size."""
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True, slots=True)
class Aips:
    """An AI Parameter Set: identifies the partition and describes every tensor crossing it, in order."""

    aips_id: int
    partition_id: int
    tensors: tuple[TensorSpec, ...]

    def __post_init__(self) -> None:
        _check_u16("ai_parameter_set_id", self.aips_id)
        _check_u16("partition_id", self.partition_id)
        object.__setattr__(self, "tensors", tuple(self.tensors))
        if not 1 <= len(self.tensors) <= MAX_TENSORS:
            raise FormatError(ErrorCode.BAD_TENSOR_COUNT,
                              f"an AIPS holds 1..{MAX_TENSORS} tensors, got {len(self.tensors)}")
        ids = [t.tensor_id for t in self.tensors]
        if len(set(ids)) != len(ids):
            raise FormatError(ErrorCode.DUPLICATE_TENSOR_ID, f"tensor ids must be unique, got {ids}")

    @classmethod
    def for_arrays(cls, aips_id: int, partition_id: int, arrays: Sequence[np.ndarray],
                   profile: int | str | Sequence[int | str] = 0,
                   tensor_ids: Sequence[int] | None = None) -> Aips:
        """The AIPS describing `arrays` (ids 0..n-1 unless given), one profile for all or one per tensor."""
        profiles = list(profile) if isinstance(profile, Sequence) and not isinstance(profile, str) \
            else [profile] * len(arrays)
        ids = list(tensor_ids) if tensor_ids is not None else list(range(len(arrays)))
        if len(profiles) != len(arrays) or len(ids) != len(arrays):
            raise FormatError(ErrorCode.ARRAY_MISMATCH,
                              f"{len(arrays)} arrays but {len(profiles)} profiles and {len(ids)} tensor ids")
        specs = tuple(
            TensorSpec(tid, DType.from_numpy(np.asarray(a).dtype), np.shape(a), get_profile(p).profile_id)
            for tid, a, p in zip(ids, arrays, profiles, strict=True))
        return cls(aips_id, partition_id, specs)

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(t.shape for t in self.tensors)

    @property
    def decoded_size(self) -> int:
        """Sum of the tensors' inferred lengths: the bytes one data unit decodes to."""
        return sum(t.inferred_length for t in self.tensors)


def encode_aips_value(aips: Aips) -> bytes:
    """The AIPS unit's value (without the TLV header)."""
    parts = [_AIPS_HEAD.pack(FORMAT_VERSION, aips.aips_id, aips.partition_id, len(aips.tensors))]
    for t in aips.tensors:
        parts.append(_TENSOR_HEAD.pack(t.tensor_id, t.dtype, len(t.shape)))
        parts.append(struct.pack(f">{len(t.shape)}I", *t.shape))
        parts.append(bytes((t.compression_profile_id,)))
    return b"".join(parts)


def encode_aips(aips: Aips) -> bytes:
    """One complete AIPS TLV unit (type 1)."""
    value = encode_aips_value(aips)
    return tlv_header(UnitType.AIPS, len(value)) + value


def parse_aips(value: bytes | bytearray | memoryview) -> Aips:
    """Parse an AIPS value; FormatError with the specific code on any violation of the spec."""
    size = len(value)
    if size < _AIPS_HEAD.size:
        raise FormatError(ErrorCode.MALFORMED_AIPS,
                          f"AIPS value is {size} bytes, shorter than its {_AIPS_HEAD.size}-byte fixed part")
    version, aips_id, partition_id, count = _AIPS_HEAD.unpack_from(value, 0)
    if version != FORMAT_VERSION:
        raise FormatError(ErrorCode.UNSUPPORTED_VERSION,
                          f"AIPS {aips_id} has format_version {version}; this decoder speaks {FORMAT_VERSION}")
    if not 1 <= count <= MAX_TENSORS:
        raise FormatError(ErrorCode.BAD_TENSOR_COUNT,
                          f"AIPS {aips_id} declares num_tensors={count}; allowed 1..{MAX_TENSORS}")
    pos = _AIPS_HEAD.size
    specs: list[TensorSpec] = []
    for index in range(count):
        if pos + _TENSOR_HEAD.size > size:
            raise FormatError(ErrorCode.MALFORMED_AIPS,
                              f"AIPS {aips_id} ends inside the descriptor of tensor #{index} (offset {pos})")
        tensor_id, dtype_code, rank = _TENSOR_HEAD.unpack_from(value, pos)
        pos += _TENSOR_HEAD.size
        try:
            dtype = DType(dtype_code)
        except ValueError:
            raise FormatError(ErrorCode.UNKNOWN_DTYPE, f"AIPS {aips_id} tensor {tensor_id}: dtype code "
                              f"{dtype_code} is not defined (defined: 1-{max(DType)})") from None
        if rank > MAX_RANK:
            raise FormatError(ErrorCode.RANK_TOO_LARGE,
                              f"AIPS {aips_id} tensor {tensor_id}: rank {rank} exceeds the limit {MAX_RANK}")
        if pos + 4 * rank + 1 > size:
            raise FormatError(ErrorCode.MALFORMED_AIPS,
                              f"AIPS {aips_id} ends inside the shape of tensor {tensor_id} (offset {pos})")
        shape = struct.unpack_from(f">{rank}I", value, pos)
        pos += 4 * rank
        profile_id = value[pos]
        pos += 1
        specs.append(TensorSpec(tensor_id, dtype, shape, profile_id))
    if pos != size:
        raise FormatError(ErrorCode.MALFORMED_AIPS,
                          f"AIPS {aips_id} has {size - pos} bytes after its last tensor descriptor")
    return Aips(aips_id, partition_id, tuple(specs))

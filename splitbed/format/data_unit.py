"""The intermediate data unit: a tensor table followed by the tensor payloads (one inference per unit).

Layout of the value (docs/FORMAT.md, "Intermediate data unit"), header integers big-endian:
    ai_parameter_set_id u16 | num_tensors u16 |
    num_tensors x (tensor_id u16 | compression_profile_id u8 | param_length u8 |
                   inferred_length u32 | payload_length u32 | params[param_length]) |
    zero padding to a multiple of 8 | payload_0 | zero padding to a multiple of 8 | payload_1 | ... | payload_n-1
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from splitbed.format.aips import Aips
from splitbed.format.dtypes import DType
from splitbed.format.errors import ErrorCode, FormatError
from splitbed.format.limits import MAX_TENSORS, PAYLOAD_ALIGNMENT
from splitbed.format.profiles import get_profile
from splitbed.format.tlv import UnitType, tlv_header
from splitbed.format.transforms import to_wire_order

Piece = bytes | bytearray | memoryview

_DATA_HEAD = struct.Struct(">HH")
_ENTRY = struct.Struct(">HBBII")
_ZEROS = bytes(PAYLOAD_ALIGNMENT)


def padding(offset: int) -> int:
    """Zero bytes that bring `offset` up to the next multiple of PAYLOAD_ALIGNMENT."""
    return -offset % PAYLOAD_ALIGNMENT


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """One row of a data unit's tensor table, with where its payload sits in the unit's value."""

    tensor_id: int
    profile_id: int
    inferred_length: int
    payload_length: int
    params: bytes
    payload_offset: int


@dataclass(frozen=True, slots=True)
class DataTable:
    aips_id: int
    entries: tuple[TensorEntry, ...]


def _wire_array(arr: np.ndarray, aips: Aips, index: int) -> np.ndarray:
    spec = aips.tensors[index]
    arr = np.asarray(arr)
    try:
        dtype = DType.from_numpy(arr.dtype)
    except FormatError:
        dtype = None
    if dtype is not spec.dtype or arr.shape != spec.shape:
        raise FormatError(ErrorCode.ARRAY_MISMATCH,
                          f"array #{index} is {arr.dtype}{list(arr.shape)} but AIPS {aips.aips_id} tensor "
                          f"{spec.tensor_id} is {spec.dtype.name.lower()}{list(spec.shape)}; "
                          f"send a new AIPS when shapes or types change")
    return to_wire_order(arr)


def encode_data(aips: Aips, arrays: Sequence[np.ndarray]) -> list[Piece]:
    """One intermediate data unit (type 2) for `arrays`, as pieces to send in order.

    Raw-profile payloads are memoryviews of the arrays themselves (no copy, when the arrays are C-contiguous
    and little-endian): keep the arrays unchanged until the pieces are sent. `b"".join(pieces)` gives one buffer.
    """
    if len(arrays) != len(aips.tensors):
        raise FormatError(ErrorCode.ARRAY_MISMATCH,
                          f"AIPS {aips.aips_id} describes {len(aips.tensors)} tensors, got {len(arrays)} arrays")
    table = [_DATA_HEAD.pack(aips.aips_id, len(arrays))]
    payloads: list[Piece] = []
    for index, spec in enumerate(aips.tensors):
        arr = _wire_array(arrays[index], aips, index)
        profile = get_profile(spec.compression_profile_id)
        params, transformed = profile.transform.forward(arr, spec.dtype)
        payload = profile.coder.compress(transformed)
        table.append(_ENTRY.pack(spec.tensor_id, profile.profile_id, len(params), spec.inferred_length,
                                 len(payload)))
        table.append(params)
        payloads.append(payload)
    head = b"".join(table)
    pieces: list[Piece] = []
    offset = len(head) + padding(len(head))
    head += _ZEROS[:offset - len(head)]
    for index, payload in enumerate(payloads):
        if index:
            pad = padding(offset)
            pieces.append(_ZEROS[:pad])
            offset += pad
        pieces.append(payload)
        offset += len(payload)
    return [tlv_header(UnitType.INTERMEDIATE_DATA, offset) + head, *pieces]


def encode_data_bytes(aips: Aips, arrays: Sequence[np.ndarray]) -> bytes:
    """encode_data as one bytes object (one copy of the payloads)."""
    return b"".join(encode_data(aips, arrays))


def parse_data_table(value: bytearray | bytes | memoryview) -> DataTable:
    """Parse and bounds-check the tensor table; FormatError(malformed_data / nonzero_padding) otherwise.

    Needs no AIPS: every length is in the unit, so a unit can be checked (and skipped) on its own.
    """
    size = len(value)
    if size < _DATA_HEAD.size:
        raise FormatError(ErrorCode.MALFORMED_DATA,
                          f"data value is {size} bytes, shorter than its {_DATA_HEAD.size}-byte fixed part")
    aips_id, count = _DATA_HEAD.unpack_from(value, 0)
    if not 1 <= count <= MAX_TENSORS:
        raise FormatError(ErrorCode.MALFORMED_DATA,
                          f"data unit for AIPS {aips_id} declares num_tensors={count}; allowed 1..{MAX_TENSORS}")
    pos = _DATA_HEAD.size
    rows: list[tuple[int, int, int, int, bytes]] = []
    for index in range(count):
        if pos + _ENTRY.size > size:
            raise FormatError(ErrorCode.MALFORMED_DATA,
                              f"data unit ends inside tensor entry #{index} (offset {pos}, value {size} bytes)")
        tensor_id, profile_id, param_length, inferred, payload_length = _ENTRY.unpack_from(value, pos)
        pos += _ENTRY.size
        if pos + param_length > size:
            raise FormatError(ErrorCode.MALFORMED_DATA,
                              f"data unit ends inside the parameters of tensor {tensor_id} (offset {pos})")
        rows.append((tensor_id, profile_id, inferred, payload_length, bytes(value[pos:pos + param_length])))
        pos += param_length
    entries: list[TensorEntry] = []
    for tensor_id, profile_id, inferred, payload_length, params in rows:
        pad = padding(pos)
        if pos + pad > size or value[pos:pos + pad] != _ZEROS[:pad]:
            raise FormatError(ErrorCode.NONZERO_PADDING if pos + pad <= size else ErrorCode.MALFORMED_DATA,
                              f"padding before the payload of tensor {tensor_id} at offset {pos} is "
                              + ("not all zero" if pos + pad <= size else "cut off"))
        pos += pad
        if pos + payload_length > size:
            raise FormatError(ErrorCode.MALFORMED_DATA,
                              f"payload of tensor {tensor_id} ({payload_length} bytes at offset {pos}) runs past "
                              f"the end of the {size}-byte value")
        entries.append(TensorEntry(tensor_id, profile_id, inferred, payload_length, params, pos))
        pos += payload_length
    if pos != size:
        raise FormatError(ErrorCode.MALFORMED_DATA,
                          f"data unit has {size - pos} bytes after the payload of its last tensor")
    return DataTable(aips_id, tuple(entries))

"""The intermediate data unit: a tensor table followed by the tensor payloads (one inference per unit).

Layout of the value (docs/FORMAT.md, "Intermediate data unit"), header integers big-endian:
    ai_parameter_set_id u16 | num_tensors u16 |
    num_tensors x (tensor_id u16 | compression_profile_id u8 | param_length u8 |
                   inferred_length u32 | payload_length u32 | params[param_length]) |
    zero padding to a multiple of 8 | payload_0 | zero padding to a multiple of 8 | payload_1 | ... | payload_n-1
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from splitbed.format.aips import Aips
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


class TensorEntry(NamedTuple):
    """One row of a data unit's tensor table, with where its payload sits in the unit's value."""

    tensor_id: int
    profile_id: int
    inferred_length: int
    payload_length: int
    params: bytes
    payload_offset: int


class DataTable(NamedTuple):
    aips_id: int
    entries: tuple[TensorEntry, ...]


class DataEncoder:
    """Encodes the data units of one AIPS; what does not change between inferences is worked out once."""

    def __init__(self, aips: Aips) -> None:
        self.aips = aips
        self._profiles = tuple(get_profile(t.compression_profile_id) for t in aips.tensors)
        self._dtypes = tuple(t.dtype.numpy for t in aips.tensors)
        # Profiles with a fixed payload length and no parameters give the same table every time.
        self._fixed_head: bytes | None = None
        self._fixed_pads: tuple[bytes, ...] = ()
        layout = fixed_layout(aips)
        if layout is not None:
            self._fixed_head = tlv_header(UnitType.INTERMEDIATE_DATA, layout.value_length) + layout.table
            self._fixed_pads = layout.pads

    def encode(self, arrays: Sequence[np.ndarray]) -> list[Piece]:
        """One intermediate data unit (type 2) for `arrays`, as pieces to send in order.

        Raw-profile payloads are memoryviews of the arrays themselves (no copy when the arrays are
        C-contiguous and little-endian): keep the arrays unchanged until the pieces are sent.
        """
        aips = self.aips
        if len(arrays) != len(aips.tensors):
            raise FormatError(ErrorCode.ARRAY_MISMATCH, f"AIPS {aips.aips_id} describes {len(aips.tensors)} "
                              f"tensors, got {len(arrays)} arrays")
        params_list: list[bytes] = []
        payloads: list[Piece] = []
        for index, profile in enumerate(self._profiles):
            arr = self._wire_array(arrays[index], index)
            params, transformed = profile.transform.forward(arr, aips.tensors[index].dtype)
            params_list.append(params)
            payloads.append(profile.coder.compress(transformed, aips.tensors[index].shape))
        if self._fixed_head is not None:
            head, pads = self._fixed_head, self._fixed_pads
        else:
            layout = _layout(aips, params_list, [len(p) for p in payloads])
            head = tlv_header(UnitType.INTERMEDIATE_DATA, layout.value_length) + layout.table
            pads = layout.pads
        if len(payloads) == 1:
            return [head, payloads[0]]
        pieces: list[Piece] = [head, payloads[0]]
        for pad, payload in zip(pads, payloads[1:], strict=True):
            if pad:
                pieces.append(pad)
            pieces.append(payload)
        return pieces

    def _wire_array(self, arr: np.ndarray, index: int) -> np.ndarray:
        spec = self.aips.tensors[index]
        arr = np.asarray(arr)
        if arr.dtype != self._dtypes[index] and arr.dtype.newbyteorder("<") == self._dtypes[index]:
            arr = arr.astype(self._dtypes[index])  # big-endian input: the wire is little-endian
        if arr.dtype != self._dtypes[index] or arr.shape != spec.shape:
            raise FormatError(ErrorCode.ARRAY_MISMATCH,
                              f"array #{index} is {arr.dtype}{list(arr.shape)} but AIPS {self.aips.aips_id} "
                              f"tensor {spec.tensor_id} is {spec.dtype.name.lower()}{list(spec.shape)}; "
                              f"send a new AIPS when shapes or types change")
        return to_wire_order(arr)


class Layout(NamedTuple):
    """Where everything sits in a data unit's value."""

    table: bytes  # head, tensor table and the padding after it
    pads: tuple[bytes, ...]  # zero padding before each payload after the first
    payload_offsets: tuple[int, ...]
    payload_lengths: tuple[int, ...]
    value_length: int


def _layout(aips: Aips, params_list: Sequence[bytes], lengths: Sequence[int]) -> Layout:
    table = [_DATA_HEAD.pack(aips.aips_id, len(lengths))]
    for spec, params, length in zip(aips.tensors, params_list, lengths, strict=True):
        table.append(_ENTRY.pack(spec.tensor_id, spec.compression_profile_id, len(params), spec.inferred_length,
                                 length))
        table.append(params)
    head = b"".join(table)
    head += _ZEROS[:padding(len(head))]
    offsets: list[int] = [len(head)]
    pads: list[bytes] = []
    for previous in lengths[:-1]:
        end = offsets[-1] + previous
        pads.append(_ZEROS[:padding(end)])
        offsets.append(end + len(pads[-1]))
    return Layout(head, tuple(pads), tuple(offsets), tuple(lengths), offsets[-1] + lengths[-1])


def fixed_layout(aips: Aips) -> Layout | None:
    """The layout every data unit of `aips` has, when all its profiles have fixed-size payloads and no
    parameters (none, fp16, bf16): the table bytes are then the same for every inference."""
    profiles = [get_profile(t.compression_profile_id) for t in aips.tensors]
    if not all(p.coder.exact_size and not p.param_length for p in profiles):
        return None
    lengths = [p.transformed_length(t.dtype, t.num_elements) for p, t in zip(profiles, aips.tensors, strict=True)]
    return _layout(aips, [b""] * len(lengths), lengths)


_ENCODERS: dict[int, DataEncoder] = {}
_ENCODER_CACHE_SIZE = 32
_ENCODERS_LOCK = threading.Lock()  # threads may encode at once; the eviction below is not atomic


def encode_data(aips: Aips, arrays: Sequence[np.ndarray]) -> list[Piece]:
    """One intermediate data unit (type 2): see DataEncoder.encode. Reuses the encoder of a recent AIPS."""
    with _ENCODERS_LOCK:
        encoder = _ENCODERS.get(id(aips))
        if encoder is None or encoder.aips is not aips:
            if len(_ENCODERS) >= _ENCODER_CACHE_SIZE:
                _ENCODERS.pop(next(iter(_ENCODERS)))
            encoder = _ENCODERS[id(aips)] = DataEncoder(aips)
    return encoder.encode(arrays)


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

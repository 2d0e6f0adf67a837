"""TLV unit types and the 5-byte TLV header (type u8, value length u32 big-endian)."""

from __future__ import annotations

import struct
from enum import IntEnum

from splitbed.format.errors import ErrorCode, FormatError
from splitbed.format.limits import MAX_TLV_LENGTH

TLV_HEADER = struct.Struct(">BI")


class UnitType(IntEnum):
    """TLV unit types of S4-260189 Table X.X.24-1; 3-255 are undefined and skipped by length."""

    RESERVED = 0
    AIPS = 1
    INTERMEDIATE_DATA = 2


def tlv_header(unit_type: int, length: int) -> bytes:
    """The header that precedes a value of `length` bytes."""
    if not 0 <= length <= MAX_TLV_LENGTH:
        raise FormatError(ErrorCode.UNIT_TOO_LARGE,
                          f"a TLV value holds at most {MAX_TLV_LENGTH} bytes, got {length}")
    if not 0 <= unit_type <= 255:
        raise FormatError(ErrorCode.BAD_FIELD, f"TLV type must be 0..255, got {unit_type}")
    return TLV_HEADER.pack(unit_type, length)


def encode_unit(unit_type: int, value: bytes) -> bytes:
    """A whole TLV unit; used for units of undefined types (tests, forward-compatibility experiments)."""
    return tlv_header(unit_type, len(value)) + value

"""The AI intermediate data format (S4-260189, docs/REFERENCES.md): AIPS + TLV units, compression profiles, a sans-I/O decoder.

docs/FORMAT.md is the byte-exact specification; this package implements it and nothing else (no sockets).

    aips = Aips.for_arrays(aips_id=1, partition_id=3, arrays=[x], profile="zstd")
    wire = encode_aips(aips) + encode_data_bytes(aips, [x])
    dec = Decoder(); dec.feed(wire); dec.events()  # [AipsActivated(...), TensorsDecoded(...)]
"""

from __future__ import annotations

from splitbed.format.aips import Aips, TensorSpec, encode_aips, parse_aips
from splitbed.format.data_unit import encode_data, encode_data_bytes
from splitbed.format.decoder import Decoder
from splitbed.format.dtypes import DType
from splitbed.format.errors import DecoderBroken, ErrorCode, FormatError
from splitbed.format.events import (
    NEED_DATA,
    STREAM_ENDED,
    AipsActivated,
    AipsEnded,
    EndReason,
    Event,
    FormatErrorEvent,
    TensorsDecoded,
    UnknownUnit,
)
from splitbed.format.limits import (
    DEFAULT_MAX_DECODED_SIZE,
    DEFAULT_MAX_UNIT_SIZE,
    FORMAT_VERSION,
    MAX_RANK,
    MAX_TENSORS,
)
from splitbed.format.profiles import PROFILES, CompressionProfile, get_profile
from splitbed.format.tlv import UnitType, encode_unit

__all__ = [
    "Aips", "TensorSpec", "encode_aips", "parse_aips", "encode_data", "encode_data_bytes", "encode_unit",
    "Decoder", "DType", "UnitType", "DecoderBroken", "ErrorCode", "FormatError",
    "NEED_DATA", "STREAM_ENDED", "AipsActivated", "AipsEnded", "EndReason", "Event", "FormatErrorEvent",
    "TensorsDecoded", "UnknownUnit", "DEFAULT_MAX_DECODED_SIZE", "DEFAULT_MAX_UNIT_SIZE", "FORMAT_VERSION",
    "MAX_RANK", "MAX_TENSORS", "PROFILES", "CompressionProfile", "get_profile",
]

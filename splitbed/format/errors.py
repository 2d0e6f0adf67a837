"""The format's own errors: one exception type with a stable machine-readable code.

The decoder never raises for bad input; it reports the same codes as `FormatErrorEvent`s. The encoder and the
constructors raise `FormatError` when asked to build something the specification (docs/FORMAT.md) forbids.
"""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    """Stable error codes; docs/FORMAT.md section "Error codes" lists the same set (a test checks this)."""

    # Fatal: the byte stream can no longer be framed; the caller closes the connection.
    UNIT_TOO_LARGE = "unit_too_large"
    TRUNCATED = "truncated"
    # Recoverable, any unit type.
    RESERVED_TYPE = "reserved_type"
    # Recoverable, AIPS unit (the active AIPS ends with reason invalid_aips).
    UNSUPPORTED_VERSION = "unsupported_version"
    MALFORMED_AIPS = "malformed_aips"
    BAD_TENSOR_COUNT = "bad_tensor_count"
    DUPLICATE_TENSOR_ID = "duplicate_tensor_id"
    UNKNOWN_DTYPE = "unknown_dtype"
    RANK_TOO_LARGE = "rank_too_large"
    ZERO_DIMENSION = "zero_dimension"
    DIMENSION_OVERFLOW = "dimension_overflow"
    DECODED_SIZE_TOO_LARGE = "decoded_size_too_large"
    UNKNOWN_PROFILE = "unknown_profile"
    PROFILE_NOT_APPLICABLE = "profile_not_applicable"
    # Recoverable, intermediate data unit.
    MALFORMED_DATA = "malformed_data"
    NONZERO_PADDING = "nonzero_padding"
    NO_ACTIVE_AIPS = "no_active_aips"
    AIPS_ID_MISMATCH = "aips_id_mismatch"
    TENSOR_COUNT_MISMATCH = "tensor_count_mismatch"
    TENSOR_ID_MISMATCH = "tensor_id_mismatch"
    SHAPE_MISMATCH = "shape_mismatch"
    PROFILE_MISMATCH = "profile_mismatch"
    BAD_PARAMS = "bad_params"
    PAYLOAD_LENGTH_MISMATCH = "payload_length_mismatch"
    DECOMPRESSION_FAILED = "decompression_failed"
    INVALID_BOOL = "invalid_bool"
    # Raised by the encoder / constructors only.
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    ARRAY_MISMATCH = "array_mismatch"
    BAD_FIELD = "bad_field"
    # Raised on misuse of a Decoder.
    DECODER_BROKEN = "decoder_broken"
    STREAM_ENDED = "stream_ended"
    # JSON baseline.
    JSON_TOO_LARGE = "json_too_large"
    JSON_INVALID = "json_invalid"


#: Codes after which the decoder cannot find the next unit boundary (docs/FORMAT.md "Recovery").
FATAL_CODES = frozenset({ErrorCode.UNIT_TOO_LARGE, ErrorCode.TRUNCATED})


class FormatError(Exception):
    """Bad input or a forbidden construction; `code` says which rule was broken, the message says how."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


class DecoderBroken(FormatError):
    """The decoder met an unrecoverable error earlier; call reset() / new_session() or close the stream."""

"""Numbers fixed by the specification (docs/FORMAT.md) and the receiver's default caps.

Spec limits are the same for every implementation; the `DEFAULT_*` caps are a receiver's policy and can be
lowered or raised per `Decoder`.
"""

from __future__ import annotations

#: Version carried in the first byte of every AIPS unit. Bumped on any incompatible change of the bytes.
FORMAT_VERSION = 1

#: TLV header: 1-byte type + 4-byte big-endian payload length.
TLV_HEADER_SIZE = 5
#: Largest value a TLV length field can hold.
MAX_TLV_LENGTH = 2**32 - 1

#: Largest rank a tensor may have (rank 0 = scalar).
MAX_RANK = 8
#: Tensors per AIPS / per data unit: 1 .. MAX_TENSORS.
MAX_TENSORS = 1024
#: Largest dimension value (u32 field); 0 is not allowed.
MAX_DIMENSION = 2**32 - 1
#: Largest inferred tensor length in bytes (must fit the u32 `inferred_length` field).
MAX_INFERRED_LENGTH = 2**32 - 1

#: Tensor payloads start at offsets that are multiples of this, counted from the first byte of the
#: data unit's value, so decoded arrays are aligned for any dtype.
PAYLOAD_ALIGNMENT = 8

#: Receiver default: largest TLV payload accepted (checked before any allocation).
DEFAULT_MAX_UNIT_SIZE = 64 * 2**20
#: Receiver default: largest sum of inferred tensor lengths an accepted AIPS may imply (bounds the
#: memory a decompressing decoder allocates per data unit).
DEFAULT_MAX_DECODED_SIZE = 256 * 2**20

"""How much memory a receiver needs to decode a data unit: an upper bound a node can reserve before decoding.

The unit's own value (held by whoever assembled it) is not counted; everything decoding allocates is: each
tensor's decompression buffer, its inverse transform's output and scratch, and a small allowance per tensor for
the array objects. All tensors are counted as live at once (decoded tensors are returned together), so the bound
holds whatever the order of frees. tests/unit/format/test_format_memory.py measures the real peak against it.
"""

from __future__ import annotations

from splitbed.format.aips import Aips
from splitbed.format.dtypes import DType
from splitbed.format.profiles import get_profile

#: Python and numpy objects around each decoded tensor (array headers, views, the event).
PER_TENSOR_OVERHEAD = 4096


def tensor_decode_bytes(profile_id: int, dtype: DType, num_elements: int) -> int:
    """Bytes decoding one tensor allocates: decompression buffer + inverse transform output and scratch."""
    profile = get_profile(profile_id)
    size = profile.transformed_length(dtype, num_elements)
    return (profile.coder.decompress_bytes(size) + profile.transform.inverse_bytes(dtype, num_elements)
            + PER_TENSOR_OVERHEAD)


def decode_bytes(aips: Aips) -> int:
    """Upper bound of the bytes allocated while decoding one data unit of `aips` (beyond the unit's value)."""
    return sum(tensor_decode_bytes(t.compression_profile_id, t.dtype, t.num_elements) for t in aips.tensors)

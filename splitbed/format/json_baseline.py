"""The seed's JSON carriage (`json.dumps({'preds': preds.tolist(), ...})`) applied to intermediate tensors.

Kept only as the baseline the binary format is compared against (size and speed). Decoding is capped in
size and checked (shape regular, dtype known, values representable) like every other input.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from splitbed.format.dtypes import DType
from splitbed.format.errors import ErrorCode, FormatError

DEFAULT_MAX_JSON_SIZE = 256 * 2**20
_LOSSLESS_VIA_FLOAT32 = (DType.FLOAT16, DType.BFLOAT16)


def encode(arrays: Sequence[np.ndarray], **extra: Any) -> bytes:
    """{"tensors": [a.tolist(), ...], "dtypes": [...], **extra} as UTF-8 JSON, like the seed's testbed."""
    if "tensors" in extra or "dtypes" in extra:
        raise FormatError(ErrorCode.BAD_FIELD, "extra fields may not be named 'tensors' or 'dtypes'")
    tensors, dtypes = [], []
    for arr in arrays:
        arr = np.asarray(arr)
        dtype = DType.from_numpy(arr.dtype)
        # float16/bfloat16 scalars are not JSON-serialisable; float32 holds them exactly.
        listed = arr.astype(np.float32).tolist() if dtype in _LOSSLESS_VIA_FLOAT32 else arr.tolist()
        tensors.append(listed)
        dtypes.append(dtype.name.lower())
    return json.dumps({"tensors": tensors, "dtypes": dtypes, **extra}).encode()


def decode(data: bytes | bytearray | memoryview,
           max_size: int = DEFAULT_MAX_JSON_SIZE) -> tuple[list[np.ndarray], dict[str, Any]]:
    """(arrays, extra fields) from encode()'s output; FormatError(json_too_large / json_invalid) otherwise."""
    if len(data) > max_size:
        raise FormatError(ErrorCode.JSON_TOO_LARGE, f"JSON message of {len(data)} bytes exceeds {max_size}")
    try:
        doc = json.loads(data if isinstance(data, (bytes, bytearray)) else bytes(data))
    except (ValueError, RecursionError) as exc:
        raise FormatError(ErrorCode.JSON_INVALID, f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tensors"), list) \
            or not isinstance(doc.get("dtypes"), list) or len(doc["tensors"]) != len(doc["dtypes"]):
        raise FormatError(ErrorCode.JSON_INVALID,
                          "expected an object with lists 'tensors' and 'dtypes' of equal length")
    arrays = []
    tensors, dtypes = doc.pop("tensors"), doc.pop("dtypes")
    for index, name in enumerate(dtypes):
        try:
            dtype = DType[str(name).upper()]
        except KeyError:
            raise FormatError(ErrorCode.JSON_INVALID, f"tensor #{index}: unknown dtype {name!r}") from None
        nested, tensors[index] = tensors[index], None  # each nested list is freed once it is an array
        arrays.append(_to_array(nested, dtype, index))
        del nested
    return arrays, doc


def decode_peak_bytes(data: bytes | bytearray | memoryview) -> int:
    """Upper bound of the memory `decode(data)` allocates, from a count of the structural characters (no
    parse): the text as str, every Python object json.loads builds, and the arrays made from them. JSON objects weigh up to ~25 times their text (`[],` is 3 bytes and 64 bytes of list), so a
    receiver reserves this before decoding rather than a multiple of the length.

    Per character: `[` or `{` a container (list/dict object plus its slot in the parent), `,` one more element
    (a float object, a pointer slot with over-allocation, and binary64 + output + comparison copies in the
    arrays), `:` one dict entry, `"` half a string object; plus the text (bytes and str) and digits of big ints.
    """
    text = data if isinstance(data, (bytes, bytearray)) else bytes(data)
    containers = text.count(b"[") + text.count(b"{")
    elements = text.count(b",") + containers + 1
    return (2 * len(text) + 96 * containers + 64 * elements + 96 * text.count(b":")
            + 16 * text.count(b'"') + 65536)


def _to_array(nested: Any, dtype: DType, index: int) -> np.ndarray:
    allowed = "b" if dtype is DType.BOOL else "fi" if dtype.is_float else "iu"
    try:
        with np.errstate(over="raise", invalid="raise"):
            wide = np.array(nested)
            if wide.size and wide.dtype.kind not in allowed:
                raise ValueError(f"elements are {wide.dtype} values, not {dtype.name.lower()}")
            arr = wide.astype(dtype.numpy)
            if not dtype.is_float and not np.array_equal(arr, wide):
                raise ValueError(f"values do not fit {dtype.name.lower()}")
            return arr
    except (ValueError, TypeError, OverflowError, FloatingPointError, RecursionError) as exc:
        raise FormatError(ErrorCode.JSON_INVALID, f"tensor #{index}: {exc}") from None

"""The JSON carriage of the testbed contribution (`json.dumps({'preds': preds.tolist(), ...})`, docs/REFERENCES.md)
applied to intermediate tensors.

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
    """{"tensors": [a.tolist(), ...], "dtypes": [...], **extra} as UTF-8 JSON, like the testbed contribution."""
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
        doc = json.loads(bytes(data))
    except (ValueError, RecursionError) as exc:
        raise FormatError(ErrorCode.JSON_INVALID, f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tensors"), list) \
            or not isinstance(doc.get("dtypes"), list) or len(doc["tensors"]) != len(doc["dtypes"]):
        raise FormatError(ErrorCode.JSON_INVALID,
                          "expected an object with lists 'tensors' and 'dtypes' of equal length")
    arrays = []
    for index, (nested, name) in enumerate(zip(doc.pop("tensors"), doc.pop("dtypes"), strict=True)):
        try:
            dtype = DType[str(name).upper()]
        except KeyError:
            raise FormatError(ErrorCode.JSON_INVALID, f"tensor #{index}: unknown dtype {name!r}") from None
        arrays.append(_to_array(nested, dtype, index))
    return arrays, doc


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
